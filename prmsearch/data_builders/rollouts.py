"""Rollouts: the policy completes a solution from one of its step prefixes, and a verifier says whether the
completion reached the gold answer (math, `verifiers.math`) or passes the problem's unit tests (code,
`verifiers.code`). This is the measurement behind Monte Carlo process labels (Math-Shepherd) and first-error
search (OmegaPRM); `autolabel` turns the counts into labels.

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
from typing import TYPE_CHECKING, Any

from ..records import Problem, Trace
from ..verifiers.math import compare_many, extract_many, gold_answer

if TYPE_CHECKING:
    from .autolabel import LabelConfig

CODE_SEPARATOR = "\n"  # a program's steps are its lines


@dataclass
class LabelJob:
    """One trace being labelled: its steps, how to grade it, and what its rollouts found so far.

    `correct[i]` is how many of the K rollouts from prefix i (steps[: i + 1]) reached the gold answer, None while
    none were run from there. `outcome` is whether the trace's own final answer is right.
    """

    id: str
    trace: Trace
    steps: list[str]
    task: str  # "math" | "code"
    policy_prompt: str
    gold: str | None = None  # math: the gold answer, already reduced by `gold_answer`
    test: str | None = None  # code: the unit tests and the function they check
    entry_point: str | None = None
    outcome: bool | None = None
    correct: list[int | None] = field(default_factory=list)
    rollouts: int = 0
    tokens: int = 0
    cut: int = 0  # rollouts ended by max_tokens: a cut-off solution is never taken for a finished one

    def __post_init__(self) -> None:
        if not self.correct:
            self.correct = [None] * len(self.steps)

    def prefix(self, step: int, separator: str) -> str:
        """What the policy continues for a rollout from step `step`: its prompt and the steps up to `step`."""
        sep = CODE_SEPARATOR if self.task == "code" else separator
        return self.policy_prompt + "".join(s + sep for s in self.steps[: step + 1])

    def solution(self, upto: int, separator: str, completion: str | None = None) -> str:
        """The text to grade: the steps up to `upto` (exclusive) and a completion; for code, the whole program."""
        if self.task == "code":
            body = "".join(s + CODE_SEPARATOR for s in self.steps[:upto])
            return self.trace.prompt + body + (completion or "")
        steps = self.steps[:upto] + ([completion.strip()] if completion else [])
        return separator.join(s for s in steps if s.strip())


def make_job(trace: Trace, job_id: str, tokenizer: Any, cfg: LabelConfig) -> LabelJob:
    """A job for `trace`, whose meta says how to grade it: `gold` (a bare answer or a reference solution) for
    math, or `task: "code"` with `test` and `entry_point`. Raises ValueError when it says neither."""
    from ..search.engine import policy_prompt

    meta = trace.meta
    code = meta.get("task") == "code"
    if code:
        if not (isinstance(meta.get("test"), str) and isinstance(meta.get("entry_point"), str)):
            raise ValueError(f"{trace.source or job_id}: a code trace needs meta 'test' and 'entry_point'")
        steps = [s.rstrip() for s in trace.steps if s.strip()]
    else:
        if meta.get("gold") is None or not str(meta["gold"]).strip():
            raise ValueError(f"{trace.source or job_id}: no gold answer to grade rollouts against")
        steps = [s.strip() for s in trace.steps if s.strip()]
    problem = Problem(job_id, trace.prompt, meta={"task": "code" if code else "math"})
    prompt = policy_prompt(problem, tokenizer, cfg.prompt_template, cfg.system_prompt)
    return LabelJob(
        id=job_id,
        trace=trace,
        steps=steps,
        task="code" if code else "math",
        policy_prompt=prompt,
        gold=None if code else gold_answer(str(meta["gold"])),
        test=meta.get("test") if code else None,
        entry_point=meta.get("entry_point") if code else None,
    )


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
    """Whether each text is right: math answers through `compare_many` (one batch, cached), programs through
    the code sandbox (`run_many`; each distinct program runs once)."""
    verdicts = [False] * len(items)
    math = [i for i, (job, _) in enumerate(items) if job.task == "math"]
    if math:
        answers = extract_many([items[i][1] for i in math], timeout=cfg.grade_timeout)
        golds = [items[i][0].gold or "" for i in math]
        for i, (ok, _why) in zip(math, compare_many(answers, golds, timeout=cfg.grade_timeout), strict=True):
            verdicts[i] = ok
    code = [i for i, (job, _) in enumerate(items) if job.task == "code"]
    if code:
        from ..verifiers.code import run_many

        programs = {(items[i][1], items[i][0].test, items[i][0].entry_point): None for i in code}
        jobs = [{"program": p, "tests": t, "entry_point": e, "timeout": cfg.code_timeout} for p, t, e in programs]
        results = run_many(jobs, workers=cfg.code_workers, progress=False)
        passed = {key: r.passed for key, r in zip(programs, results, strict=True)}
        for i in code:
            verdicts[i] = passed[(items[i][1], items[i][0].test, items[i][0].entry_point)]
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
        code = problem.meta.get("task") == "code"
        for j, c in enumerate(outs[: cfg.sample]):
            if c.finish_reason == "length":
                dropped["cut_samples"] += 1
                continue
            if code:
                steps = [line.rstrip() for line in c.text.split(CODE_SEPARATOR) if line.strip()]
                meta = {"task": "code", "test": problem.meta["test"], "entry_point": problem.meta["entry_point"]}
            else:
                steps = fmt.split(c.text)
                meta = {"task": "math", "gold": problem.answer}
            if not steps:
                dropped["no_steps"] += 1
                continue
            meta.update({"id": f"{problem.id}/{j}", "sample_tokens": c.num_tokens})
            traces.append(Trace(problem.prompt, steps, None, None, problem.id, f"{problem.id}/{j}", meta))
    return traces
