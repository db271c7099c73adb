"""The labelling algorithms, apart from the command that runs them: Monte Carlo labels from rollout counts,
first-error search (a binary search over a wrong trace's prefixes), labels from a critic's verdict, and the second
opinions that consensus compares them with (the arithmetic check, the judge). See `label/__init__.py` for what each
method computes."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..verifiers.arithmetic import check_arithmetic_steps
from .config import LabelConfig
from .rollouts import LabelJob, run_rollouts


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


def step_labels(job: LabelJob, cfg: LabelConfig, verdict: int | None = None) -> tuple[list[float | None], int | None]:
    """The step labels of a labelled job and its first error (None when no step is 0). For method=judge, `verdict`
    is the critic's earliest wrong step (-1: none; None: invalid, no labels)."""
    n = len(job.steps)
    if cfg.method == "judge":
        if verdict is None:
            return [None] * n, None
        if verdict < 0:
            return [1.0] * n, None
        return up_to_first_error(n, verdict, cfg), verdict
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
    return up_to_first_error(n, first, cfg), first


def up_to_first_error(n: int, first: int, cfg: LabelConfig) -> list[float | None]:
    """1 before the first error, 0 at it, `after_error` after it (first-error search and judge labels)."""
    after = 0.0 if cfg.after_error == "negative" else None
    return [1.0] * first + [0.0] + [after] * (n - first - 1)


def arithmetic_first_error(steps: Sequence[str]) -> int | None:
    """The first step whose stated arithmetic is wrong (`check_arithmetic_steps`), or None."""
    return next((i for i, c in enumerate(check_arithmetic_steps(list(steps))) if c.correct is False), None)


def consensus_status(checked: bool, rollout_first: int | None, arithmetic_first: int | None) -> str:
    """The arithmetic check's verdict against the rollout labels' first error; "unchecked" where the task's steps
    state no arithmetic to check (`Task.states_arithmetic`)."""
    if not checked:
        return "unchecked"
    if rollout_first == arithmetic_first:
        return "agree"
    return "unconfirmed" if arithmetic_first is None else "disagree"


def judge_status(rollout_first: int | None, judge_first: int | None) -> str:
    """The judge's verdict against the rollout labels' first error (`judge_first`: -1 none, None invalid)."""
    if judge_first is None:
        return "invalid"
    return "agree" if (rollout_first if rollout_first is not None else -1) == judge_first else "disagree"
