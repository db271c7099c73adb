"""Plain records that flow one way between stages (DESIGN.md, "Data flow").

Readers turn public formats into `Trace`s; label builders turn `Trace`s into tokenized examples. Nothing here
knows about tokenizers or models, so every later stage can rely on the same few fields.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# A step label is 1.0/0.0 (hard), a float in [0, 1] (soft), -1/0/+1 (3-class, PRM800K ratings), or None when the
# source says nothing about that step (its position is then ignored by the loss, -100).
StepLabel = float | None


@dataclass
class Trace:
    """One solution to one problem, already split into steps.

    `step_labels` is None when the source has no per-step labels (raw traces with only an outcome); otherwise it
    has exactly one entry per step. `outcome` is True/False when the final answer is known to be right/wrong.
    `group_id` ties together the solutions of one problem (best-of-N groups, BT pairs).
    """

    prompt: str
    steps: list[str]
    step_labels: list[StepLabel] | None = None
    outcome: bool | None = None
    group_id: str = ""
    source: str = ""
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.step_labels is not None and len(self.step_labels) != len(self.steps):
            raise ValueError(f"{len(self.step_labels)} step labels for {len(self.steps)} steps")


@dataclass(frozen=True)
class Grade:
    """How one solution fared, whatever the task: `correct` None when there is nothing to grade against (a math
    problem with no gold answer); `answer` what was graded (a math solution's extracted answer, None when nothing
    was extracted or for a program, which is graded whole); `reason` one word or line saying why ("equivalent",
    "not equivalent", "no answer", "timeout", "passed", "failed", "no solution", "error: ...")."""

    answer: str | None
    correct: bool | None
    reason: str


@dataclass
class Problem:
    """A question to solve, with its gold answer when one is known (benchmarks, search runs)."""

    id: str
    prompt: str
    answer: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)
