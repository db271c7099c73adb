"""The `Task` contract: everything that differs between kinds of problems, so search, labelling, rewards and
reranking never ask "is this math or code?" themselves.

A kind of problem decides how the policy is prompted, how a solution's text splits into steps and joins back, what
a solution answers (a math solution's final answer, a program itself), which answers count as the same (math
equivalence, program identity), and whether a solution is right (gold answer, unit tests). Every method works on a
batch, because grading is the slow part and its workers (sympy processes, sandboxes) serve a batch at once.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from ..records import Grade, Problem
from ..steps import StepFormat


@dataclass(frozen=True)
class Checks:
    """How long and how wide one batch of grading may run; each task reads the limits that apply to it."""

    timeout: float = 5.0  # seconds per answer comparison (math)
    run_timeout: float = 10.0  # seconds per program run in the sandbox (code)
    workers: int | None = None  # checks run in parallel (default: the CPU count)


class Task(Protocol):
    """A kind of problem. `name` is what a problem's `meta["task"]` says; `system_prompt` the chat template's
    default system message; `indented` whether a step's leading whitespace is syntax (a program's lines), which
    the readers' stripped steps cannot hold; `needs` what grading needs, as error messages name it."""

    name: str
    needs: str
    system_prompt: str | None
    indented: bool

    def states_arithmetic(self, problem: Problem) -> bool:
        """Whether this problem's solutions state their arithmetic ("3 * 4 = 12") so `check_arithmetic_steps` can
        give a second opinion on their steps (label consensus)."""
        ...

    def plain_prompt(self, problem: Problem) -> str:
        """The text a plain (no chat template) policy continues."""
        ...

    def separator(self, separator: str) -> str:
        """What ends a step when a policy continues a prefix of steps (rollouts), given the step format's."""
        ...

    def split(self, text: str, fmt: StepFormat) -> list[str]:
        """A whole generated solution's steps, blank ones dropped."""
        ...

    def clean_steps(self, steps: Sequence[str]) -> list[str]:
        """Steps read from a trace as a task keeps them, blank ones dropped."""
        ...

    def step_text(self, text: str) -> str:
        """One generated step as a search tree keeps it."""
        ...

    def solution(self, problem: Problem, steps: Sequence[str], separator: str, completion: str | None = None) -> str:
        """The text a solution stands for, from its steps and an optional completion of them: what is graded."""
        ...

    def gradable(self, problem: Problem) -> bool:
        """Whether the problem carries what grading needs (a gold answer, unit tests)."""
        ...

    def answers(self, solutions: Sequence[str], *, timeout: float) -> list[str | None]:
        """What each solution answers (None: nothing), the unit of voting and grouping."""
        ...

    def group(self, answer_lists: Sequence[Sequence[str | None]], *, timeout: float) -> list[list[int | None]]:
        """A group index per answer of each list, groups numbered in order of first appearance; None for no answer."""
        ...

    def grade(self, problems: Sequence[Problem], solutions: Sequence[str | None], checks: Checks) -> list[Grade]:
        """Whether each solution (None: none was found) solves its problem."""
        ...


# A named dataset: (split, limit) -> its problems, in dataset order (None: the default split, every problem).
Loader = Callable[[str | None, int | None], list[Problem]]
