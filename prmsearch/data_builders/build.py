"""`prmsearch build`: one config from a YAML recipe and/or CLI flags → read → label → save, with a summary.

The summary and the StepFormat are written next to the data (`build.json`) so a trainer can check it uses the
same step boundaries the labels were built with.
"""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
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
SAVE_IN_PROCESS_BYTES = 256 * 2**20  # a larger save_to_disk runs in a spawned worker that maps a shard at a time
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
    with _cache_folder(cfg.output) as cache:
        ds = _build_target(cfg, traces, tokenizer, fmt, build_report, progress, cache)
        summary = _summary(cfg, read_report, build_report, fmt, start)
        if not build_report.examples:
            _refuse_empty(cfg, read_report, build_report)
        save_dataset(ds, cfg.output, summary, progress)
        del ds  # its Arrow files are memory-mapped from the folder removed next
    return summary


def _cache_folder(output: str) -> tempfile.TemporaryDirectory:
    """A temporary folder for the examples' Arrow files while they are built, removed after (a kill may leave it:
    `.NAME.build-*`). It sits beside the output, on the disk that must hold the output anyway, rather than in a
    /tmp that may be memory."""
    parent = os.path.dirname(os.path.abspath(output))
    name = os.path.basename(os.path.normpath(output))
    return tempfile.TemporaryDirectory(prefix=f".{name}.build-", dir=parent if os.path.isdir(parent) else None)


def _label_kind(cfg: BuildConfig) -> str:
    """`cfg.label_kind`, with auto read as three-class for PRM800K whose 0 ratings stay 0."""
    if cfg.source == "prm800k" and cfg.neutral == "three-class" and cfg.label_kind == "auto":
        return "three-class"
    return cfg.label_kind


def _build_target(
    cfg: BuildConfig, traces: Any, tokenizer: Any, fmt: StepFormat, report: BuildReport, progress: bool, cache: str
) -> Any:
    """The examples of `cfg.target` built from `traces`, counted in `report`, streamed to Arrow files in `cache`."""
    common = {"report": report, "progress": progress, "cache_dir": cache}
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


def save_dataset(ds: Any, path: str, summary: dict[str, Any], progress: bool = False) -> str:
    """`.jsonl` / `.parquet` files, or a `save_to_disk` folder; the summary goes to `build.json` inside the folder,
    or to `<file>.build.json` beside a file. Returns the summary's path. Each is written under a temporary name
    and renamed when whole, so a killed build leaves the old output or the new one, never half of one."""
    text = json.dumps(summary, indent=2, ensure_ascii=False)
    folder = not path.endswith((".jsonl", ".parquet"))
    with replacing(path) as tmp, _datasets_bars(progress and folder):
        if path.endswith(".jsonl"):
            with open(tmp, "wb") as f:
                for piece in _pieces(ds, progress):
                    piece.to_json(f, lines=True, force_ascii=False)
        elif path.endswith(".parquet"):
            _write_parquet(ds, str(tmp), progress)
        else:
            big = sum(os.path.getsize(f["filename"]) for f in ds.cache_files) > SAVE_IN_PROCESS_BYTES
            ds.save_to_disk(str(tmp), num_proc=1 if big else None)
            (tmp / "build.json").write_text(text, encoding="utf-8")
    if folder:
        return os.path.join(path, "build.json")
    meta = path + ".build.json"
    write_atomic(meta, text)
    return meta


@contextmanager
def _datasets_bars(show: bool) -> Iterator[None]:
    """datasets' own progress bars on or off for a block (a piecewise save shows one bar of its own instead)."""
    import datasets

    def turn(on: bool) -> None:
        (datasets.enable_progress_bars if on else datasets.disable_progress_bars)()

    was = datasets.is_progress_bar_enabled()
    turn(show)
    try:
        yield
    finally:
        turn(was)


def _pieces(ds: Any, progress: bool) -> Iterator[Any]:
    """`ds` file by file when it is whole Arrow files (what the builders return), each memory-mapped only while it is
    written out: the pages of a mapped file that were read count in this process' resident memory until it is
    unmapped, so writing a built set out through one mapping would count all of it. Anything else comes whole."""
    import datasets
    from tqdm.auto import tqdm

    files = [f["filename"] for f in ds.cache_files]
    whole = files and sum(len(datasets.Dataset.from_file(f)) for f in files) == len(ds) and ds.format["type"] is None
    with tqdm(total=len(ds), desc="save", unit=" examples", disable=not progress) as bar:
        for name in files if whole else [None]:
            piece = datasets.Dataset.from_file(name) if name else ds
            yield piece
            bar.update(len(piece))
            del piece  # unmapped before the next is read


def _write_parquet(ds: Any, path: str, progress: bool) -> None:
    """One Parquet file, written a piece at a time by datasets' own Parquet writer in the row groups
    `Dataset.to_parquet` makes (~100 MB each), which would read the whole set through one mapping."""
    import pyarrow as pa
    from datasets.arrow_writer import (
        ParquetWriter,
        get_writer_batch_size_from_data_size,
        get_writer_batch_size_from_features,
    )

    rows = get_writer_batch_size_from_features(ds.features)
    rows = rows or get_writer_batch_size_from_data_size(len(ds), ds.data.nbytes)
    with ParquetWriter(features=ds.features, path=path, writer_batch_size=rows) as writer:
        pending = ds.with_format("arrow")[:0]
        for piece in _pieces(ds, progress):
            pending = pa.concat_tables([pending, piece.with_format("arrow")[:]])
            while len(pending) >= rows:
                writer.write_table(pending.slice(0, rows))
                pending = pending.slice(rows)
        if len(pending):
            writer.write_table(pending)
        writer.finalize()


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
