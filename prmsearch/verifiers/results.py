"""Grade a file of model outputs: `prmsearch verify math`.

Rows are read, graded and written in chunks, so a bad row deep in a big file stops the run with everything before
it already written (or, with `skip_bad`, is counted and left out), and memory stays flat.
"""

from __future__ import annotations

import json
import os
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

from ..errors import InputError, OutputError, PrmsearchError, require_local
from ..recipes import option
from ..rows import BadRowError, ReadReport, RowError, get, get_strings, parse_rows
from .math import DEFAULT_TIMEOUT, Grade, compare_many, gold_answer, grade_many


@dataclass
class VerifyMathConfig:
    """`pred_field` holds a solution (its final answer is extracted) or, with `pred_is_answer`, the answer itself;
    a list of either grades every item. `gold_field` holds a bare answer or a whole reference solution. Dotted paths
    reach nested fields (`6b_finetuning.solution`). `label_field`, if given, is an existing correct/incorrect label
    to measure agreement with."""

    input: str = option(
        "", "model outputs to grade: a .jsonl/.json/.parquet/.csv file, a save_to_disk folder or a hub id"
    )
    output: str = option("", "the graded rows (.jsonl): each input row plus grade_answer, grade_correct, grade_reason")
    pred_field: str = option("solution", "field of the prediction: a solution, or a list of them, graded each")
    gold_field: str = option("answer", "field of the gold answer: a bare answer or a whole reference solution")
    label_field: str | None = option(None, "field of an existing true/false label to measure agreement with")
    pred_is_answer: bool = option(False, "pred_field holds the final answer itself: compare it, extract nothing")
    timeout: float = option(DEFAULT_TIMEOUT, "seconds per comparison, enforced in a worker; a timed-out one is wrong")
    workers: int | None = option(None, "processes comparing answers (default: every usable CPU)")
    skip_bad: bool = option(False, "count and skip malformed rows instead of stopping at the first")
    chunk_size: int = option(10_000, "rows graded and written at a time (memory stays flat; earlier chunks are kept)")
    split: str = option("train", "split of a hub dataset or save_to_disk folder")

    def __post_init__(self) -> None:
        # Each missing path is named on its own, and a mistyped local path is refused here, before a hub round-trip
        # turns it into a "Repo id must use alphanumeric chars" message about a repository nobody meant.
        if not self.input:
            raise InputError("--input is required: the file of model outputs to grade")
        if not self.output:
            raise InputError("--output is required: the .jsonl file the graded rows go to")
        require_local(self.input, "file", "--input")
        if os.path.abspath(self.input) == os.path.abspath(self.output):
            raise OutputError(f"--output must differ from --input ({self.input}): the input would be overwritten")
        if self.timeout <= 0 or self.chunk_size < 1:
            raise PrmsearchError("--timeout must be positive and --chunk-size at least 1")


def _parse(row: dict[str, Any], cfg: VerifyMathConfig) -> tuple[list[str], str, list[bool] | None, bool]:
    """(predictions, gold, labels, was a list) of one row, or RowError naming the bad field."""
    value = get(row, cfg.pred_field, (str, list))
    preds = get_strings(row, cfg.pred_field) if isinstance(value, list) else [value]
    gold = get(row, cfg.gold_field, (str, int, float))
    labels = None
    if cfg.label_field:
        label = get(row, cfg.label_field, (bool, list))
        labels = label if isinstance(label, list) else [label]
        if len(labels) != len(preds) or not all(isinstance(x, bool) for x in labels):
            raise RowError(cfg.label_field, f"expected {len(preds)} booleans, one per prediction, got {label!r}"[:200])
    return preds, str(gold), labels, isinstance(value, list)


# One parsed row waiting in a chunk: (line, row, predictions, gold, labels, was the prediction field a list).
_Pending = tuple[int, dict, list[str], str, list[bool] | None, bool]


@dataclass
class _Tally:
    """Running totals over every graded answer, kept across chunks for the summary."""

    reasons: Counter = field(default_factory=Counter)
    graded: int = 0
    agree: int = 0
    disagreements: list[str] = field(default_factory=list)


def verify_math_file(cfg: VerifyMathConfig, progress: bool = True) -> dict[str, Any]:
    """Write every input row with `grade_answer`, `grade_correct`, `grade_reason` added (lists when the prediction
    field is a list), and return a summary."""
    start = time.perf_counter()
    report = ReadReport()
    tally = _Tally()
    _prepare_output(cfg.output)
    bar = _progress_bar() if progress else None
    # Rows go to a temporary file renamed over OUTPUT when all are graded: a killed run leaves the old OUTPUT (or
    # none) and never half of one. Rows graded before a bad row are kept, as OUTPUT.partial.
    tmp = f"{cfg.output}.{os.getpid()}.tmp"
    with open(tmp, "w", encoding="utf-8") as out:
        chunk: list[_Pending] = []
        try:
            parsed = parse_rows(
                cfg.input, lambda row: _parse(row, cfg), skip_bad=cfg.skip_bad, report=report, split=cfg.split
            )
            for line, row, fields in parsed:
                chunk.append((line, row, *fields))
                if len(chunk) >= cfg.chunk_size:
                    _write_chunk(out, chunk, cfg, tally, bar)
            if chunk:
                _write_chunk(out, chunk, cfg, tally, bar)
        except BadRowError as e:
            if chunk:
                _write_chunk(out, chunk, cfg, tally, bar)  # rows before the bad one are graded: kept, not lost
            out.close()
            os.replace(tmp, cfg.output + ".partial")
            raise BadRowError(
                e.path,
                e.line,
                e.field,
                f"{e.message} (the {tally.graded} answers graded before it are in "
                f"{cfg.output}.partial; --skip-bad skips bad rows)",
            ) from None
        except BaseException:
            out.close()
            os.remove(tmp)
            raise
        finally:
            if bar is not None:
                bar.close()
    os.replace(tmp, cfg.output)
    return _summary(cfg, report, tally, start)


def _prepare_output(output: str) -> None:
    """Refuse a folder as OUTPUT and make the folder it goes in, before any row is graded."""
    if os.path.isdir(output):
        raise OutputError(f"--output {output} is a folder; give the path of a .jsonl file")
    os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)


def _progress_bar() -> Any:
    from tqdm.auto import tqdm

    return tqdm(desc="grading", unit="row")


def _grade_chunk(chunk: list[_Pending], cfg: VerifyMathConfig) -> list[Grade]:
    """One grade per prediction of the chunk's rows, in order, in one batch of workers."""
    preds = [p for *_, ps, _g, _l, _w in chunk for p in ps]
    golds = [g for *_, ps, g, _l, _w in chunk for _ in ps]
    if cfg.pred_is_answer:
        verdicts = compare_many(preds, [gold_answer(g) for g in golds], timeout=cfg.timeout, workers=cfg.workers)
        return [Grade(p, ok, why) for p, (ok, why) in zip(preds, verdicts, strict=True)]
    return grade_many(preds, golds, timeout=cfg.timeout, workers=cfg.workers, progress=False)


def _write_chunk(out: Any, chunk: list[_Pending], cfg: VerifyMathConfig, tally: _Tally, bar: Any) -> None:
    """Grade the chunk's rows, write them with their grades and count them in `tally`; the chunk is then emptied."""
    grades = _grade_chunk(chunk, cfg)
    at = 0
    for line, row, ps, gold, labels, was_list in chunk:
        mine = grades[at : at + len(ps)]
        at += len(ps)
        fields = {
            "grade_answer": [g.answer for g in mine],
            "grade_correct": [g.correct for g in mine],
            "grade_reason": [g.reason for g in mine],
        }
        if not was_list:
            fields = {k: v[0] for k, v in fields.items()}
        out.write(json.dumps({**row, **fields}, ensure_ascii=False) + "\n")
        for k, g in enumerate(mine):
            tally.reasons[g.reason] += 1
            tally.graded += 1
            if labels is not None:
                tally.agree += g.correct == labels[k]
                if g.correct != labels[k] and len(tally.disagreements) < 20:
                    tally.disagreements.append(
                        f"{cfg.input}:{line}[{k}]: label {labels[k]}, graded {g.correct} "
                        f"({g.reason}; answer {g.answer!r}, gold {gold_answer(gold)!r})"
                    )
    out.flush()
    if bar is not None:
        bar.update(len(chunk))
    chunk.clear()


def _summary(cfg: VerifyMathConfig, report: ReadReport, tally: _Tally, start: float) -> dict[str, Any]:
    summary: dict[str, Any] = {
        "input": cfg.input,
        "output": cfg.output,
        "rows": report.rows,
        "bad_rows": report.bad_rows,
        "bad_examples": report.bad_examples,
        "graded": tally.graded,
        "correct": tally.reasons["identical"] + tally.reasons["equivalent"],
        "reasons": dict(tally.reasons.most_common()),
        "seconds": round(time.perf_counter() - start, 2),
        "config": asdict(cfg),
    }
    if cfg.label_field:
        summary["agreement"] = {"agree": tally.agree, "of": tally.graded, "examples": tally.disagreements}
    return summary


def format_verify_summary(summary: dict[str, Any]) -> str:
    graded = summary["graded"]
    lines = [
        f"rows {summary['rows']}, bad rows skipped {summary['bad_rows']}, graded {graded} in {summary['seconds']} s",
        f"correct {summary['correct']}/{graded} ({100 * summary['correct'] / max(graded, 1):.2f} %)",
        "reasons: " + ", ".join(f"{k} {v}" for k, v in summary["reasons"].items()),
    ]
    lines += [f"  bad: {e}" for e in summary["bad_examples"]]
    if "agreement" in summary:
        a = summary["agreement"]
        lines.append(
            f"agreement with {summary['config']['label_field']}: {a['agree']}/{a['of']} "
            f"({100 * a['agree'] / max(a['of'], 1):.2f} %)"
        )
        lines += [f"  {e}" for e in a["examples"]]
    return "\n".join(lines)
