"""ProcessBench (Qwen/ProcessBench): solutions annotated with the index of their first wrong step.

Only the first error is annotated, so what follows it is unknown; `after_error` says how to treat those steps:
"negative" (0.0: a solution stays wrong once it went wrong), "unlabelled" (None: not supervised), or "truncate"
(cut the trace after the first error).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from ..records import StepLabel, Trace
from ..rows import ReadReport, RowError, get, get_strings, read_traces, stable_id

AFTER_ERROR = ("negative", "unlabelled", "truncate")


def first_error_labels(steps: list[str], first_error: int, after_error: str) -> tuple[list[str], list[StepLabel]]:
    """Step labels from a first-error annotation (-1: none): 1.0 before it, 0.0 at it, and after it as
    `after_error` says (the steps are cut after it for "truncate")."""
    if first_error < 0:
        return steps, [1.0] * len(steps)
    if after_error == "truncate":
        steps = steps[: first_error + 1]
    after = 0.0 if after_error == "negative" else None
    return steps, [1.0] * first_error + [0.0] + [after] * (len(steps) - first_error - 1)


def read_processbench(
    source: str,
    *,
    after_error: str = "negative",
    skip_bad: bool = False,
    report: ReadReport | None = None,
    split: str = "train",
) -> Iterator[Trace]:
    """One trace per row; `outcome` is the row's `final_answer_correct`. ProcessBench's splits are gsm8k, math,
    olympiadbench and omnimath, so pass e.g. `split="gsm8k"` for the hub dataset."""
    if after_error not in AFTER_ERROR:
        raise ValueError(f"after_error={after_error!r}: expected one of {AFTER_ERROR}")

    def parse(row: dict[str, Any]) -> list[Trace]:
        problem = get(row, "problem", str)
        steps = get_strings(row, "steps")
        first_error = get(row, "label", int)
        correct = get(row, "final_answer_correct", bool)
        if not -1 <= first_error < len(steps):
            raise RowError("label", f"{first_error} is not -1 or the index of one of the {len(steps)} steps")

        steps, labels = first_error_labels(steps, first_error, after_error)
        meta = {k: row[k] for k in ("id", "generator") if row.get(k) is not None}
        return [Trace(problem, steps, labels, correct, stable_id(problem), meta=meta)]

    return read_traces(source, parse, skip_bad=skip_bad, report=report, split=split)
