"""Automatic process labels from rollouts: `prmsearch label`.

Two ways to turn a policy's rollouts into step labels (see `rollouts` for how a rollout is drawn and graded):

- Monte Carlo (`method: mc`, Math-Shepherd): K rollouts from every step prefix of a trace. The hard label of step
  i is 1 when some rollout from steps[: i + 1] reached the gold answer; the soft label is the fraction that did,
  kept as a float. The final step is labelled by the trace's own outcome, with no rollouts.
- First-error search (`method: first-error`, OmegaPRM): a binary search over the prefixes of a wrong trace for the
  first step after which none of K rollouts reaches the gold answer. Steps before it are 1, it is 0, the steps
  after it follow `after_error`. A right trace is all 1 with no rollouts. When labels are monotone (once no
  rollout recovers, none recovers later) this gives the Monte Carlo hard labels up to the first error, with
  about log2(steps) probes instead of steps - 1; the rollouts it used are reported. Probes draw exactly the
  rollouts Monte Carlo would draw at those steps (same seeds), so the two compare like for like.

- judge (`method: judge`, `judge: MODEL`): no rollouts; a step critic (`judges.CriticJudge`, ProcessBench's
  protocol, temperature 0) names each trace's earliest wrong step, which becomes the first error (steps after it
  follow `after_error`, as for first-error search); a trace whose verdict cannot be parsed is not labelled: it
  goes to `<output>.dropped.jsonl` with status `invalid`, and the summary counts it.

Consensus (`consensus: drop | mark`) compares the labels' first error with a second opinion (`second_opinion`):
- `arithmetic` (default, costs nothing): `check_arithmetic_steps`. When it finds a step with wrong arithmetic and
  the labels put the first error elsewhere, the trace is dropped (kept for inspection in `<output>.dropped.jsonl`)
  or marked. Status per trace: `agree` (same first error, or none by both), `disagree`, `unconfirmed` (the labels
  found an error where the arithmetic is fine: a reasoning error the checker cannot see), `unchecked` (code).
- `judge` (the Qwen2.5-Math-PRM recipe: Monte Carlo labels kept only where an LLM judge agrees): the step critic
  `judge` names the earliest wrong step of every trace; `agree` (the same step, or none by both), `disagree`, or
  `invalid` (no parseable verdict: nothing confirms the labels, so `drop` drops it too).

Output (`run_label`): one JSON line per trace in TRL's stepwise format (`prompt`, `completions`, `labels`), which
`read_stepwise` reads, so `prmsearch build prm --source stepwise` turns it into training data, plus `id`,
`group_id`, `source`, `task`, `gold`, `outcome`, `first_error`, `correct_rollouts` (per step, how many of the K
rollouts reached the gold; null where none ran), `rollouts`, `generated_tokens`, `cut_rollouts`, `num_steps`,
`consensus`. Provenance goes to `<output>.label.json`. Each chunk of traces is appended in one write, flushed and
fsynced; `--resume` cuts a torn last line, skips the traces already written and ends with exactly the file an
uninterrupted run writes.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from ..files import append_rows, read_rows
from ..recipes import option, read_recipe
from ..records import Problem, Trace
from ..rows import ReadReport, get, parse_rows, stable_id
from ..steps import StepFormat
from ..verifiers.arithmetic import check_arithmetic_steps
from .build import READERS
from .prm800k import NEUTRAL_POLICIES
from .processbench import AFTER_ERROR
from .rollouts import LabelJob, grade_outcomes, make_job, run_rollouts, sample_traces

METHODS = ("mc", "first-error", "judge")
SECOND_OPINIONS = ("arithmetic", "judge")
LABELS = ("hard", "soft")
CONSENSUS = ("off", "drop", "mark")


@dataclass
class LabelConfig:
    """Everything `prmsearch label` needs; every field is a flag (`--gold-field` -> `gold_field`) and a key of a
    YAML recipe (`--config`)."""

    # where the traces come from, where the labels go
    source: str = option("traces", "reader of --input, as in `prmsearch build`")
    input: str = option("", "traces to label: a .jsonl/.json/.parquet/.csv file, a save_to_disk folder or a hub id")
    sample: int = option(0, "instead of reading traces, sample N solutions per problem of --problems from the policy")
    problems: str = option(
        "", "problem file or dataset (load_problems) to --sample from; without --sample, gold answers by prompt"
    )
    gold_field: str | None = option(None, "field of the input rows holding the gold answer (dotted: a.b)")
    output: str = option("", "labelled traces (.jsonl, stepwise format); provenance in OUTPUT.label.json")
    limit: int | None = option(None, "only the first N traces (with --sample: the first N problems)")
    split: str | None = option(None, "split of a hub dataset or save_to_disk folder")
    skip_bad: bool = option(False, "count and skip malformed rows and traces without a gold answer")
    # how to label
    method: str = option(
        "mc", "mc: K rollouts from every step; first-error: binary search for the first bad step; judge: a step critic"
    )
    k: int = option(8, "rollouts per step prefix")
    labels: str = option("hard", "hard: 1 if some rollout reached the gold answer; soft: the fraction that did (mc)")
    after_error: str = option(
        "negative", "first-error: steps after the first error are negative, unlabelled, or truncate (dropped)"
    )
    consensus: str = option("off", "drop or mark traces whose first error the second opinion places elsewhere")
    second_opinion: str = option(
        "arithmetic", "what consensus asks: arithmetic (check_arithmetic_steps) or judge (the step critic --judge)"
    )
    judge: str = option("", "the judge LM (folder, hub id or embedded name) of method=judge or second_opinion=judge")
    judge_max_tokens: int = option(24, "tokens the judge writes after its prefilled verdict line")
    # the policy that writes rollouts
    policy: str = option("", "the policy: a hub id or a local folder")
    backend: str = option("hf", "hf (transformers) or vllm")
    prompt_template: str = option("auto", "auto, chat, plain, or a format string with {problem} (as in search)")
    system_prompt: str | None = option(None, "system prompt of the chat template")
    temperature: float = option(0.8, "sampling temperature of rollouts (and of --sample, unless sample_temperature)")
    sample_temperature: float | None = option(
        None, "sampling temperature of the traces --sample draws (default: temperature); rollouts keep temperature"
    )
    top_p: float = option(1.0, "nucleus sampling")
    max_tokens: int = option(512, "tokens per rollout (or sample); a cut rollout counts as not reaching the answer")
    seed: int = option(0, "run seed; rollout j of (trace, step) has seed derive_seed(seed, trace id, step), j")
    batch_traces: int = option(16, "traces per chunk: one generate call per round, one write per chunk")
    device: str | None = option(None, "device of the hf backend (default: cuda if available)")
    dtype: str | None = option(None, "model dtype (bfloat16, float16, float32)")
    policy_cache_tokens: int = option(200_000, "hf: tokens of prefix states the policy keeps (0: re-feed every prefix)")
    generate_batch: int = option(
        64, "hf: sequences the policy decodes in one forward pass (a small policy on a CPU runs faster with more)"
    )
    tensor_parallel_size: int = option(1, "vllm: GPUs per model")
    max_model_len: int | None = option(None, "vllm: context length")
    gpu_memory_utilization: float = option(0.9, "vllm: share of GPU memory")
    kv_cache_gb: float | None = option(None, "vllm: KV cache size in GiB (CPU)")
    # grading
    grade_timeout: float = option(5.0, "seconds per answer comparison")
    code_timeout: float = option(10.0, "seconds per program run (code tasks)")
    code_workers: int | None = option(None, "sandboxed program runs in parallel (default: CPU count)")
    # steps, and the readers' options (as in `prmsearch build`)
    separator: str = option("\n\n", "step separator of math solutions (programs: lines)")
    neutral: str = option("three-class", "prm800k: neutral rating policy (labels are replaced anyway)")
    branches: bool = option(True, "prm800k: every rated alternative at a step becomes its own trace")
    prompt_field: str = option("question", "traces: field of the prompt")
    solution_fields: list[str] = option(["solution"], "traces: fields holding solutions")
    solution_key: str = option("solution", "traces: key of the solution text in a solution object")
    outcome_key: str = option("is_correct", "traces: key of the outcome in a solution object")

    CHOICES: ClassVar[dict[str, tuple[str, ...]]] = {
        "source": tuple(READERS),
        "method": METHODS,
        "labels": LABELS,
        "after_error": AFTER_ERROR,
        "consensus": CONSENSUS,
        "second_opinion": SECOND_OPINIONS,
        "backend": ("hf", "vllm"),
        "neutral": tuple(NEUTRAL_POLICIES),
    }
    # Settings that do not change the labels, so a resumed run may change them.
    NOT_IDENTITY: ClassVar[frozenset[str]] = frozenset(
        {"output", "limit", "batch_traces", "skip_bad", "device", "code_workers", "gpu_memory_utilization"}
        | {"kv_cache_gb", "policy_cache_tokens", "generate_batch"}
    )

    def __post_init__(self) -> None:
        if isinstance(self.solution_fields, str):
            self.solution_fields = [f for f in self.solution_fields.split(",") if f]
        for name, allowed in self.CHOICES.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {', '.join(allowed)}; got {getattr(self, name)!r}")
        for name, low in (
            ("k", 1),
            ("sample", 0),
            ("batch_traces", 1),
            ("max_tokens", 1),
            ("limit", 0),
            ("policy_cache_tokens", 0),
            ("generate_batch", 1),
            ("judge_max_tokens", 1),
        ):
            value = getattr(self, name)
            if name == "limit" and value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
        if self.labels == "soft" and self.method != "mc":
            raise ValueError(
                "labels=soft needs method=mc: first-error search only learns whether a step is recoverable"
            )
        if self.second_opinion == "judge" and (self.consensus == "off" or self.method == "judge"):
            raise ValueError(
                "second_opinion=judge compares rollout labels with the judge: it needs --consensus drop or mark and "
                "--method mc or first-error"
            )
        if self.temperature < 0 or (self.sample_temperature or 0) < 0 or not 0 < self.top_p <= 1:
            raise ValueError(
                "temperature and sample_temperature must be >= 0 and top_p in (0, 1]; "
                f"got {self.temperature}, {self.sample_temperature}, {self.top_p}"
            )

    @classmethod
    def from_yaml(cls, path: str, **overrides: Any) -> LabelConfig:
        return cls(**{**read_recipe(path, cls), **overrides})

    def step_format(self) -> StepFormat:
        return StepFormat(separator=self.separator)

    @property
    def uses_judge(self) -> bool:
        return self.method == "judge" or self.second_opinion == "judge"

    @property
    def uses_policy(self) -> bool:
        """Rollouts or samples need the policy; a judge labelling given traces does not."""
        return self.method != "judge" or self.sample > 0

    def identity(self) -> dict[str, Any]:
        return {k: v for k, v in dataclasses.asdict(self).items() if k not in self.NOT_IDENTITY}


# ---- labelling -----------------------------------------------------------------------------------------------------


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
    _need_judge(cfg, judge)
    jobs = make_jobs(traces, generator, cfg, dropped)
    kept: list[dict[str, Any]] = []
    removed: list[dict[str, Any]] = []
    for k, r in label_in_chunks(jobs, generator, cfg, progress=progress, judge=judge):
        kept += k
        removed += r
    summary = summarize(kept, removed, cfg, traces_in=len(jobs) + sum(dropped.values()), dropped=dropped)
    summary["seconds"] = round(time.time() - started, 2)
    return LabelResult([record_trace(r) for r in kept], [record_trace(r) for r in removed], kept, removed, summary)


def make_jobs(traces: Iterable[Trace], generator: Any, cfg: LabelConfig, dropped: Counter) -> list[LabelJob]:
    """A `LabelJob` per usable trace (see `usable_traces`), each with a unique id."""
    seen: Counter = Counter()
    ids = [(trace, trace_id(trace, seen)) for trace in traces]  # ids count every trace, usable or not
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
        gold = trace.meta.get("gold")
        if trace.meta.get("task") != "code" and (gold is None or not str(gold).strip()):
            if not cfg.skip_bad:
                raise ValueError(
                    f"{trace.source or 'a trace'}: no gold answer to grade rollouts against: give --gold-field (the "
                    "field of the input rows that holds it) or --problems (a problem file whose prompts match), "
                    "or --skip-bad to leave such traces out"
                )
            dropped["no_gold"] += 1
            continue
        out.append(trace)
    return out


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
    bar = _bar(len(jobs), progress)
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


def search_first_errors(jobs: Sequence[LabelJob], generator: Any, cfg: LabelConfig) -> None:
    """Binary search, for every wrong trace, for the first prefix from which no rollout reaches the gold answer.
    Invariant: prefix `lo` can still succeed (-1: the bare problem, assumed solvable), prefix `hi` cannot (at first
    the whole wrong trace). Each round probes the middle of every open interval in one `generate` call."""
    bounds = {job.id: [-1, len(job.steps) - 1] for job in jobs if not job.outcome}
    while True:
        probes = []
        for job in jobs:
            lo, hi = bounds.get(job.id, (0, 0))
            if hi - lo > 1:
                probes.append((job, (lo + hi) // 2))
        if not probes:
            break
        run_rollouts(probes, generator, cfg)
        for job, mid in probes:
            bounds[job.id][0 if job.correct[mid] else 1] = mid  # recoverable: the error is later; else at or before


def _labels(job: LabelJob, cfg: LabelConfig, verdict: int | None = None) -> tuple[list[float | None], int | None]:
    """The step labels of a labelled job and its first error (None when no step is 0). For method=judge, `verdict`
    is the critic's earliest wrong step (-1: none; None: invalid, no labels)."""
    n = len(job.steps)
    if cfg.method == "judge":
        if verdict is None:
            return [None] * n, None
        if verdict < 0:
            return [1.0] * n, None
        return _up_to_first_error(n, verdict, cfg), verdict
    last = 1.0 if job.outcome else 0.0
    if cfg.method == "mc":
        counts = [c or 0 for c in job.correct[:-1]]
        values = [c / cfg.k if cfg.labels == "soft" else float(c > 0) for c in counts]
        first = next((i for i, c in enumerate(counts) if c == 0), None)
        if first is None and not job.outcome:
            first = n - 1
        return [*values, last], first
    if job.outcome:
        return [1.0] * n, None
    # The search ends with `hi` on the smallest probe no rollout recovered from (the last step if none failed).
    first = min((i for i, c in enumerate(job.correct) if c == 0), default=n - 1)
    return _up_to_first_error(n, first, cfg), first


def _up_to_first_error(n: int, first: int, cfg: LabelConfig) -> list[float | None]:
    """1 before the first error, 0 at it, `after_error` after it (first-error search and judge labels)."""
    after = 0.0 if cfg.after_error == "negative" else None
    return [1.0] * first + [0.0] + [after] * (n - first - 1)


def arithmetic_first_error(steps: Sequence[str]) -> int | None:
    """The first step whose stated arithmetic is wrong (`check_arithmetic_steps`), or None."""
    return next((i for i, c in enumerate(check_arithmetic_steps(list(steps))) if c.correct is False), None)


def consensus_status(task: str, rollout_first: int | None, arithmetic_first: int | None) -> str:
    if task == "code":
        return "unchecked"
    if rollout_first == arithmetic_first:
        return "agree"
    return "unconfirmed" if arithmetic_first is None else "disagree"


def judge_status(rollout_first: int | None, judge_first: int | None) -> str:
    """The judge's verdict against the rollout labels' first error (`judge_first`: -1 none, None invalid)."""
    if judge_first is None:
        return "invalid"
    return "agree" if (rollout_first if rollout_first is not None else -1) == judge_first else "disagree"


def _record(job: LabelJob, cfg: LabelConfig, verdict: int | None = None) -> dict[str, Any]:
    labels, first = _labels(job, cfg, verdict)
    steps, correct = list(job.steps), list(job.correct)
    n = len(steps)
    record: dict[str, Any] = {
        "prompt": job.trace.prompt,
        "completions": steps,
        "labels": labels,
        "id": job.id,
        "group_id": job.trace.group_id,
        "source": job.trace.source,
        "task": job.task,
        "gold": job.gold,
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
        arith = arithmetic_first_error(steps) if job.task == "math" else None
        record["consensus"] = {"status": consensus_status(job.task, first, arith), "arithmetic_first_error": arith}
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


# ---- the summary ---------------------------------------------------------------------------------------------------


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


def _bar(total: int, enabled: bool) -> Any:
    if not enabled or not total:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc="label", unit="trace")


# ---- `prmsearch label`: read, label in chunks, append, resume ------------------------------------------------------


def sidecar_path(output: str | Path) -> Path:
    return Path(f"{output}.label.json")


def dropped_path(output: str | Path) -> Path:
    return Path(f"{output}.dropped.jsonl")


def run_label(
    cfg: LabelConfig, *, resume: bool = False, progress: bool = True, generator: Any = None, judge: Any = None
) -> dict[str, Any]:
    """Label the traces `cfg` names (read with a reader, or sampled with `cfg.sample`) into `cfg.output`; returns
    the summary also written to `<output>.label.json`. `generator` (and `judge`, a `CriticJudge`) may be given
    already loaded (notebooks, tests); otherwise they come from `cfg.policy` / `cfg.backend` (and `cfg.judge`)."""
    started = time.time()
    out = _check_paths(cfg)
    dropped: Counter = Counter()
    report = ReadReport()
    problems: list[Problem] = []
    traces: list[Trace] = []
    if cfg.sample:
        from ..bench.datasets import load_problems

        problems = load_problems(cfg.problems, split=cfg.split, limit=cfg.limit)
        no_gold = [p for p in problems if p.meta.get("task") != "code" and p.answer is None]
        if no_gold and not cfg.skip_bad:
            raise ValueError(
                f"{cfg.problems}: problem {no_gold[0].id!r} has no gold answer to grade rollouts against; "
                "add one, or pass --skip-bad to leave such problems out"
            )
        dropped["no_gold"] += len(no_gold) * cfg.sample
        problems = [p for p in problems if p not in no_gold]
    else:
        traces = read_traces(cfg, report)
        traces_in = len(traces)
        usable_traces(traces, cfg, Counter())  # bad input stops the run before anything is written
    done = _prepare_output(out, cfg, resume)
    if generator is None and cfg.uses_policy:
        from ..search.load import load_generator

        if not cfg.policy:
            raise ValueError("label needs --policy (the model that writes rollouts and samples)")

        generator = load_generator(cfg)
    if judge is None and cfg.uses_judge and cfg.judge:
        from ..judges import load_judge

        judge = load_judge(cfg.judge, "critic", device=cfg.device, batch_size=cfg.generate_batch)
        judge.max_tokens = cfg.judge_max_tokens
    _need_judge(cfg, judge)
    if cfg.sample:
        per_call = max(1, cfg.batch_traces // cfg.sample)
        todo = [p for p in problems if any(f"{p.id}/{j}" not in done for j in range(cfg.sample))]
        bar = _bar(len(todo) * cfg.sample, progress)
        rollouts, t0 = 0, time.time()
        for at in range(0, len(todo), per_call):
            sampled = sample_traces(todo[at : at + per_call], generator, cfg, dropped)
            jobs = make_jobs([t for t in sampled if t.meta["id"] not in done], generator, cfg, dropped)
            for kept, removed in label_in_chunks(jobs, generator, cfg, judge=judge):
                _append_chunk(append_rows, out, kept, removed)
            if bar is not None:
                rollouts += sum(job.rollouts for job in jobs)
                bar.update(len(todo[at : at + per_call]) * cfg.sample)
                bar.set_postfix_str(f"{rollouts / max(time.time() - t0, 1e-9):.1f} rollouts/s")
        if bar is not None:
            bar.close()
        traces_in = len(problems) * cfg.sample + dropped["no_gold"]
    else:
        jobs = make_jobs(traces, generator, cfg, dropped)
        todo = [j for j in jobs if j.id not in done]
        for kept, removed in label_in_chunks(todo, generator, cfg, progress=progress, judge=judge):
            _append_chunk(append_rows, out, kept, removed)
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
    _write_json(sidecar_path(out), summary)
    return summary


def _need_judge(cfg: LabelConfig, judge: Any) -> None:
    if cfg.uses_judge and judge is None:
        raise ValueError(
            "method=judge and second_opinion=judge need a judge: --judge MODEL (the judge LM: a folder, hub id or "
            "embedded name), or judge= in Python"
        )


def _append_chunk(append: Any, out: Path, kept: list[dict], removed: list[dict]) -> None:
    """Dropped records first: a kill between the two writes leaves the kept ones to redo, never a trace twice."""
    if removed:
        append(dropped_path(out), removed)
    if kept:
        append(out, kept)


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


def _prepare_output(out: Path, cfg: LabelConfig, resume: bool) -> set[str]:
    """The ids already labelled (kept or dropped); refuses to overwrite a finished file without --resume and to
    resume one written with other settings. Cuts a torn last line, then records the settings."""
    side, removed = sidecar_path(out), dropped_path(out)
    has_labels = out.exists() and out.stat().st_size > 0
    if has_labels and not resume:
        raise ValueError(f"{out} already holds labels: pass --resume to continue it, or choose a new --output")
    if resume and has_labels:
        if not side.exists():
            raise ValueError(f"{out} has no {side.name}, so its settings are unknown: label into a new --output")
        before = json.loads(side.read_text(encoding="utf-8")).get("config", {})
        now = cfg.identity()
        changed = sorted(k for k in now if k in before and before[k] != now[k])
        if changed:
            diff = ", ".join(f"{k}: {before[k]!r} -> {now[k]!r}" for k in changed)
            raise ValueError(f"{out} was labelled with other settings ({diff}); resume it with the same ones")
    if not resume or not has_labels:
        for path in (out, removed):
            if path.exists():
                path.unlink()
    out.parent.mkdir(parents=True, exist_ok=True)
    done = {r["id"] for r in read_rows(out, repair=True)} | {r["id"] for r in read_rows(removed, repair=True)}
    _write_json(side, {"status": "running", "config": dataclasses.asdict(cfg)})
    return done


def _write_json(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(tmp, path)


# ---- reading traces and their gold answers -------------------------------------------------------------------------


def read_traces(cfg: LabelConfig, report: ReadReport) -> list[Trace]:
    """The traces of `cfg.input` through `cfg.source`'s reader, each with its gold answer in `meta["gold"]`: from
    the input row's `cfg.gold_field`, or from the `cfg.problems` problem whose prompt is the trace's."""
    from .build import BuildConfig, read_source

    build = BuildConfig(
        target="stepwise",
        source=cfg.source,
        input=cfg.input,
        separator=cfg.separator,
        skip_bad=cfg.skip_bad,
        split=cfg.split or "train",
        neutral=cfg.neutral,
        branches=cfg.branches,
        prompt_field=cfg.prompt_field,
        solution_fields=list(cfg.solution_fields),
        solution_key=cfg.solution_key,
        outcome_key=cfg.outcome_key,
        gold_field=None,  # the gold answers are read below; outcomes are graded in batches while labelling
    )
    traces = []
    for trace in read_source(build, report):
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
    from ..bench.datasets import load_problems

    golds = {}
    for p in load_problems(cfg.problems):
        if p.meta.get("task") == "code":
            raise ValueError(
                f"{cfg.problems}: problem {p.id!r} is a code task; label programs with --sample (readers split "
                "solutions into stripped steps, which loses the indentation a program needs)"
            )
        if p.answer is not None:
            golds[p.prompt.strip()] = p.answer
    return golds
