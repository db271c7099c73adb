"""Rollouts: the policy completes a solution from one of its step prefixes, and a verifier says whether the
completion reached the gold answer (math, `verifiers.math`) or passes the problem's unit tests (code,
`verifiers.code`). This is the measurement behind Monte Carlo process labels (Math-Shepherd) and first-error
search (OmegaPRM); `methods` turns the counts into labels.

Seeds: the K rollouts from prefix i of trace t are one prompt of a `generate` call with the per-prompt seed
`derive_seed(run seed, t, i)`, sample j drawn from (that seed, j) alone (the `Generator` contract). So rollout j of
(t, i) is the same whichever method asks for it, whichever other prefixes share the call, and in a resumed run.

Steps of a math solution are `StepFormat` steps; steps of a program are its lines (indentation kept), and a
program is the problem's prompt (the signature and docstring, as in HumanEval) followed by its lines.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ..records import Problem, Trace
from ..tasks import DEFAULT_TASK, TASKS, Checks, Task, by_task, task_of
from ..verifiers.math import gold_answer
from .config import LabelConfig


@dataclass
class LabelJob:
    """One trace being labelled: its steps, the problem it grades against, and what its rollouts found so far.

    `correct[i]` is how many of the K rollouts from prefix i (steps[: i + 1]) reached the gold answer, None while
    none were run from there. `outcome` is whether the trace's own final answer is right.
    """

    id: str
    trace: Trace
    steps: list[str]
    problem: Problem  # the gold answer (reduced by `gold_answer`) or the unit tests; meta["task"] names the task
    policy_prompt: str
    outcome: bool | None = None
    correct: list[int | None] = field(default_factory=list)
    rollouts: int = 0
    tokens: int = 0
    cut: int = 0  # rollouts ended by max_tokens: a cut-off solution is never taken for a finished one

    def __post_init__(self) -> None:
        if not self.correct:
            self.correct = [None] * len(self.steps)

    @property
    def task(self) -> Task:
        return task_of(self.problem)

    def prefix(self, step: int, separator: str) -> str:
        """What the policy continues for a rollout from step `step`: its prompt and the steps up to `step`, each
        ended by the task's separator (a math step's `separator`, a program's line end)."""
        sep = self.task.separator(separator)
        return self.policy_prompt + "".join(s + sep for s in self.steps[: step + 1])

    def solution(self, upto: int, separator: str, completion: str | None = None) -> str:
        """The text to grade: the steps up to `upto` (exclusive) and a completion (`Task.solution`)."""
        sep = self.task.separator(separator)
        return self.task.solution(self.problem, self.steps[:upto], sep, completion)


def problem_of(trace: Trace, job_id: str) -> Problem:
    """The problem a trace's meta describes: its `gold` (a bare answer or a reference solution) and the rest of its
    meta (a code trace's `test` and `entry_point`), under `meta["task"]` when that names one of our tasks (a reader's
    own "task" field, such as Math-Shepherd's "GSM8K", does not: such a trace is math). The task decides whether
    that is enough to grade."""
    meta = {k: v for k, v in trace.meta.items() if k != "gold"}
    if meta.get("task") not in TASKS:
        meta["task"] = DEFAULT_TASK
    gold = trace.meta.get("gold")
    answer = gold_answer(str(gold)) if gold is not None and str(gold).strip() else None
    return Problem(job_id, trace.prompt, answer, meta)


def make_job(trace: Trace, job_id: str, tokenizer: Any, cfg: LabelConfig) -> LabelJob:
    """A job for `trace`, whose meta says how to grade it (`problem_of`). Raises ValueError when it cannot be."""
    from ..search.engine import policy_prompt

    problem = problem_of(trace, job_id)
    task = task_of(problem)
    if not task.gradable(problem):
        raise ValueError(f"{trace.source or job_id}: nothing to grade rollouts against ({task.name} task)")
    prompt = policy_prompt(problem, tokenizer, cfg.prompt_template, cfg.system_prompt)
    return LabelJob(id=job_id, trace=trace, steps=task.clean_steps(trace.steps), problem=problem, policy_prompt=prompt)


def grade_outcomes(jobs: Sequence[LabelJob], cfg: LabelConfig) -> None:
    """Set each job's `outcome` from its own final answer (math) or its whole program (code), in one batch."""
    verdicts = grade([(job, job.solution(len(job.steps), cfg.separator)) for job in jobs], cfg)
    for job, ok in zip(jobs, verdicts, strict=True):
        job.outcome = ok


def run_rollouts(requests: Sequence[tuple[LabelJob, int]], generator: Any, cfg: LabelConfig) -> None:
    """K rollouts from every (job, step) prefix, all in one `generate` call, graded in one batch; fills
    `job.correct[step]` and the job's rollout, token and cut counts."""
    from ..search.generators import derive_seed

    if not requests:
        return
    completions = generator.generate(
        [job.prefix(step, cfg.separator) for job, step in requests],
        n=cfg.k,
        stop=None,
        max_tokens=cfg.max_tokens,
        temperature=cfg.temperature,
        top_p=cfg.top_p,
        seed=[derive_seed(cfg.seed, job.id, step) for job, step in requests],
    )
    to_grade: list[tuple[LabelJob, str]] = []
    owners: list[tuple[LabelJob, int]] = []
    for (job, step), outs in zip(requests, completions, strict=True):
        job.correct[step] = 0
        for c in outs[: cfg.k]:
            job.rollouts += 1
            job.tokens += c.num_tokens
            if c.finish_reason == "length":
                job.cut += 1
                continue
            to_grade.append((job, job.solution(step + 1, cfg.separator, c.text)))
            owners.append((job, step))
    for (job, step), ok in zip(owners, grade(to_grade, cfg), strict=True):
        job.correct[step] += ok  # type: ignore[operator]


def grade(items: Sequence[tuple[LabelJob, str]], cfg: LabelConfig) -> list[bool]:
    """Whether each text solves its job's problem (`Task.grade`, one batch per task)."""
    checks = Checks(timeout=cfg.grade_timeout, run_timeout=cfg.code_timeout, workers=cfg.code_workers)
    verdicts = [False] * len(items)
    for task, which in by_task([job.problem for job, _ in items]):
        grades = task.grade([items[i][0].problem for i in which], [items[i][1] for i in which], checks)
        for i, g in zip(which, grades, strict=True):
            verdicts[i] = bool(g.correct)
    return verdicts


def sample_traces(
    problems: Sequence[Problem], generator: Any, cfg: LabelConfig, dropped: Counter | None = None
) -> list[Trace]:
    """`cfg.sample` solutions per problem from the policy, in one `generate` call, as traces ready to label:
    math solutions split into steps with the StepFormat separator, programs into lines; the gold answer (or the
    unit tests) kept in meta. Sample j of problem p has the id "p/j" and comes from seed (run seed, "sample", p),
    index j. A solution cut by max_tokens, or with no steps, is dropped and counted in `dropped`."""
    from ..search.engine import policy_prompt
    from ..search.generators import derive_seed

    dropped = dropped if dropped is not None else Counter()
    if not problems:
        return []
    prompts = [policy_prompt(p, generator.tokenizer, cfg.prompt_template, cfg.system_prompt) for p in problems]
    completions = generator.generate(
        prompts,
        n=cfg.sample,
        stop=None,
        max_tokens=cfg.max_tokens,
        temperature=cfg.temperature if cfg.sample_temperature is None else cfg.sample_temperature,
        top_p=cfg.top_p,
        seed=[derive_seed(cfg.seed, "sample", p.id) for p in problems],
    )
    fmt = cfg.step_format()
    traces = []
    for problem, outs in zip(problems, completions, strict=True):
        task = task_of(problem)
        for j, c in enumerate(outs[: cfg.sample]):
            if c.finish_reason == "length":
                dropped["cut_samples"] += 1
                continue
            steps = task.split(c.text, fmt)
            meta = trace_meta(problem)
            if not steps:
                dropped["no_steps"] += 1
                continue
            meta.update({"id": f"{problem.id}/{j}", "sample_tokens": c.num_tokens})
            traces.append(Trace(problem.prompt, steps, None, None, problem.id, f"{problem.id}/{j}", meta))
    return traces


def trace_meta(problem: Problem) -> dict[str, Any]:
    """What a trace sampled for `problem` carries to be graded later (`problem_of` reads it back): the problem's
    meta (its task, a code problem's unit tests) and its gold answer."""
    return {**problem.meta, "task": task_of(problem).name, "gold": problem.answer}
