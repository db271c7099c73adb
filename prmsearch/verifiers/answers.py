"""Which part of a solution is its final answer.

The choice is math-verify's own: its LaTeX and expression extraction targets, tried in its priority order
("final answer ... is", `\\boxed{}`, "answer:", then any LaTeX environment or number), the rightmost match first,
the first match that parses winning. That is what lets "Final Answer: The smallest $k$ is 12.", "Hence $y \\geq 3$
is the solution set." or a matrix in a sentence be graded at all. We add three things:

- GSM8K's own formats come first: "#### N" (gold solutions) and a last line "A: N" (model solutions);
- the extracted answer is returned as a bare string ("\\frac{1}{2}", "25\\%", "1234", "x=1, x=2") that math-verify
  parses back to the same value inside `\\boxed{}`, so answers can be shown, cached and grouped among themselves
  (majority voting), not only compared with a gold;
- where math-verify finds nothing, "The answer is X" still gives text answers ("(C)", "Monday"); `\\fbox{}`
  counts as `\\boxed{}`.

`in_worker` needs sympy (a match counts only if it parses) and can be slow on hostile text, so it runs in killable
worker processes (`verifiers.math`); `in_process` decides without sympy, from the text alone, whenever it can
be sure math-verify would pick the same answer.
"""

from __future__ import annotations

import re
from functools import cache
from itertools import groupby

_HASHES = re.compile(r"####[ \t]*([^\n]+)")
_WORD = re.compile(r"(?<!\\)\b[a-zA-Z]{3,}")  # a word of 3+ letters that is not a LaTeX command ("\frac")
_A_LINE = re.compile(r"^A:[ \t]*(.+)$")
_THE_ANSWER_IS = re.compile(r"the (?:final )?answer is:?[ \t]*([^\n]+)", re.IGNORECASE)
_BOXED = re.compile(r"\\(?:boxed|fbox)\s*\{")
_PLAIN_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")
_LATEX_CHARS = ("$", "\\", "[")  # every math-verify LaTeX pattern needs one of them
_MAX_IN_PROCESS_CHARS = 8_000  # longer texts are scanned only inside a worker, under its deadline (some of
# math-verify's expression patterns backtrack quadratically on hostile runs of digits and operators)


def last(pattern: re.Pattern[str], text: str) -> re.Match[str] | None:
    """The last match of `pattern` in `text` (solutions restate intermediate results before the final one)."""
    found = None
    for found in pattern.finditer(text):  # noqa: B007 -- the loop is how to reach the last match
        pass
    return found


def gsm8k_answer(text: str) -> str | None:
    """ "#### N" anywhere (the last one), or a last line "A: N": GSM8K's gold and model-solution formats. A
    Markdown heading ("#### Final Answer", "#### Verification") is not an answer: what follows "####" counts only
    when it holds a digit and no word outside LaTeX commands."""
    found = [m.group(1) for m in _HASHES.finditer(text)]
    hashed = next((a for a in reversed(found) if any(c.isdigit() for c in a) and not _WORD.search(a)), None)
    if hashed is not None:
        return clean(hashed)
    lines = text.strip().splitlines()
    m = _A_LINE.match(lines[-1].strip()) if lines else None
    return clean(m.group(1)) if m else None


def stated_answer(text: str) -> str | None:
    """What follows the last "The answer is" (Math-Shepherd, few-shot prompts): the fallback for text answers."""
    m = last(_THE_ANSWER_IS, text)
    return clean(m.group(1)) or None if m else None


def last_boxed(text: str) -> str | None:
    """The inside of the last `\\boxed{...}` whose brace closes."""
    span = _last_boxed_span(text)
    return text[span[0] : span[1]] if span else None


def _last_boxed_span(text: str) -> tuple[int, int] | None:
    """Where the inside of the last closed `\\boxed{...}` starts and ends. One pass with a stack, so "\\boxed{"
    repeated 100,000 times without a closing brace costs one read of the string, not one per opening."""
    starts = {m.end() - 1 for m in _BOXED.finditer(text)}  # positions of the boxes' "{"
    if not starts:
        return None
    open_at: list[int] = []
    best: tuple[int, int] | None = None
    for m in re.finditer(r"[{}]", text):
        if m.group() == "{":
            open_at.append(m.start())
        elif open_at:
            start = open_at.pop()
            if start in starts and (best is None or start > best[0]):
                best = (start, m.start())
    return (best[0] + 1, best[1]) if best else None


def clean(answer: str) -> str:
    """Drop the sentence's full stop and a `$...$` wrapper: "The answer is $\\frac{1}{2}$." -> "\\frac{1}{2}"."""
    answer = answer.strip().rstrip(".").strip()
    if len(answer) > 1 and answer.startswith("$") and answer.endswith("$"):
        answer = answer[1:-1].strip()
    return answer


@cache
def _patterns() -> list[list[tuple[re.Pattern[str], object]]]:
    """math-verify's default extraction patterns, grouped by priority, best first."""
    from math_verify.parser import ExprExtractionConfig, LatexExtractionConfig, get_extraction_regexes

    flat = [
        (pattern, target, priority)
        for patterns, target in get_extraction_regexes([LatexExtractionConfig(), ExprExtractionConfig()])
        for pattern, priority in patterns
    ]
    flat.sort(key=lambda p: p[2])
    return [[(p, t) for p, t, _ in group] for _, group in groupby(flat, key=lambda p: p[2])]


def _candidates(text: str, patterns: list[tuple[re.Pattern[str], object]]) -> list[tuple[re.Match[str], object]]:
    """One priority group's matches, rightmost end first (then leftmost start), as math-verify tries them."""
    found = [(m, target) for pattern, target in patterns for m in pattern.finditer(text)]
    return sorted(found, key=lambda c: (c[0].end(), -c[0].start()), reverse=True)


def in_worker(text: str) -> str | None:
    """The answer as math-verify's `parse` picks it (needs sympy; run it under a deadline), or None."""
    from math_verify.parser import extract_match

    text = text.replace("\\fbox", "\\boxed")  # math-verify knows only \boxed
    first = None
    for group in _patterns():
        for match, target in _candidates(text, group):
            parsed, shown = extract_match(match, target)
            if first is None and shown:
                first = (match, target)
            if parsed is not None:
                return bare(match, target)
    return bare(*first) if first else None  # math-verify's fallback: the first match, unparsed


def in_process(text: str) -> tuple[bool, str | None]:
    """(decided, answer) without sympy: decided when the text has GSM8K's format, or no LaTeX at all and
    math-verify's pick is a plain number (a number always parses, so no later match could be preferred)."""
    answer = gsm8k_answer(text)
    if answer is not None:
        return True, answer
    if len(text) > _MAX_IN_PROCESS_CHARS:
        return False, None
    boxed = _boxed_number(text)
    if boxed is not None:
        return True, boxed
    if any(c in text for c in _LATEX_CHARS):
        return False, None
    for group in _patterns():
        found = _candidates(text, group)
        if found:
            match, target = found[0]
            if _is_number(match):
                return True, bare(match, target)
            return False, None
    return True, None  # no pattern matched: math-verify finds nothing either


def _boxed_number(text: str) -> str | None:
    """The last box's inside when it is a plain number and math-verify would surely take it: with no "final answer"
    phrase (its other patterns of the box's priority), math-verify tries the match that ends last, which reaches the
    last box (its plain-box pattern runs to the text's last "}" and keeps the last box inside), and a plain number
    always parses. A percent sign after the box would change the value: then the worker decides."""
    span = _last_boxed_span(text)
    if span is None or "final answer" in text.lower():
        return None
    inside, after = text[span[0] : span[1]].strip(), text[span[1] :].lower()
    if not _PLAIN_NUMBER.fullmatch(inside) or "%" in after or "percent" in after or "pct" in after:
        return None
    return inside


def _is_number(match: re.Match[str]) -> bool:
    groups = match.groupdict()
    return any(v for k, v in groups.items() if k.startswith(("integer", "decimal"))) and not groups.get("expr")


def bare(match: re.Match[str], target: object) -> str:
    """The matched answer as a bare string that reads back to the same value inside `\\boxed{}`: a number without
    thousands separators, an expression, or the LaTeX of each environment matched (several joined by ", ", read
    back as a set, as math-verify reads "$1$ and $2$"); a matched percent sign is kept."""
    from math_verify.parser import ExprExtractionConfig

    groups = match.groupdict()
    if isinstance(target, ExprExtractionConfig):
        percent = "\\%" if groups.get("percent") else ""
        integer = next((v for k, v in groups.items() if k.startswith("integer") and v), "")
        decimal = next((v for k, v in groups.items() if k.startswith("decimal") and v), "")
        if integer or decimal:
            sign = "-" if integer.startswith("-") else ""
            digits = integer.lstrip("-").translate(str.maketrans("", "", ", ")).lstrip("0") or "0"
            return sign + digits + decimal.replace(",", ".") + percent
        return (groups.get("expr") or "").strip().rstrip(".") + percent  # "3/4." ends a sentence
    parts = []
    for prefix in ["first"] + [f"next{i}" for i in range(1, 6)]:
        latex = next((v for k, v in groups.items() if k.startswith(prefix + "_latex") and v), None)
        if latex is None:
            continue
        if "\\boxed" in latex or "\\fbox" in latex:
            latex = last_boxed(latex) or latex
        parts.append(latex.strip() + ("\\%" if groups.get(prefix + "_percent") else ""))
    return ", ".join(parts)
