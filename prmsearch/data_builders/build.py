"""`prmsearch build`: one config from a YAML recipe and/or CLI flags → read → label → save, with a summary.

The summary and the StepFormat are written next to the data (`build.json`) so a trainer can check it uses the
same step boundaries the labels were built with.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from dataclasses import dataclass
from typing import Any, ClassVar

from ..errors import PrmsearchError, refuse_overwrite
from ..files import replacing, write_atomic
from ..recipes import option, read_recipe
from ..rows import ReadReport
from ..steps import StepFormat
from .labels import LABEL_KINDS, OUTCOME_TO_STEPS, BuildReport, build_orm, build_prm, build_stepwise
from .pairs import MARGINS, build_pairs
from .readers import ReaderOptions, read_source

TARGETS = ("prm", "orm", "pairs", "stepwise")
LONG_TOKENS = 32_768  # without --max-length, examples longer than this (or the tokenizer's limit) are reported
_DROP_HINTS = {
    "too_long": "raise --max-length",
    "too_long_pairs": "raise --max-length",
    "no_outcome": "the rows have no outcome: give --outcome-key, or --gold-field to grade the solutions",
    "no_step_labels": "the rows have no step labels: give --outcome-to-steps all or last to label steps by outcome",
    "one_sided_group_traces": "pairs need a right and a wrong solution of the same problem",
    "no_steps": "the solutions are empty: check --solution-fields and --separator",
}


@dataclass
class BuildConfig(ReaderOptions):
    """Everything `prmsearch build` needs. Field names are the CLI flags (`--skip-bad` → `skip_bad`); how the input
    is read is `ReaderOptions`' part, shared with `prmsearch label`."""

    target: str = option(
        "prm",
        "what to build: prm (step labels at step ends), orm (the outcome on every solution token), pairs (BT "
        "chosen/rejected of one problem), stepwise (TRL's prompt/completions/labels, not tokenized)",
    )
    output: str = option(
        "", "where the examples go: a .jsonl or .parquet file, or a save_to_disk folder; the summary beside it"
    )
    tokenizer: str | None = option(
        None, "tokenizer to encode with, needed by prm and orm: a hub id, a local folder, a .gguf file or smollm2"
    )
    separator: str = option("\n\n", "text between the steps of a solution: splits raw traces, joins steps")
    marker: str | None = option(
        None, "text or special token after each step in model input, its last token labelled ('': the step's own)"
    )
    prompt_separator: str = option("\n\n", "text between the prompt and the first step in model input")
    gap: str = option(
        "", "unlabelled text between a step's marker and the next step in model input (Math-Shepherd: \\n)"
    )
    max_length: int | None = option(None, "token limit per example: a longer example is dropped and counted, never cut")
    label_kind: str = option(
        "auto",
        "prm step labels: hard (0/1), soft (floats in [0, 1]), three-class (-1/0/+1), auto (hard if all are 0/1, "
        "else soft; prm800k with --neutral three-class: three-class)",
    )
    outcome_to_steps: str = option(
        "all",
        "prm, stepwise: a trace with an outcome but no step labels gets it on all steps, the last step, or none "
        "(dropped)",
    )
    margin: str = option("none", "pairs: none, or steps (a margin column: the pair's difference of mean step labels)")
    split: str = option("train", "split of a hub dataset or save_to_disk folder (ProcessBench: gsm8k, math, ...)")
    # raw traces
    gold_field: str | None = option(
        None, "traces: field of the gold answer (or a reference solution); grades solutions that carry no outcome"
    )

    # Allowed values of the fields that are a choice; the CLI shows them in --help.
    CHOICES: ClassVar[dict[str, tuple[str, ...]]] = {
        **ReaderOptions.CHOICES,
        "target": TARGETS,
        "label_kind": LABEL_KINDS,
        "outcome_to_steps": OUTCOME_TO_STEPS,
        "margin": MARGINS,
    }

    def __post_init__(self) -> None:
        for name, allowed in self.CHOICES.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {', '.join(allowed)}; got {getattr(self, name)!r}")
        self.check_reader()

    @classmethod
    def from_yaml(cls, path: str, **overrides: Any) -> BuildConfig:
        return cls(**{**read_recipe(path, cls), **overrides})

    def step_format(self) -> StepFormat:
        return StepFormat(self.separator, self.marker, self.prompt_separator, self.gap)


def run_build(cfg: BuildConfig, progress: bool = True) -> dict[str, Any]:
    """Build and save the dataset; returns the summary that is also written to `build.json`."""
    if not cfg.input or not cfg.output:
        raise ValueError("build needs an input and an output path")
    refuse_overwrite(cfg.output, cfg.input)
    if cfg.target in ("prm", "orm") and not cfg.tokenizer:
        raise ValueError(f"build {cfg.target} needs --tokenizer (a hub id, a local folder, a .gguf, or 'smollm2')")
    start = time.time()
    tokenizer = None
    if cfg.tokenizer:
        from ..models.tokenizers import load_tokenizer

        tokenizer = load_tokenizer(cfg.tokenizer)
    fmt = cfg.step_format()
    read_report, build_report = ReadReport(), BuildReport()
    if tokenizer is not None and cfg.max_length is None:
        limit = getattr(tokenizer, "model_max_length", None)
        build_report.long_limit = limit if isinstance(limit, int) and 0 < limit < LONG_TOKENS else LONG_TOKENS
    traces = read_source(
        cfg,
        read_report,
        split=cfg.split,
        separator=cfg.separator,
        gold_field=cfg.gold_field,
    )
    ds = _build_target(cfg, traces, tokenizer, fmt, build_report, progress)
    summary = _summary(cfg, read_report, build_report, fmt, start)
    if not build_report.examples:
        _refuse_empty(cfg, read_report, build_report)
    save_dataset(ds, cfg.output, summary)
    return summary


def _label_kind(cfg: BuildConfig) -> str:
    """`cfg.label_kind`, with auto read as three-class for PRM800K whose 0 ratings stay 0."""
    if cfg.source == "prm800k" and cfg.neutral == "three-class" and cfg.label_kind == "auto":
        return "three-class"
    return cfg.label_kind


def _build_target(
    cfg: BuildConfig, traces: Any, tokenizer: Any, fmt: StepFormat, report: BuildReport, progress: bool
) -> Any:
    """The examples of `cfg.target` built from `traces`, counted in `report`."""
    common = {"report": report, "progress": progress}
    if cfg.target == "prm":
        return build_prm(
            traces,
            tokenizer,
            fmt,
            label_kind=_label_kind(cfg),
            outcome_to_steps=cfg.outcome_to_steps,
            max_length=cfg.max_length,
            **common,
        )
    if cfg.target == "orm":
        return build_orm(traces, tokenizer, fmt, max_length=cfg.max_length, **common)
    if cfg.target == "pairs":
        return build_pairs(traces, fmt, tokenizer=tokenizer, margin=cfg.margin, max_length=cfg.max_length, **common)
    return build_stepwise(traces, outcome_to_steps=cfg.outcome_to_steps, **common)


def _summary(
    cfg: BuildConfig, read_report: ReadReport, build_report: BuildReport, fmt: StepFormat, start: float
) -> dict[str, Any]:
    return {
        "target": cfg.target,
        "source": cfg.source,
        "input": cfg.input,
        "rows_read": read_report.rows,
        "bad_rows": read_report.bad_rows,
        "bad_row_fields": dict(read_report.bad_fields),
        "bad_row_examples": read_report.bad_examples,
        "traces": build_report.traces,
        "examples": build_report.examples,
        "dropped": dict(build_report.dropped),
        "label_kind": build_report.label_kind,
        "longest_tokens": build_report.longest,
        "long_examples": build_report.long,
        "long_limit": build_report.long_limit,
        "step_format": fmt.to_dict(),
        "tokenizer": cfg.tokenizer,
        "config": dataclasses.asdict(cfg),
        "seconds": round(time.time() - start, 2),
    }


def _refuse_empty(cfg: BuildConfig, read_report: ReadReport, build_report: BuildReport) -> None:
    """Stop a build that kept no examples, saying what dropped them and what to change, before anything is written."""
    dropped = ", ".join(f"{k}={v}" for k, v in sorted(build_report.dropped.items())) or "none"
    hints = "; ".join(dict.fromkeys(_DROP_HINTS[k] for k in build_report.dropped if k in _DROP_HINTS))
    raise PrmsearchError(
        f"build {cfg.target}: no examples left from {build_report.traces} traces of {cfg.input} "
        f"({read_report.rows} rows read, {read_report.bad_rows} bad; dropped: {dropped}); nothing written"
        + (f"; {hints}" if hints else "")
    )


def save_dataset(ds: Any, path: str, summary: dict[str, Any]) -> str:
    """`.jsonl` / `.parquet` files, or a `save_to_disk` folder; the summary goes to `build.json` inside the folder,
    or to `<file>.build.json` beside a file. Returns the summary's path. Each is written under a temporary name
    and renamed when whole, so a killed build leaves the old output or the new one, never half of one."""
    text = json.dumps(summary, indent=2, ensure_ascii=False)
    with replacing(path) as tmp:
        if path.endswith(".jsonl"):
            ds.to_json(str(tmp), lines=True, force_ascii=False)
        elif path.endswith(".parquet"):
            ds.to_parquet(str(tmp))
        else:
            ds.save_to_disk(str(tmp))
            (tmp / "build.json").write_text(text, encoding="utf-8")
    if path.endswith((".jsonl", ".parquet")):
        meta = path + ".build.json"
        write_atomic(meta, text)
        return meta
    return os.path.join(path, "build.json")


def format_summary(summary: dict[str, Any]) -> str:
    lines = [
        f"rows read:        {summary['rows_read']}",
        f"bad rows skipped: {summary['bad_rows']}" + (f"  {summary['bad_row_fields']}" if summary["bad_rows"] else ""),
        f"traces:           {summary['traces']}",
        f"examples written: {summary['examples']}  ({summary['target']}, labels: {summary['label_kind']})",
    ]
    dropped = summary["dropped"]
    lines.append("dropped:          " + (", ".join(f"{k}={v}" for k, v in sorted(dropped.items())) or "none"))
    if summary.get("long_examples"):
        lines.append(
            f"warning: {summary['long_examples']} examples longer than {summary['long_limit']} tokens (the longest "
            f"{summary['longest_tokens']}): training on them is slow or runs out of memory; --max-length drops them"
        )
    lines.extend(f"  {e}" for e in summary["bad_row_examples"])
    return "\n".join(lines)
