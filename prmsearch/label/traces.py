"""Labelling traces in memory (`label_traces`): jobs from traces, chunks labelled by the methods, and the record
each labelled trace becomes (TRL's stepwise format plus provenance), with the totals of a run."""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from ..records import Trace
from ..rows import stable_id
from ..search.shard import Shard
from ..tasks import task_of
from .config import LabelConfig
from .methods import arithmetic_first_error, consensus_status, judge_status, search_first_errors, step_labels
from .rollouts import LabelJob, grade_outcomes, make_job, problem_of, run_rollouts


@dataclass
class LabelResult:
    """What `label_traces` returns: the labelled traces (step_labels filled, the record's extra fields in meta),
    the traces consensus dropped, their JSON records (as `run_label` writes them) and the summary."""

    traces: list[Trace]
    dropped: list[Trace]
    records: list[dict[str, Any]]
    dropped_records: list[dict[str, Any]]
    summary: dict[str, Any]


def label_traces(
    traces: Iterable[Trace],
    generator: Any,
    cfg: LabelConfig | None = None,
    *,
    progress: bool = False,
    judge: Any = None,
) -> LabelResult:
    """Label `traces` with rollouts from `generator` (any `Generator`: `HFGenerator`, `VLLMGenerator`, ...; None
    for method=judge), and with `judge` (a `CriticJudge`) where `cfg` uses one.

    A math trace needs `meta["gold"]` (a bare answer or a reference solution); a code trace needs
    `meta["task"] = "code"` with `meta["test"]` and `meta["entry_point"]` (HumanEval's convention), its prompt
    being the program's start. `meta["id"]`, when given, is the trace id seeds derive from (else a hash of the
    trace). Traces without a gold answer raise ValueError, or with `cfg.skip_bad` are counted and left out.
    """
    cfg = cfg or LabelConfig()
    started = time.time()
    dropped: Counter = Counter()
    need_judge(cfg, judge)
    jobs = make_jobs(traces, generator, cfg, dropped)
    kept: list[dict[str, Any]] = []
    removed: list[dict[str, Any]] = []
    for k, r in label_in_chunks(jobs, generator, cfg, progress=progress, judge=judge):
        kept += k
        removed += r
    summary = summarize(kept, removed, cfg, traces_in=len(jobs) + sum(dropped.values()), dropped=dropped)
    summary["seconds"] = round(time.time() - started, 2)
    return LabelResult([record_trace(r) for r in kept], [record_trace(r) for r in removed], kept, removed, summary)


def make_jobs(
    traces: Iterable[Trace], generator: Any, cfg: LabelConfig, dropped: Counter, shard: Shard | None = None
) -> list[LabelJob]:
    """A `LabelJob` per usable trace (see `usable_traces`), each with a unique id. With `shard`, only the traces
    of its problems (every K-th prompt, in order of first appearance), their ids those of the whole input."""
    traces = list(traces)
    ids = list(zip(traces, trace_ids(traces), strict=True))  # ids count every trace, usable or not
    if shard is not None and not shard.whole:
        mine = set(shard.take(list(dict.fromkeys(t.prompt for t in traces))))
        ids = [(t, job_id) for t, job_id in ids if t.prompt in mine]
    keep = {id(t) for t in usable_traces([t for t, _ in ids], cfg, dropped)}
    tokenizer = getattr(generator, "tokenizer", None)
    return [make_job(t, job_id, tokenizer, cfg) for t, job_id in ids if id(t) in keep]


def usable_traces(traces: Iterable[Trace], cfg: LabelConfig, dropped: Counter) -> list[Trace]:
    """The traces that can be labelled: traces without steps are counted in `dropped`, and those without a gold
    answer too when `cfg.skip_bad` (else ValueError naming the trace and what to give)."""
    out = []
    for trace in traces:
        if not any(s.strip() for s in trace.steps):
            dropped["no_steps"] += 1
            continue
        problem = problem_of(trace, "")
        task = task_of(problem)
        if not task.gradable(problem):
            if not cfg.skip_bad:
                raise ValueError(
                    f"{trace.source or 'a trace'}: no {task.needs} to grade rollouts against: give --gold-field (the "
                    "field of the input rows that holds it) or --problems (a problem file whose prompts match), "
                    "or --skip-bad to leave such traces out"
                )
            dropped["no_gold"] += 1
            continue
        out.append(trace)
    return out


def trace_ids(traces: Sequence[Trace]) -> list[str]:
    """The id of every trace (`trace_id`), in order: the order a run writes its records in."""
    seen: Counter = Counter()
    return [trace_id(trace, seen) for trace in traces]


def trace_id(trace: Trace, seen: Counter) -> str:
    """`meta["id"]`, else a hash of the prompt and steps; the k-th repeat of an id gets "#k", so ids are unique
    and stable for the same input."""
    base = (
        str(trace.meta["id"])
        if trace.meta.get("id") is not None
        else stable_id(json.dumps([trace.prompt, trace.steps]))
    )
    seen[base] += 1
    return base if seen[base] == 1 else f"{base}#{seen[base] - 1}"


def label_in_chunks(
    jobs: Sequence[LabelJob], generator: Any, cfg: LabelConfig, *, progress: bool = False, judge: Any = None
) -> Iterator[tuple[list[dict], list[dict]]]:
    """(kept records, consensus-dropped records) per chunk of `cfg.batch_traces` jobs, with a progress bar."""
    bar = progress_bar(len(jobs), progress)
    start, rollouts = time.time(), 0
    for at in range(0, len(jobs), cfg.batch_traces):
        chunk = list(jobs[at : at + cfg.batch_traces])
        kept, removed = label_chunk(chunk, generator, cfg, judge)
        yield kept, removed
        if bar is not None:
            rollouts += sum(job.rollouts for job in chunk)
            bar.update(len(chunk))
            bar.set_postfix_str(f"{rollouts / max(time.time() - start, 1e-9):.1f} rollouts/s")
    if bar is not None:
        bar.close()


def label_chunk(
    jobs: Sequence[LabelJob], generator: Any, cfg: LabelConfig, judge: Any = None
) -> tuple[list[dict], list[dict]]:
    """Label a chunk of jobs, batched across them: one grading pass for the outcomes, then one `generate` call for
    every prefix (mc), or one per binary-search round (first-error), and one judge call for the chunk where the
    labels or the consensus use the judge. Returns (kept records, dropped records)."""
    grade_outcomes(jobs, cfg)
    if cfg.method == "mc":
        run_rollouts([(job, i) for job in jobs for i in range(len(job.steps) - 1)], generator, cfg)
    elif cfg.method == "first-error":
        search_first_errors(jobs, generator, cfg)
    verdicts: list[int | None] = [None] * len(jobs)
    if cfg.uses_judge:
        verdicts = judge.first_errors([job.trace.prompt for job in jobs], [job.steps for job in jobs])
    kept, removed = [], []
    for job, verdict in zip(jobs, verdicts, strict=True):
        record = _record(job, cfg, verdict)
        status = record.get("consensus", {}).get("status")
        unlabelled = cfg.method == "judge" and verdict is None
        drop = unlabelled or (cfg.consensus == "drop" and status in ("disagree", "invalid"))
        (removed if drop else kept).append(record)
    return kept, removed


def _record(job: LabelJob, cfg: LabelConfig, verdict: int | None = None) -> dict[str, Any]:
    labels, first = step_labels(job, cfg, verdict)
    steps, correct = list(job.steps), list(job.correct)
    n = len(steps)
    record: dict[str, Any] = {
        "prompt": job.trace.prompt,
        "completions": steps,
        "labels": labels,
        "id": job.id,
        "group_id": job.trace.group_id,
        "source": job.trace.source,
        "task": job.task.name,
        "gold": job.problem.answer,
        "outcome": bool(job.outcome),
        "first_error": first,
        "correct_rollouts": correct,
        "rollouts": job.rollouts,
        "generated_tokens": job.tokens,
        "cut_rollouts": job.cut,
        "num_steps": n,
    }
    if "sample_tokens" in job.trace.meta:
        record["sample_tokens"] = job.trace.meta["sample_tokens"]
    if cfg.uses_judge:
        record["judge_first_error"] = verdict
    if cfg.method == "judge" and verdict is None:
        record["consensus"] = {"status": "invalid"}  # no verdict, no labels: dropped whatever `consensus` says
    elif cfg.consensus != "off" and cfg.second_opinion == "judge":
        record["consensus"] = {"status": judge_status(first, verdict), "judge_first_error": verdict}
    elif cfg.consensus != "off":
        checked = job.task.states_arithmetic(job.problem)
        arith = arithmetic_first_error(steps) if checked else None
        record["consensus"] = {"status": consensus_status(checked, first, arith), "arithmetic_first_error": arith}
    if cfg.method in ("first-error", "judge") and first is not None and first < n - 1 and cfg.after_error != "negative":
        # The stepwise format has no "unknown" label: its completions stop at the first error (for a causal PRM
        # the same training signal); `unlabelled` keeps the whole trace in `steps` / `step_labels`.
        if cfg.after_error == "unlabelled":
            hard = cfg.labels == "hard"
            record["steps"] = steps
            record["step_labels"] = [v == 1.0 if hard and v is not None else v for v in labels]
        else:
            record["correct_rollouts"] = correct[: first + 1]
        record["completions"], record["labels"] = steps[: first + 1], labels[: first + 1]
    if cfg.labels == "hard":
        record["labels"] = [None if v is None else v == 1.0 for v in record["labels"]]
    return record


def record_trace(record: dict[str, Any]) -> Trace:
    """The labelled `Trace` of a record: all its steps (with None where unlabelled), the outcome, the record's
    other fields in meta."""
    steps = record.get("steps", record["completions"])
    labels = [None if v is None else float(v) for v in record.get("step_labels", record["labels"])]
    skip = {"prompt", "completions", "labels", "steps", "step_labels", "group_id", "source", "outcome"}
    meta = {k: v for k, v in record.items() if k not in skip}
    return Trace(record["prompt"], list(steps), labels, record["outcome"], record["group_id"], record["source"], meta)


def summarize(
    kept: Sequence[dict[str, Any]],
    removed: Sequence[dict[str, Any]],
    cfg: LabelConfig,
    *,
    traces_in: int,
    dropped: Counter | dict[str, int],
) -> dict[str, Any]:
    """Totals over the records of a run: what the closing summary prints and `<output>.label.json` holds."""
    every = [*kept, *removed]
    values = [float(v) for r in kept for v in r["labels"]]
    statuses = Counter(r["consensus"]["status"] for r in every if "consensus" in r)
    unlabelled = sum(cfg.method == "judge" and r.get("judge_first_error") is None for r in removed)
    return {
        "method": cfg.method,
        "k": cfg.k,
        "labels": cfg.labels,
        "after_error": cfg.after_error if cfg.method in ("first-error", "judge") else None,
        "consensus": cfg.consensus,
        "second_opinion": cfg.second_opinion if cfg.consensus != "off" else None,
        "judge": cfg.judge or None,
        "policy": cfg.policy,
        "backend": cfg.backend,
        "seed": cfg.seed,
        "temperature": cfg.temperature,
        "sample_temperature": cfg.sample_temperature,
        "top_p": cfg.top_p,
        "max_tokens": cfg.max_tokens,
        "traces_in": traces_in,
        "traces": len(kept),
        "steps_labelled": len(values),
        "positive_steps": sum(v == 1.0 for v in values),
        "negative_steps": sum(v == 0.0 for v in values),
        "mean_label": round(sum(values) / len(values), 4) if values else None,
        "rollouts": sum(r["rollouts"] for r in every),
        "exhaustive_rollouts": sum(cfg.k * (r["num_steps"] - 1) for r in every),
        "cut_rollouts": sum(r["cut_rollouts"] for r in every),
        "generated_tokens": sum(r["generated_tokens"] + r.get("sample_tokens", 0) for r in every),
        "consensus_counts": dict(sorted(statuses.items())),
        "dropped_by_consensus": len(removed) - unlabelled,
        "invalid_verdicts": sum(r.get("judge_first_error", 0) is None for r in every),
        "marked_by_consensus": statuses["disagree"] if cfg.consensus == "mark" else 0,
        "dropped": dict(sorted(Counter(dropped).items())),
    }


def format_label_summary(summary: dict[str, Any]) -> str:
    method = f"{summary['method']}, K={summary['k']}, labels: {summary['labels']}"
    if summary.get("after_error"):
        method += f", after error: {summary['after_error']}"
    lines = [
        f"traces in:          {summary['traces_in']}",
        f"traces labelled:    {summary['traces']}  ({method})",
        f"steps labelled:     {summary['steps_labelled']}  (1: {summary['positive_steps']}, "
        f"0: {summary['negative_steps']}, mean {summary['mean_label']})",
        f"rollouts:           {summary['rollouts']}  (every step: {summary['exhaustive_rollouts']}; "
        f"cut by max_tokens: {summary['cut_rollouts']})",
        f"generated tokens:   {summary['generated_tokens']}",
    ]
    if summary.get("judge"):
        lines.append(f"judge:              {summary['judge']}; invalid verdicts {summary['invalid_verdicts']}")
    if summary["consensus"] != "off":
        counts = ", ".join(f"{k}={v}" for k, v in summary["consensus_counts"].items()) or "none"
        lines.append(
            f"consensus:          {counts}; dropped {summary['dropped_by_consensus']}, "
            f"marked {summary['marked_by_consensus']}"
        )
    dropped = summary["dropped"]
    lines.append("dropped:            " + (", ".join(f"{k}={v}" for k, v in dropped.items()) or "none"))
    if "seconds" in summary:
        lines.append(f"seconds:            {summary['seconds']}")
    return "\n".join(lines)


def progress_bar(total: int, enabled: bool) -> Any:
    """A progress bar over `total` traces (None when off, or nothing to do)."""
    if not enabled or not total:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc="label", unit="trace")


def need_judge(cfg: LabelConfig, judge: Any) -> None:
    if cfg.uses_judge and judge is None:
        raise ValueError(
            "method=judge and second_opinion=judge need a judge: --judge MODEL (the judge LM: a folder, hub id or "
            "embedded name), or judge= in Python"
        )
