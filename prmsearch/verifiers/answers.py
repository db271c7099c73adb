"""Which part of a solution is its final answer.

The choice is math-verify's own: its LaTeX and expression extraction targets, tried in its priority order
("final answer ... is", `\\boxed{}`, "answer:", then any LaTeX environment or number), the rightmost match first,
the first match that parses winning. That is what lets "Final Answer: The smallest $k$ is 12.", "Hence $y \\geq 3$
is the solution set." or a matrix in a sentence be graded at all. We add three things:

- GSM8K's own formats come first: "#### N" (gold solutions) and a last line "A: N" (model solutions), with a
  decimal comma read as math-verify reads it ("3,5" gives "3.5"; "1,234" keeps its thousands separator);
- the extracted answer is returned as a bare string ("\\frac{1}{2}", "25\\%", "1234", "x=1, x=2") that math-verify
  parses back to the same value inside `\\boxed{}` (boxes math-verify reads together, "\\boxed{1} and \\boxed{2}",
  give "1,2"), so answers can be shown, cached and grouped among themselves (majority voting), not only compared
  with a gold;
- where math-verify finds nothing, "The answer is X" still gives text answers ("(C)", "Monday"); `\\fbox{}`
  counts as `\\boxed{}`.

`in_worker` needs sympy (a match counts only if it parses) and can be slow on hostile text, so it runs in killable
worker processes (`verifiers.math`); `in_process` decides without sympy, from the text alone, whenever it can
be sure math-verify would pick the same answer: it runs math-verify's own patterns (regular expressions, no
sympy) and takes the match math-verify tries first when that match surely parses: a number, or LaTeX that after
math-verify's own normalization has one of the plain shapes of `latex_shapes.simple_latex` (numbers, letters,
`\\frac`, `\\sqrt`, `\\pi`, tuples, intervals, sets, matrices, `\\text{(C)}`, ...), which latex2sympy always parses.
Anything else (a match that might not parse, so that math-verify would go on to the next one) goes to a worker.

One rule of our own runs inside math-verify's: where a `\\boxed{}` nests too deep for latex2sympy's recursion
(`too_deep`: a fraction nested about 100 deep), so that its match does not parse, no match inside it is taken;
math-verify would grade its innermost `\\frac{1}{2}`, we give the whole box as the (unparsed) answer.
"""

from __future__ import annotations

import re
from dataclasses import replace
from functools import cache
from itertools import groupby

from .latex_shapes import MAX_SHAPE_CHARS, simple_latex

_HASHES = re.compile(r"####[ \t]*([^\n]+)")
_WORD = re.compile(r"(?<!\\)\b[a-zA-Z]{3,}")  # a word of 3+ letters that is not a LaTeX command ("\frac")
_A_LINE = re.compile(r"^A:[ \t]*(.+)$")
_THE_ANSWER_IS = re.compile(r"the (?:final )?answer is:?[ \t]*([^\n]+)", re.IGNORECASE)
_BOXED = re.compile(r"\\(?:boxed|fbox)\s*\{")
_THOUSANDS = re.compile(r"-?[1-9]\d{0,2}(?:,\d{3})+")  # math-verify's thousands separators, tried first
_DECIMAL_COMMA = re.compile(r"-?\d+,\d+")
_MAX_IN_PROCESS_CHARS = 8_000  # longer texts are scanned only inside a worker, under its deadline (some of
# math-verify's expression patterns backtrack quadratically on hostile runs of digits and operators)
_TOO_DEEP = 50  # brackets nested this deep: see `too_deep`
_MAX_BOXES, _MAX_ENVIRONMENTS = 16, 64  # more are scanned only in a worker: see `_safe_to_scan`
_PREFIXES = ("first", *(f"next{i}" for i in range(1, 6)))  # math-verify's groups of the environments joined


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
        return decimal_point(clean(hashed))
    lines = text.strip().splitlines()
    m = _A_LINE.match(lines[-1].strip()) if lines else None
    return decimal_point(clean(m.group(1))) if m else None


def decimal_point(number: str) -> str:
    """ "3,5" -> "3.5": a decimal comma, as math-verify reads a number ("1,234" is a thousands separator there, and
    stays). Anything else is returned as it is."""
    if _DECIMAL_COMMA.fullmatch(number) and not _THOUSANDS.match(number):
        return number.replace(",", ".")
    return number


def stated_answer(text: str) -> str | None:
    """What follows the last "The answer is" (Math-Shepherd, few-shot prompts): the fallback for text answers."""
    m = last(_THE_ANSWER_IS, text)
    return clean(m.group(1)) or None if m else None


def last_boxed(text: str) -> str | None:
    """The inside of the last `\\boxed{...}` whose brace closes."""
    boxes = _closed_boxes(text)
    if not boxes:
        return None
    start, end = max(boxes)
    return text[start + 1 : end]


def _closed_boxes(text: str) -> list[tuple[int, int]]:
    """Where the "{" and the "}" of every closed `\\boxed{...}` are. One pass with a stack, so "\\boxed{" repeated
    100,000 times without a closing brace costs one read of the string, not one per opening."""
    starts = {m.end() - 1 for m in _BOXED.finditer(text)}  # positions of the boxes' "{"
    if not starts:
        return []
    open_at: list[int] = []
    boxes = []
    for m in re.finditer(r"[{}]", text):
        if m.group() == "{":
            open_at.append(m.start())
        elif open_at:
            start = open_at.pop()
            if start in starts:
                boxes.append((start, m.start()))
    return boxes


def too_deep(latex: str) -> bool:
    """Whether brackets nest in `latex` deeper than latex2sympy's recursion can follow (a fraction nested about 100
    deep already exhausts it): such an answer does not parse, and no part of it stands for it."""
    depth = deepest = 0
    for c in latex:
        if c in "{([":
            depth += 1
            deepest = max(deepest, depth)
        elif c in "})]":
            depth = max(0, depth - 1)
    return deepest >= _TOO_DEEP


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
    """The answer as math-verify's `parse` picks it (needs sympy; run it under a deadline), or None. A match inside
    a box too deep to parse (`too_deep`) is skipped: the box is the answer, not its innermost fraction."""
    from math_verify.parser import extract_match

    text = text.replace("\\fbox", "\\boxed")  # math-verify knows only \boxed
    first = None
    failed: list[tuple[int, int]] = []  # the braces of boxes too deep to parse
    for group in _patterns():
        for match, target in _candidates(text, group):
            if any(a < match.start() and match.end() <= b for a, b in failed):
                continue
            parsed, shown = extract_match(match, target)
            if first is None and shown:
                first = (match, target)
            if parsed is not None:
                return bare(match, target)
            span = match.group()
            boxes = [(match.start() + a, match.start() + b) for a, b in _closed_boxes(span)]
            failed += [(a, b) for a, b in boxes if too_deep(text[a:b])]
    return bare(*first) if first else None  # math-verify's fallback: the first match, unparsed


def in_process(text: str) -> tuple[bool, str | None]:
    """(decided, answer) without sympy: decided when the text has GSM8K's format, when no pattern of math-verify's
    matches (it finds nothing either), or when the match math-verify tries first surely parses (`surely_parses`):
    then it is math-verify's pick."""
    answer = gsm8k_answer(text)
    if answer is not None:
        return True, answer
    if len(text) > _MAX_IN_PROCESS_CHARS or not _safe_to_scan(text):
        return False, None
    text = text.replace("\\fbox", "\\boxed")
    for group in _patterns():
        found = _candidates(text, group)
        if found:
            match, target = found[0]
            return (True, bare(match, target)) if surely_parses(match, target) else (False, None)
    return True, None


def _safe_to_scan(text: str) -> bool:
    """Whether math-verify's patterns run fast on `text`: some backtrack cubically (81 s on 8,000 characters) where
    a display environment ("$$", "\\[", "\\(") opens and never closes around boxes, or where environments are
    many. Such a text is scanned only in a worker, under its deadline."""
    if text.count("\\boxed") + text.count("\\fbox") > _MAX_BOXES:
        return False
    for opening, closing in (("\\[", "\\]"), ("\\(", "\\)")):
        count = text.count(opening)
        if count > _MAX_ENVIRONMENTS or (count and text.rfind(opening) > text.rfind(closing)):
            return False
    count = text.count("$$")
    return count <= 2 * _MAX_ENVIRONMENTS and count % 2 == 0


def surely_parses(match: re.Match[str], target: object) -> bool:
    """Whether math-verify's `extract_match` parses this match, known without parsing: a number always does; a
    LaTeX match does when every LaTeX part of it, normalized as math-verify normalizes it, is `simple_latex`."""
    from latex2sympy2_extended.math_normalization import extract_boxed_content, normalize_latex
    from math_verify.parser import LatexExtractionConfig

    if not isinstance(target, LatexExtractionConfig):
        return _is_number(match)
    parts = _latex_parts(match)
    for name, latex in parts:
        mode = "last" if name.endswith("_latexBoxed") else "all"
        config = target.normalization_config
        if mode == "last":
            config = replace(config, boxed="last")  # as math-verify's `extract_latex` does for a plain box
        try:
            if len(extract_boxed_content(latex, mode)) > MAX_SHAPE_CHARS:
                return False
            if not simple_latex(normalize_latex(latex, config)):
                return False
        except Exception:  # noqa: BLE001 -- a normalization that fails here is the worker's to report
            return False
    return bool(parts)


def _latex_parts(match: re.Match[str]) -> list[tuple[str, str]]:
    """(group name, LaTeX) of each environment a LaTeX match holds: the first, then "and"/","-joined ones."""
    found = {k.partition("_")[0]: (k, v) for k, v in match.groupdict().items() if v and "_latex" in k}
    return [found[prefix] for prefix in _PREFIXES if prefix in found]


def _is_number(match: re.Match[str]) -> bool:
    groups = match.groupdict()
    return any(v for k, v in groups.items() if k.startswith(("integer", "decimal"))) and not groups.get("expr")


def bare(match: re.Match[str], target: object) -> str:
    """The matched answer as a bare string that reads back to the same value inside `\\boxed{}`: a number without
    thousands separators, an expression, or the LaTeX of each environment matched (several joined by ", ", read
    back as a set, as math-verify reads "$1$ and $2$"; boxes inside as math-verify takes them, several close
    together joined by ","); a matched percent sign is kept."""
    from latex2sympy2_extended.math_normalization import extract_boxed_content
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
    for name, latex in _latex_parts(match):
        if "\\boxed" in latex:
            latex = extract_boxed_content(latex, "last" if name.endswith("_latexBoxed") else "all")
        parts.append(latex.strip() + ("\\%" if groups.get(name.split("_")[0] + "_percent") else ""))
    return ", ".join(parts)
