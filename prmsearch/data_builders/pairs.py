"""Bradley-Terry pairs: every (correct, incorrect) pair of solutions to the same problem.

Pairs keep the `group_id` of their problem so a trainer can put all K-choose-2 pairs of one prompt in one batch
and reweight them, instead of letting a problem with many samples dominate the loss.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from ..records import Trace
from ..steps import StepFormat, TooLongError
from .examples import ExampleWriter
from .labels import BuildReport, counted

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
    cache_dir: str | None = None,
):
    """Columns `prompt`, `chosen`, `rejected` (TRL's reward format with an explicit prompt), `group_id`, and
    `margin` when asked for. With a tokenizer, also `chosen_input_ids`/`rejected_input_ids` encoded through
    `fmt`, so the BT head reads the same tokens at training and at search time.

    A problem's solutions may lie anywhere in the input, so the traces are held, grouped, until the input ends; the
    pairs (up to K x K per problem) stream to Arrow files in `cache_dir` (or memory) as each group is paired."""
    if margin not in MARGINS:
        raise ValueError(f"margin must be one of {MARGINS}, got {margin!r}")
    report = report if report is not None else BuildReport()
    groups: dict[str, list[Trace]] = {}
    for trace in counted(traces, report, progress, "build pairs"):
        if trace.outcome is None:
            report.drop("no_outcome")
        elif not any(s.strip() for s in trace.steps):
            report.drop("no_steps")
        else:
            groups.setdefault(trace.group_id or trace.prompt, []).append(trace)
    writer = ExampleWriter(_features(margin, tokenizer is not None), cache_dir)
    for group_id in list(groups):
        members = groups.pop(group_id)  # a paired group's traces are let go
        for row in _group_pairs(group_id, members, fmt, tokenizer, margin, max_length, report):
            writer.write(row)
    report.examples = writer.rows
    report.label_kind = "pairs"
    return writer.finish()


def _group_pairs(
    group_id: str,
    members: list[Trace],
    fmt: StepFormat,
    tokenizer: Any,
    margin: str,
    max_length: int | None,
    report: BuildReport,
) -> Iterator[dict[str, Any]]:
    """Every (correct, incorrect) pair of one problem's solutions; a one-sided group is counted as dropped."""
    good = [t for t in members if t.outcome]
    bad = [t for t in members if not t.outcome]
    if not good or not bad:
        report.dropped["one_sided_group_traces"] += len(members)
        return
    ids = {id(t): _ids(fmt, tokenizer, t, max_length, report) for t in members} if tokenizer is not None else {}
    for c in good:
        for r in bad:
            if tokenizer is not None and (ids[id(c)] is None or ids[id(r)] is None):
                report.drop("too_long_pairs")
                continue
            row = {"prompt": c.prompt, "chosen": fmt.join(c.steps), "rejected": fmt.join(r.steps), "group_id": group_id}
            if margin == "steps":
                row["margin"] = trace_score(c) - trace_score(r)
            if tokenizer is not None:
                row["chosen_input_ids"], row["rejected_input_ids"] = ids[id(c)], ids[id(r)]
            yield row


def _features(margin: str, tokenized: bool) -> dict[str, Any]:
    import datasets

    features = {name: datasets.Value("string") for name in ("prompt", "chosen", "rejected", "group_id")}
    if margin == "steps":
        features["margin"] = datasets.Value("float64")
    if tokenized:
        features["chosen_input_ids"] = features["rejected_input_ids"] = datasets.Sequence(datasets.Value("int32"))
    return features


def _ids(
    fmt: StepFormat, tokenizer: Any, trace: Trace, max_length: int | None, report: BuildReport
) -> list[int] | None:
    try:
        ids = fmt.encode(tokenizer, trace.prompt, trace.steps, max_length=max_length).input_ids
    except TooLongError:
        return None
    report.saw(len(ids))
    return ids
