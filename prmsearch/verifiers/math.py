"""Math answers: pull the final answer out of a solution, and decide whether two answers are the same.

This is the first version. `math_verify` bounds its own work with SIGALRM, which only works in the main thread, so
off the main thread it runs here without a limit; the hard time limit enforced from a worker process, and the
cache, come with the verifiers issue (DESIGN.md, "Verifiers").
"""

from __future__ import annotations

import re
import threading

_BOXED = re.compile(r"\\(?:boxed|fbox)\s*\{")
_THE_ANSWER_IS = re.compile(r"the (?:final )?answer is:?\s*(.+)", re.IGNORECASE)
_HASHES = re.compile(r"####\s*(.+)")
_A_LINE = re.compile(r"^A:\s*(.+)$")


def extract_answer(text: str) -> str | None:
    """The final answer of a solution, or None when it states none.

    Tried in order: the last `\\boxed{}`/`\\fbox{}` (MATH), "The answer is X" (Math-Shepherd, few-shot prompts),
    "#### N" (GSM8K gold), a last line "A: N" (GSM8K model solutions). The last match wins, because solutions
    restate intermediate results before the final one.
    """
    starts = [m.end() for m in _BOXED.finditer(text)]
    for start in reversed(starts):
        inner = _balanced(text, start)
        if inner is not None:
            return inner.strip()
    for pattern in (_THE_ANSWER_IS, _HASHES):
        matches = pattern.findall(text)
        if matches:
            return _clean(matches[-1])
    lines = text.strip().splitlines()
    m = _A_LINE.match(lines[-1].strip()) if lines else None
    return _clean(m.group(1)) if m else None


def _balanced(text: str, start: int) -> str | None:
    """The text from `start` up to the brace that closes the one just before it; None if it never closes."""
    depth = 1
    for i in range(start, len(text)):
        depth += {"{": 1, "}": -1}.get(text[i], 0)
        if depth == 0:
            return text[start:i]
    return None


def _clean(answer: str) -> str:
    """Drop the sentence's full stop and a `$...$` wrapper: "The answer is $\\frac{1}{2}$." -> "\\frac{1}{2}"."""
    answer = answer.strip().rstrip(".").strip()
    if len(answer) > 1 and answer.startswith("$") and answer.endswith("$"):
        answer = answer[1:-1].strip()
    return answer


def is_equivalent(pred: str | None, gold: str | None) -> bool:
    """Whether `pred` is mathematically the same answer as `gold` ("1,000" == "1000", "0.5" == "\\frac{1}{2}").

    Never raises: a parse failure or a timeout counts as not equivalent, so one odd answer cannot stop a run.
    """
    if pred is None or gold is None:
        return False
    if " ".join(pred.split()) == " ".join(gold.split()):
        return True
    from math_verify import parse, verify  # sympy takes ~0.5 s to import: paid only by those who compare

    # Wrapping in \boxed{} makes math_verify take the whole string as one answer (LaTeX or plain).
    limit = 5 if threading.current_thread() is threading.main_thread() else None
    try:
        gold_parsed = parse(f"\\boxed{{{gold}}}", parsing_timeout=limit)
        pred_parsed = parse(f"\\boxed{{{pred}}}", parsing_timeout=limit)
        return bool(verify(gold_parsed, pred_parsed, timeout_seconds=limit))
    except Exception:
        return False
