"""`prmsearch build`: one config from a YAML recipe and/or CLI flags → read → label → save, with a summary.

The summary and the StepFormat are written next to the data (`build.json`) so a trainer can check it uses the
same step boundaries the labels were built with.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from dataclasses import dataclass, field
from typing import Any, ClassVar

from ..recipes import read_recipe
from ..steps import StepFormat
from .labels import LABEL_KINDS, OUTCOME_TO_STEPS, BuildReport, build_orm, build_prm, build_stepwise
from .math_shepherd import read_math_shepherd
from .pairs import MARGINS, build_pairs
from .prm800k import NEUTRAL_POLICIES, read_prm800k
from .processbench import AFTER_ERROR, read_processbench
from .rows import ReadReport
from .stepwise import read_stepwise
from .traces import read_traces_file

TARGETS = ("prm", "orm", "pairs", "stepwise")
READERS = {
    "prm800k": read_prm800k,
    "math-shepherd": read_math_shepherd,
    "stepwise": read_stepwise,
    "processbench": read_processbench,
    "traces": read_traces_file,
}


@dataclass
class BuildConfig:
    """Everything `prmsearch build` needs. Field names are the CLI flags (`--skip-bad` → `skip_bad`)."""

    target: str = "prm"
    source: str = "traces"
    input: str = ""
    output: str = ""
    tokenizer: str | None = None
    separator: str = "\n\n"
    marker: str | None = None
    prompt_separator: str = "\n\n"
    gap: str = ""
    max_length: int | None = None
    label_kind: str = "auto"
    outcome_to_steps: str = "all"
    margin: str = "none"
    skip_bad: bool = False
    split: str = "train"
    # PRM800K
    neutral: str = "three-class"
    branches: bool = True
    # ProcessBench
    after_error: str = "negative"
    # raw traces
    prompt_field: str = "question"
    solution_fields: list[str] = field(default_factory=lambda: ["solution"])
    solution_key: str = "solution"
    outcome_key: str = "is_correct"
    gold_field: str | None = None

    # Allowed values of the fields that are a choice; the CLI shows them in --help.
    CHOICES: ClassVar[dict[str, tuple[str, ...]]] = {
        "target": TARGETS,
        "source": tuple(READERS),
        "label_kind": LABEL_KINDS,
        "outcome_to_steps": OUTCOME_TO_STEPS,
        "margin": MARGINS,
        "neutral": tuple(NEUTRAL_POLICIES),
        "after_error": AFTER_ERROR,
    }

    def __post_init__(self) -> None:
        for name, allowed in self.CHOICES.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {', '.join(allowed)}; got {getattr(self, name)!r}")
        if isinstance(self.solution_fields, str):
            self.solution_fields = [f for f in self.solution_fields.split(",") if f]

    @classmethod
    def from_yaml(cls, path: str, **overrides: Any) -> BuildConfig:
        return cls(**{**read_recipe(path, cls), **overrides})

    def step_format(self) -> StepFormat:
        return StepFormat(self.separator, self.marker, self.prompt_separator, self.gap)


def read_source(cfg: BuildConfig, report: ReadReport):
    """The reader for `cfg.source`, given the options that reader takes."""
    options = {
        "prm800k": {"neutral": cfg.neutral, "branches": cfg.branches},
        "processbench": {"after_error": cfg.after_error},
        "traces": {
            "prompt_field": cfg.prompt_field,
            "solution_fields": tuple(cfg.solution_fields),
            "solution_key": cfg.solution_key,
            "outcome_key": cfg.outcome_key,
            "gold_field": cfg.gold_field,
            "separator": cfg.separator,
        },
    }.get(cfg.source, {})
    return READERS[cfg.source](cfg.input, skip_bad=cfg.skip_bad, report=report, split=cfg.split, **options)


def run_build(cfg: BuildConfig, progress: bool = True) -> dict[str, Any]:
    """Build and save the dataset; returns the summary that is also written to `build.json`."""
    if not cfg.input or not cfg.output:
        raise ValueError("build needs an input and an output path")
    if cfg.target in ("prm", "orm") and not cfg.tokenizer:
        raise ValueError(f"build {cfg.target} needs --tokenizer (a hub id, a local folder, a .gguf, or 'smollm2')")
    start = time.time()
    tokenizer = None
    if cfg.tokenizer:
        from ..models.tokenizers import load_tokenizer

        tokenizer = load_tokenizer(cfg.tokenizer)
    label_kind = cfg.label_kind
    if cfg.source == "prm800k" and cfg.neutral == "three-class" and label_kind == "auto":
        label_kind = "three-class"
    fmt = cfg.step_format()
    read_report, build_report = ReadReport(), BuildReport()
    traces = read_source(cfg, read_report)
    common = {"report": build_report, "progress": progress}
    if cfg.target == "prm":
        ds = build_prm(
            traces,
            tokenizer,
            fmt,
            label_kind=label_kind,
            outcome_to_steps=cfg.outcome_to_steps,
            max_length=cfg.max_length,
            **common,
        )
    elif cfg.target == "orm":
        ds = build_orm(traces, tokenizer, fmt, max_length=cfg.max_length, **common)
    elif cfg.target == "pairs":
        ds = build_pairs(traces, fmt, tokenizer=tokenizer, margin=cfg.margin, max_length=cfg.max_length, **common)
    else:
        ds = build_stepwise(traces, outcome_to_steps=cfg.outcome_to_steps, **common)
    summary = {
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
        "step_format": fmt.to_dict(),
        "tokenizer": cfg.tokenizer,
        "config": dataclasses.asdict(cfg),
        "seconds": round(time.time() - start, 2),
    }
    save_dataset(ds, cfg.output, summary)
    return summary


def save_dataset(ds: Any, path: str, summary: dict[str, Any]) -> str:
    """`.jsonl` / `.parquet` files, or a `save_to_disk` folder; the summary goes to `build.json` inside the folder,
    or to `<file>.build.json` beside a file. Returns the summary's path."""
    if path.endswith(".jsonl"):
        ds.to_json(path, lines=True, force_ascii=False)
        meta = path + ".build.json"
    elif path.endswith(".parquet"):
        ds.to_parquet(path)
        meta = path + ".build.json"
    else:
        ds.save_to_disk(path)
        meta = os.path.join(path, "build.json")
    with open(meta, "w", encoding="utf-8") as f:
        json.dump(summary, f, indent=2, ensure_ascii=False)
    return meta


def format_summary(summary: dict[str, Any]) -> str:
    lines = [
        f"rows read:        {summary['rows_read']}",
        f"bad rows skipped: {summary['bad_rows']}" + (f"  {summary['bad_row_fields']}" if summary["bad_rows"] else ""),
        f"traces:           {summary['traces']}",
        f"examples written: {summary['examples']}  ({summary['target']}, labels: {summary['label_kind']})",
    ]
    dropped = summary["dropped"]
    lines.append("dropped:          " + (", ".join(f"{k}={v}" for k, v in sorted(dropped.items())) or "none"))
    lines.extend(f"  {e}" for e in summary["bad_row_examples"])
    return "\n".join(lines)
