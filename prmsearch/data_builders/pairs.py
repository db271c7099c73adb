"""Bradley-Terry pairs: every (correct, incorrect) pair of solutions to the same problem.

Pairs keep the `group_id` of their problem so a trainer can put all K-choose-2 pairs of one prompt in one batch
and reweight them, instead of letting a problem with many samples dominate the loss.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ..records import Trace
from ..steps import StepFormat, TooLongError
from .labels import BuildReport, _counted, _dataset

MARGINS = ("none", "steps")


def trace_score(trace: Trace) -> float:
    """Mean of the known step labels (ratings), else the outcome: what `margin="steps"` subtracts."""
    known = [v for v in trace.step_labels or [] if v is not None]
    if known:
        return sum(known) / len(known)
    return float(bool(trace.outcome))


def build_pairs(
    traces: Iterable[Trace],
    fmt: StepFormat,
    *,
    tokenizer: Any = None,
    margin: str = "none",
    max_length: int | None = None,
    report: BuildReport | None = None,
    progress: bool = True,
):
    """Columns `prompt`, `chosen`, `rejected` (TRL's reward format with an explicit prompt), `group_id`, and
    `margin` when asked for. With a tokenizer, also `chosen_input_ids`/`rejected_input_ids` encoded through
    `fmt`, so the BT head reads the same tokens at training and at search time."""
    import datasets

    if margin not in MARGINS:
        raise ValueError(f"margin must be one of {MARGINS}, got {margin!r}")
    report = report if report is not None else BuildReport()
    groups: dict[str, list[Trace]] = {}
    for trace in _counted(traces, report, progress, "build pairs"):
        if trace.outcome is None:
            report.drop("no_outcome")
        elif not any(s.strip() for s in trace.steps):
            report.drop("no_steps")
        else:
            groups.setdefault(trace.group_id or trace.prompt, []).append(trace)
    rows = []
    for group_id, members in groups.items():
        good = [t for t in members if t.outcome]
        bad = [t for t in members if not t.outcome]
        if not good or not bad:
            report.dropped["one_sided_group_traces"] += len(members)
            continue
        ids = {id(t): _ids(fmt, tokenizer, t, max_length, report) for t in members} if tokenizer is not None else {}
        for c in good:
            for r in bad:
                if tokenizer is not None and (ids[id(c)] is None or ids[id(r)] is None):
                    report.drop("too_long_pairs")
                    continue
                row = {
                    "prompt": c.prompt,
                    "chosen": fmt.join(c.steps),
                    "rejected": fmt.join(r.steps),
                    "group_id": group_id,
                }
                if margin == "steps":
                    row["margin"] = trace_score(c) - trace_score(r)
                if tokenizer is not None:
                    row["chosen_input_ids"], row["rejected_input_ids"] = ids[id(c)], ids[id(r)]
                rows.append(row)
    report.examples = len(rows)
    report.label_kind = "pairs"
    features = {name: datasets.Value("string") for name in ("prompt", "chosen", "rejected", "group_id")}
    if margin == "steps":
        features["margin"] = datasets.Value("float64")
    if tokenizer is not None:
        features["chosen_input_ids"] = features["rejected_input_ids"] = datasets.Sequence(datasets.Value("int32"))
    return _dataset(rows, features)


def _ids(
    fmt: StepFormat, tokenizer: Any, trace: Trace, max_length: int | None, report: BuildReport
) -> list[int] | None:
    try:
        ids = fmt.encode(tokenizer, trace.prompt, trace.steps, max_length=max_length).input_ids
    except TooLongError:
        return None
    report.saw(len(ids))
    return ids
