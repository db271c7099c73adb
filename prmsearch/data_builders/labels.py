"""Label builders: traces → tokenized PRM / ORM examples, and the TRL stepwise-supervision export.

Every example goes through `StepFormat.encode`, so the positions labelled here are exactly the positions the
trainer and the search-time scorer read. An example that cannot be built (too long, no labels, no outcome) is
dropped and counted by reason, never silently truncated.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from ..records import StepLabel, Trace
from ..steps import StepFormat, TooLongError
from .examples import ExampleWriter

IGNORE = -100
LABEL_KINDS = ("auto", "hard", "soft", "three-class")
OUTCOME_TO_STEPS = ("all", "last", "none")


@dataclass
class BuildReport:
    """Counts for the closing summary: traces seen, examples written, drops by reason."""

    traces: int = 0
    examples: int = 0
    dropped: Counter = field(default_factory=Counter)
    label_kind: str | None = None
    longest: int = 0  # tokens of the longest example encoded
    long_limit: int | None = None  # examples above this many tokens are counted in `long`
    long: int = 0

    def drop(self, reason: str) -> None:
        self.dropped[reason] += 1

    def saw(self, tokens: int) -> None:
        """Note an encoded example's length (`build` reports the very long ones)."""
        self.longest = max(self.longest, tokens)
        self.long += self.long_limit is not None and tokens > self.long_limit


def step_labels(trace: Trace, outcome_to_steps: str = "all") -> list[StepLabel] | None:
    """The trace's step labels, or labels derived from its outcome when the source has none.

    "all" copies the outcome onto every step (the usual weak-supervision baseline), "last" labels only the final
    step, "none" derives nothing. Returns None when no label can be had.
    """
    if trace.step_labels is not None:
        return trace.step_labels
    if trace.outcome is None or outcome_to_steps == "none":
        return None
    value = 1.0 if trace.outcome else 0.0
    if outcome_to_steps == "all":
        return [value] * len(trace.steps)
    if outcome_to_steps == "last":
        return [None] * (len(trace.steps) - 1) + [value]
    raise ValueError(f"outcome_to_steps must be one of {OUTCOME_TO_STEPS}, got {outcome_to_steps!r}")


class LabelKind:
    """The label kind of a build, decided while its examples are written rather than after all are held: an explicit
    kind checks every label as it comes; "auto" is hard until a label other than 0/1 shows up, then soft, and
    refuses -1 (three-class must be asked for, since a 0 means different things). `checked=False` (the stepwise
    export) only tells hard from soft."""

    def __init__(self, kind: str, *, checked: bool = True):
        if kind not in LABEL_KINDS:
            raise ValueError(f"label_kind must be one of {LABEL_KINDS}, got {kind!r}")
        self.auto = kind == "auto"
        self.kind = "hard" if self.auto else kind
        self.checked = checked

    def see(self, labels: Iterable[float]) -> bool:
        """Check one example's labels; True when they turn an auto kind from hard to soft (a new column type)."""
        was = self.kind
        for value in labels:
            if self.auto and value == -1.0:
                raise ValueError(
                    "labels contain -1 (3-class ratings): pass label_kind='three-class' or a neutral policy"
                )
            if self.auto and value not in (0.0, 1.0):
                self.kind = "soft"
            if self.checked:
                _check_label(value, self.kind)
        return self.kind != was


def _check_label(value: float, kind: str) -> None:
    allowed = {"hard": (0.0, 1.0), "three-class": (-1.0, 0.0, 1.0)}.get(kind)
    if allowed is not None and value not in allowed:
        raise ValueError(f"label {value!r} is not a {kind} label {allowed}; use label_kind='soft' or 'auto'")
    if kind == "soft" and not 0.0 <= value <= 1.0:
        raise ValueError(f"soft label {value!r} outside [0, 1]")


def _encode(fmt: StepFormat, tokenizer: Any, trace: Trace, max_length: int | None, report: BuildReport):
    if not any(s.strip() for s in trace.steps):
        report.drop("no_steps")
        return None
    try:
        encoded = fmt.encode(tokenizer, trace.prompt, trace.steps, max_length=max_length)
    except TooLongError:
        report.drop("too_long")
        return None
    report.saw(len(encoded.input_ids))
    return encoded


def counted(traces: Iterable[Trace], report: BuildReport, progress: bool, desc: str) -> Iterator[Trace]:
    """`traces`, each counted in `report.traces`, behind a progress bar."""
    from tqdm.auto import tqdm

    for trace in tqdm(traces, desc=desc, unit=" traces", disable=not progress):
        report.traces += 1
        yield trace


def _labelled(traces: Iterable[Trace], outcome_to_steps: str, report: BuildReport, progress: bool, desc: str):
    """(trace, step labels) for every trace that has or can derive labels; the rest are counted as dropped."""
    for trace in counted(traces, report, progress, desc):
        labels = step_labels(trace, outcome_to_steps)
        if labels is None:
            report.drop("no_step_labels")
            continue
        yield trace, labels


def _token_features(label_dtype: str, **extra: Any) -> dict[str, Any]:
    import datasets

    return {
        "input_ids": datasets.Sequence(datasets.Value("int32")),
        "attention_mask": datasets.Sequence(datasets.Value("int8")),
        "labels": datasets.Sequence(datasets.Value(label_dtype)),
        **extra,
        "group_id": datasets.Value("string"),
        "source": datasets.Value("string"),
    }


def _prm_features(kind: str) -> dict[str, Any]:
    return _token_features("float64" if kind == "soft" else "int64", prompt_length=_int32())


def _meta_columns(trace: Trace) -> dict[str, Any]:
    return {"group_id": trace.group_id, "source": trace.source}


def _token_labels(enc: Any, labels: list[StepLabel]) -> list[float] | None:
    """-100 everywhere but at the ends of the labelled steps kept in `enc`; None when no step end is labelled."""
    token_labels: list[float] = [IGNORE] * len(enc.input_ids)
    for pos, step in zip(enc.step_ends, enc.kept, strict=True):
        if labels[step] is not None:
            token_labels[pos] = labels[step]
    return None if all(v == IGNORE for v in token_labels) else token_labels


def build_prm(
    traces: Iterable[Trace],
    tokenizer: Any,
    fmt: StepFormat,
    *,
    label_kind: str = "auto",
    outcome_to_steps: str = "all",
    max_length: int | None = None,
    report: BuildReport | None = None,
    progress: bool = True,
    cache_dir: str | None = None,
):
    """PRM examples: `input_ids`, `attention_mask`, `labels` (-100 except at step ends), `prompt_length` (the
    prompt's tokens: an implicit PRM counts only the completion's), `group_id`, `source`.

    Labels are int64 for "hard" (0/1) and "three-class" (-1/0/+1), float64 for "soft" (never rounded). "auto"
    picks hard or soft from the data; three-class must be asked for, since a 0 means different things.
    The examples stream to Arrow files in `cache_dir` (the dataset reads them from there), or to memory without one.
    """
    kind = LabelKind(label_kind)
    report = report if report is not None else BuildReport()
    writer = ExampleWriter(_prm_features(kind.kind), cache_dir)
    for trace, labels in _labelled(traces, outcome_to_steps, report, progress, "build prm"):
        enc = _encode(fmt, tokenizer, trace, max_length, report)
        if enc is None:
            continue
        token_labels = _token_labels(enc, labels)
        if token_labels is None:
            report.drop("no_step_labels")
            continue
        if kind.see(v for v in token_labels if v != IGNORE):
            writer.switch(_prm_features(kind.kind))
        writer.write(
            {
                "input_ids": enc.input_ids,
                "attention_mask": enc.attention_mask,
                "labels": token_labels,
                "prompt_length": enc.prompt_length,
                **_meta_columns(trace),
            }
        )
    report.label_kind = kind.kind
    report.examples = writer.rows
    return writer.finish()


def _int32() -> Any:
    import datasets

    return datasets.Value("int32")


def build_orm(
    traces: Iterable[Trace],
    tokenizer: Any,
    fmt: StepFormat,
    *,
    max_length: int | None = None,
    report: BuildReport | None = None,
    progress: bool = True,
    cache_dir: str | None = None,
):
    """ORM examples: the outcome (1/0) on every completion token, -100 on prompt tokens, and `prompt_length` (what
    a likelihood ORM reads from). Streamed to `cache_dir` as `build_prm`'s are."""
    import datasets

    report = report if report is not None else BuildReport()
    writer = ExampleWriter(_token_features("int64", outcome=datasets.Value("int64"), prompt_length=_int32()), cache_dir)
    for trace in counted(traces, report, progress, "build orm"):
        if trace.outcome is None:
            report.drop("no_outcome")
            continue
        enc = _encode(fmt, tokenizer, trace, max_length, report)
        if enc is None:
            continue
        n_completion = len(enc.input_ids) - enc.prompt_length
        writer.write(
            {
                "input_ids": enc.input_ids,
                "attention_mask": enc.attention_mask,
                "labels": [IGNORE] * enc.prompt_length + [int(trace.outcome)] * n_completion,
                "outcome": int(trace.outcome),
                "prompt_length": enc.prompt_length,
                **_meta_columns(trace),
            }
        )
    report.label_kind = "outcome"
    report.examples = writer.rows
    return writer.finish()


def _stepwise_features(kind: str) -> dict[str, Any]:
    import datasets

    return {
        "prompt": datasets.Value("string"),
        "completions": datasets.Sequence(datasets.Value("string")),
        "labels": datasets.Sequence(datasets.Value("bool" if kind == "hard" else "float64")),
        "group_id": datasets.Value("string"),
        "source": datasets.Value("string"),
    }


def build_stepwise(
    traces: Iterable[Trace],
    *,
    outcome_to_steps: str = "all",
    report: BuildReport | None = None,
    progress: bool = True,
    cache_dir: str | None = None,
):
    """TRL's stepwise-supervision format (`prompt`, `completions`, `labels`), so data moves between TRL and
    prmsearch. Labels are bools when all are 0/1, else floats; a trace with an unlabelled step is dropped because
    the format has no way to say "unknown". Streamed to `cache_dir` as `build_prm`'s examples are."""
    kind = LabelKind("auto", checked=False)
    report = report if report is not None else BuildReport()
    writer = ExampleWriter(_stepwise_features(kind.kind), cache_dir)
    for trace, labels in _labelled(traces, outcome_to_steps, report, progress, "build stepwise"):
        kept = [(s, v) for s, v in zip(trace.steps, labels, strict=True) if s.strip()]
        if not kept:
            report.drop("no_steps")
            continue
        if any(v is None for _, v in kept):
            report.drop("partial_step_labels")
            continue
        if kind.see(v for _, v in kept):
            writer.switch(_stepwise_features(kind.kind))
        writer.write(
            {
                "prompt": trace.prompt,
                "completions": [s for s, _ in kept],
                "labels": [v == 1.0 if kind.kind == "hard" else v for _, v in kept],
                **_meta_columns(trace),
            }
        )
    report.label_kind = kind.kind
    report.examples = writer.rows
    return writer.finish()
