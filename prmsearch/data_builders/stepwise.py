"""TRL's stepwise-supervision format (trl-lib/prm800k, trl-lib/math_shepherd): prompt, completions, labels.

Labels are bools or soft floats in [0, 1]; a float is kept exactly as given (0.37 stays 0.37), because rounding a
Monte-Carlo estimate to 0/1 throws away what soft-label training is for.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from ..records import Trace
from ..rows import ReadReport, RowError, get, get_strings, read_traces, stable_id


def read_stepwise(
    source: str,
    *,
    skip_bad: bool = False,
    report: ReadReport | None = None,
    split: str = "train",
) -> Iterator[Trace]:
    """One trace per row. TRL's format carries no outcome; a row with a bool `outcome` (as `prmsearch label`
    writes) keeps it, so the same file builds ORM data, and a `group_id` field keeps a problem's traces together.

    TRL's format cannot say "unknown", so `prmsearch label --after-error unlabelled` cuts `completions` at the
    first error and keeps the whole solution in `steps` with `step_labels` (null after the first error); such a row
    is read whole, so a PRM learns the same labels and an ORM sees the solution it grades."""
    return read_traces(source, stepwise_traces, skip_bad=skip_bad, report=report, split=split)


def stepwise_traces(row: dict[str, Any]) -> list[Trace]:
    """The trace of one stepwise row (a `RowError` naming the field when it is malformed): what `read_stepwise`
    reads from each row of a file, and `prmsearch train prm` from each row of TRL stepwise data it is given."""
    prompt = get(row, "prompt", str)
    # `datasets` gives every row every column of the file, null where a row lacks one (`prmsearch train` reads so)
    whole = row.get("steps") is not None and row.get("step_labels") is not None
    steps_key, labels_key = ("steps", "step_labels") if whole else ("completions", "labels")
    completions = get_strings(row, steps_key)
    raw = get(row, labels_key, list)
    if len(raw) != len(completions):
        raise RowError(labels_key, f"{len(raw)} labels for {len(completions)} {steps_key}")
    labels: list[float | None] = []
    for i, y in enumerate(raw):
        if isinstance(y, bool):
            labels.append(1.0 if y else 0.0)
        elif isinstance(y, (int, float)) and 0.0 <= y <= 1.0:
            labels.append(float(y))
        elif y is None and whole:
            labels.append(None)
        else:
            raise RowError(f"{labels_key}[{i}]", f"expected a bool or a number in [0, 1], got {y!r}")
    outcome = row.get("outcome")
    if outcome is not None and not isinstance(outcome, bool):
        raise RowError("outcome", f"expected true, false or null, got {outcome!r}")
    group = row.get("group_id") or stable_id(prompt)
    if not isinstance(group, str):
        raise RowError("group_id", f"expected a string, got {group!r}")
    return [Trace(prompt, completions, labels, outcome, group)]
