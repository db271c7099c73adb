"""Strict verdict parsing. A judge's output holds a verdict only when it has exactly one verdict line of the
expected form (or several that agree); anything else is invalid (None), so a judge that rambles, refuses or hedges
is counted, not silently read as a default."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence

# A verdict line: the keyword, the verdict, then punctuation or the end of the line ("Better: A." or "Better: A,
# because ..."), never more words ("Better: A or B" is no verdict).
_END = r"\)?(?:[.!,;:]|[ \t]*$)"
PAIRWISE = re.compile(r"^\W*better\W*:?\s*(?:solution\s*)?\(?([AB])" + _END, re.I | re.M)


def parse_pairwise(text: str) -> str | None:
    """ "A" or "B" from a line such as "Better: A" ("better: solution (b)." too); None when no such line or when
    lines disagree."""
    found = {m.group(1).upper() for m in PAIRWISE.finditer(text)}
    return found.pop() if len(found) == 1 else None


def majority(verdicts: Sequence[str | None]) -> str | None:
    """The most common valid verdict of k samples; None when none is valid or the top two tie."""
    counts = Counter(v for v in verdicts if v is not None).most_common(2)
    if not counts or (len(counts) == 2 and counts[0][1] == counts[1][1]):
        return None
    return counts[0][0]


POINTWISE = re.compile(r"^\W*verdict\W*:?\s*\(?(correct|incorrect)" + _END, re.I | re.M)
RATING = re.compile(r"^\W*rating\W*:?\s*\(?(10|[1-9])(?:\s*/\s*10)?" + _END, re.I | re.M)
CRITIC = re.compile(r"^\W*earliest\s+wrong\s+step\W*:?\s*\(?(none|\d+)" + _END, re.I | re.M)


def _one(pattern: re.Pattern, text: str) -> str | None:
    found = {m.group(1).lower() for m in pattern.finditer(text)}
    return found.pop() if len(found) == 1 else None


def parse_pointwise(text: str, scale: str = "verdict") -> float | None:
    """A score in [0, 1]: "Verdict: correct" 1.0, "Verdict: incorrect" 0.0; with `scale="rating"`, "Rating: N"
    (1-10) gives (N - 1) / 9. None when there is no such line, or lines disagree."""
    if scale == "rating":
        got = _one(RATING, text)
        return None if got is None else (int(got) - 1) / 9
    got = _one(POINTWISE, text)
    return None if got is None else float(got == "correct")


def parse_critic(text: str, steps: int) -> int | None:
    """The earliest wrong step a critic names, 0-based, -1 for "none" (ProcessBench's convention); None when no
    such line, lines disagree, or the number is not one of the `steps` (1-based in the prompt)."""
    got = _one(CRITIC, text)
    if got is None:
        return None
    if got == "none":
        return -1
    return int(got) - 1 if 1 <= int(got) <= steps else None
