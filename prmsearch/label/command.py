"""`prmsearch label`: read (or sample) the traces, label them in chunks, append each chunk to the output, resume;
with `--workers N`, split the problems over N processes (`outputs`: the files, the workers' parts and their merge).

Each chunk of traces is appended in one write, flushed and fsynced; `--resume` cuts a torn last line, skips the
traces already written and ends with exactly the file an uninterrupted run writes. Provenance and the summary go to
`<output>.label.json`, traces consensus dropped to `<output>.dropped.jsonl`.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from contextlib import nullcontext
from pathlib import Path
from typing import Any

from ..data_builders.readers import read_source
from ..errors import OutputError
from ..files import append_rows, read_rows
from ..records import Problem, Trace
from ..resume import exclusive
from ..rows import ReadReport, get, parse_rows
from ..search.shard import Shard, exit_with_parent
from ..tasks import load_problems, task_of
from .config import LabelConfig
from .outputs import dropped_path, merge_parts, part_path, prepare_output, sidecar_path, write_json
from .rollouts import sample_traces
from .traces import label_in_chunks, make_jobs, need_judge, progress_bar, summarize, trace_ids, usable_traces

Write = Callable[[list[dict], list[dict]], None]


def run_label(
    cfg: LabelConfig, *, resume: bool = False, progress: bool = True, generator: Any = None, judge: Any = None
) -> dict[str, Any]:
    """Label the traces `cfg` names (read with a reader, or sampled with `cfg.sample`) into `cfg.output`; returns
    the summary also written to `<output>.label.json`. `generator` (and `judge`, a `CriticJudge`) may be given
    already loaded (notebooks, tests); otherwise they come from `cfg.policy` / `cfg.backend` (and `cfg.judge`)."""
    started = time.time()
    out = _check_paths(cfg)
    if cfg.workers > 1 and (generator is not None or judge is not None):
        raise ValueError("workers > 1 loads the models in every worker process: give generator= or judge= only with 1")
    with exclusive(out):  # a second run on the same output at once would label every trace twice
        return _run_label(cfg, out, started, resume, progress, generator, judge)


def _run_label(
    cfg: LabelConfig, out: Path, started: float, resume: bool, progress: bool, generator: Any, judge: Any
) -> dict[str, Any]:
    dropped: Counter = Counter()
    report = ReadReport()
    items: list[Problem] | list[Trace]
    if cfg.sample:
        items = _gradable_problems(cfg, dropped)
        traces_in = len(items) * cfg.sample + dropped["no_gold"]
        order, units = [f"{p.id}/{j}" for p in items for j in range(cfg.sample)], len(items)
    else:
        items = read_traces(cfg, report)
        traces_in = len(items)
        usable_traces(items, cfg, Counter())  # bad input stops the run before anything is written
        order, units = trace_ids(items), len({t.prompt for t in items})
    done = prepare_output(out, cfg, resume)
    workers = max(1, min(cfg.workers, units))
    if workers == 1:
        dropped.update(label_part(cfg, items, out, Shard(), done, progress, generator, judge))
    else:
        dropped.update(_label_split(cfg, items, out, done, progress, workers))
    merge_parts(out, order)  # the parts of this run, or of a killed split run this one resumed
    summary = summarize(read_rows(out), read_rows(dropped_path(out)), cfg, traces_in=traces_in, dropped=dropped)
    summary.update(
        {
            "bad_rows": report.bad_rows,
            "bad_row_examples": report.bad_examples,
            "input": cfg.input or cfg.problems,
            "output": str(out),
            "resumed": bool(done),
            "seconds": round(time.time() - started, 2),
            "step_format": cfg.step_format().to_dict(),
            "config": dataclasses.asdict(cfg),
            "status": "done",
        }
    )
    write_json(sidecar_path(out), summary)
    return summary


def label_part(
    cfg: LabelConfig,
    items: Sequence[Problem] | Sequence[Trace],
    out: Path,
    shard: Shard,
    done: set[str],
    progress: bool = False,
    generator: Any = None,
    judge: Any = None,
) -> Counter:
    """Label `shard`'s share of `items` (problems to sample from with `cfg.sample`, else traces; every K-th problem)
    that `done` lacks: the whole run into `out`, or worker I of K into its part file, holding its lock, with its
    share of the CPU threads. Returns the counts of what it left out (`dropped`)."""
    dropped: Counter = Counter()
    target = out if shard.whole else part_path(out, shard)
    shard.share_threads()
    with nullcontext() if shard.whole else exclusive(target):  # the whole run: the caller holds the output's lock
        generator, judge = _load_models(cfg, generator, judge)
        write = _writer(target)
        if cfg.sample:
            _label_samples(shard.take(items), done, write, generator, judge, cfg, dropped, progress)
        else:
            jobs = make_jobs(items, generator, cfg, dropped, shard)
            todo = [j for j in jobs if j.id not in done]
            for kept, removed in label_in_chunks(todo, generator, cfg, progress=progress, judge=judge):
                write(kept, removed)
    return dropped


def _label_split(
    cfg: LabelConfig, items: Sequence[Any], out: Path, done: set[str], progress: bool, workers: int
) -> Counter:
    """`label_part` in `workers` processes (as `prmsearch quickstart` splits its search); their counts summed."""
    import multiprocessing

    dropped: Counter = Counter()
    # spawn, not fork: a forked child would inherit torch's thread pool state from a parent that used it
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(workers, context, initializer=exit_with_parent, initargs=(os.getpid(),)) as pool:
        shares = [
            pool.submit(label_part, cfg, items, out, Shard(i, workers), done, progress and i == 0)
            for i in range(workers)
        ]
        try:
            for share in shares:
                dropped.update(share.result())  # a worker's error is raised here, after the others have finished
        except BrokenProcessPool:
            raise OutputError(
                f"a worker labelling {out} died (out of memory?); what the workers wrote is kept: run again with "
                "--resume (fewer --workers need less memory)"
            ) from None
    return dropped


def _gradable_problems(cfg: LabelConfig, dropped: Counter) -> list[Problem]:
    """The problems to sample from that carry what grading needs; the others stop the run, or with `skip_bad` are
    left out and counted."""
    problems = load_problems(cfg.problems, split=cfg.split, limit=cfg.limit)
    no_gold = [p for p in problems if not task_of(p).gradable(p)]
    if no_gold and not cfg.skip_bad:
        raise ValueError(
            f"{cfg.problems}: problem {no_gold[0].id!r} has no gold answer to grade rollouts against; "
            "add one, or pass --skip-bad to leave such problems out"
        )
    dropped["no_gold"] += len(no_gold) * cfg.sample
    return [p for p in problems if p not in no_gold]


def _load_models(cfg: LabelConfig, generator: Any, judge: Any) -> tuple[Any, Any]:
    """The policy (where rollouts or samples need one) and the critic (where labels or consensus use one), loaded
    by name unless given."""
    if generator is None and cfg.uses_policy:
        from ..search.load import load_generator

        if not cfg.policy:
            raise ValueError("label needs --policy (the model that writes rollouts and samples)")
        generator = load_generator(cfg)
    if judge is None and cfg.uses_judge and cfg.judge:
        from ..search.load import load_judge

        judge = load_judge(cfg.judge, "critic", device=cfg.device, batch_size=cfg.generate_batch)
        judge.max_tokens = cfg.judge_max_tokens
    need_judge(cfg, judge)
    return generator, judge


def _label_samples(
    problems: list[Problem],
    done: set[str],
    write: Write,
    generator: Any,
    judge: Any,
    cfg: LabelConfig,
    dropped: Counter,
    progress: bool,
) -> None:
    """Sample `cfg.sample` solutions of each problem not done yet and label them, a few problems a `generate`
    call, each chunk appended as it is labelled."""
    per_call = max(1, cfg.batch_traces // cfg.sample)
    todo = [p for p in problems if any(f"{p.id}/{j}" not in done for j in range(cfg.sample))]
    bar = progress_bar(len(todo) * cfg.sample, progress)
    rollouts, t0 = 0, time.time()
    for at in range(0, len(todo), per_call):
        sampled = sample_traces(todo[at : at + per_call], generator, cfg, dropped)
        jobs = make_jobs([t for t in sampled if t.meta["id"] not in done], generator, cfg, dropped)
        for kept, removed in label_in_chunks(jobs, generator, cfg, judge=judge):
            write(kept, removed)
        if bar is not None:
            rollouts += sum(job.rollouts for job in jobs)
            bar.update(len(todo[at : at + per_call]) * cfg.sample)
            bar.set_postfix_str(f"{rollouts / max(time.time() - t0, 1e-9):.1f} rollouts/s")
    if bar is not None:
        bar.close()


def _writer(target: Path) -> Write:
    """Appends a chunk's records to `target` (kept) and its dropped file. Dropped records first: a kill between the
    two writes leaves the kept ones to redo, never a trace twice."""

    def write(kept: list[dict], removed: list[dict]) -> None:
        if removed:
            append_rows(dropped_path(target), removed)
        if kept:
            append_rows(target, kept)

    return write


def _check_paths(cfg: LabelConfig) -> Path:
    if not cfg.output:
        raise ValueError("label needs --output (a .jsonl file)")
    if not cfg.output.endswith(".jsonl"):
        raise ValueError(f"--output {cfg.output}: labels are written as JSON lines; give a path ending in .jsonl")
    if cfg.sample:
        if not cfg.problems or cfg.input:
            raise ValueError("--sample N samples from --problems (a problem file or dataset); drop --input")
    elif not cfg.input:
        raise ValueError("label needs --input (traces to label), or --sample N with --problems")
    out = Path(cfg.output)
    ours = {os.path.realpath(p) for p in (out, sidecar_path(out), dropped_path(out))}
    for name in ("input", "problems"):
        given = getattr(cfg, name)
        if given and os.path.realpath(given) in ours:
            raise ValueError(f"--output {cfg.output} would overwrite --{name} {given}; choose another output path")
    return out


def read_traces(cfg: LabelConfig, report: ReadReport) -> list[Trace]:
    """The traces of `cfg.input` through `cfg.source`'s reader, each with its gold answer in `meta["gold"]`: from
    the input row's `cfg.gold_field`, or from the `cfg.problems` problem whose prompt is the trace's."""
    traces = []
    # the gold answers are read below (not the traces reader's gold_field); outcomes are graded while labelling
    for trace in read_source(cfg, report, split=cfg.split or "train", separator=cfg.separator):
        traces.append(trace)
        if cfg.limit is not None and len(traces) >= cfg.limit:
            break
    by_line = _golds_by_line(cfg) if cfg.gold_field else {}
    by_prompt = _golds_by_prompt(cfg) if cfg.problems else {}
    for trace in traces:
        if trace.meta.get("gold") is not None:
            continue
        gold = by_line.get(trace.source.rsplit(":", 1)[-1])
        if gold is None:
            gold = by_prompt.get(trace.prompt.strip())
        if gold is not None:
            trace.meta["gold"] = gold
    return traces


def _golds_by_line(cfg: LabelConfig) -> dict[str, str]:
    """Row line -> gold answer, read from the same rows the reader numbered (`Trace.source` is "file:line")."""
    golds = {}
    rows = parse_rows(
        cfg.input,
        lambda row: get(row, cfg.gold_field, (str, int, float)),  # type: ignore[arg-type]
        skip_bad=cfg.skip_bad,
        report=ReadReport(),
        split=cfg.split or "train",
    )
    for line, _row, gold in rows:
        golds[str(line)] = str(gold)
    return golds


def _golds_by_prompt(cfg: LabelConfig) -> dict[str, str]:
    golds = {}
    for p in load_problems(cfg.problems):
        if task_of(p).indented:
            raise ValueError(
                f"{cfg.problems}: problem {p.id!r} is a {task_of(p).name} task; label it with --sample (readers "
                "split solutions into stripped steps, which loses the indentation its steps need)"
            )
        if p.answer is not None:
            golds[p.prompt.strip()] = p.answer
    return golds
