"""Math problems: a gold answer, solutions whose final answer is extracted and compared by `verifiers.math`
(math-verify under hard time limits), and MATH-500 / GSM8K by name.

Grouping answers for a vote is by mathematical equivalence, not string equality ("0.5", "\\frac{1}{2}" and "1/2" are
one vote). The comparison is gold-directed, so an answer is never compared with "the other answers" in both
directions: each new distinct answer is compared, as the prediction, with the representative (the first member) of
each existing group, as the gold, and joins the first group that accepts it.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..records import Grade, Problem
from ..steps import StepFormat
from ..verifiers.math import compare_many, extract_many, gold_answer
from .base import Checks, Loader
from .problems import load_hub

SYSTEM_PROMPT = (
    "Solve the following math problem efficiently and clearly. Think step by step, separating steps with a blank "
    "line, and end with: Therefore, the final answer is: $\\boxed{answer}$."
)


class MathTask:
    name = "math"
    needs = "gold answer"
    system_prompt = SYSTEM_PROMPT
    indented = False

    def states_arithmetic(self, problem: Problem) -> bool:
        return True

    def plain_prompt(self, problem: Problem) -> str:
        return problem.prompt.rstrip() + "\n\n"

    def separator(self, separator: str) -> str:
        return separator

    def split(self, text: str, fmt: StepFormat) -> list[str]:
        return fmt.split(text)

    def clean_steps(self, steps: Sequence[str]) -> list[str]:
        return [s.strip() for s in steps if s.strip()]

    def step_text(self, text: str) -> str:
        return text.strip()

    def solution(self, problem: Problem, steps: Sequence[str], separator: str, completion: str | None = None) -> str:
        steps = [*steps, completion.strip()] if completion else list(steps)
        return separator.join(s for s in steps if s.strip())

    def gradable(self, problem: Problem) -> bool:
        return problem.answer is not None and bool(str(problem.answer).strip())

    def answers(self, solutions: Sequence[str], *, timeout: float) -> list[str | None]:
        return extract_many(solutions, timeout=timeout)

    def group(self, answer_lists: Sequence[Sequence[str | None]], *, timeout: float) -> list[list[int | None]]:
        """Answers identical after `strip()` share a group without a comparison; each other distinct answer joins
        the first group whose representative accepts it (see `group_distinct`)."""
        keys = [[(a.strip() or None) if a is not None else None for a in answers] for answers in answer_lists]
        distinct = [list(dict.fromkeys(k for k in ks if k is not None)) for ks in keys]  # first-appearance order
        group_of = group_distinct(distinct, timeout)
        return [[None if k is None else groups[k] for k in ks] for ks, groups in zip(keys, group_of, strict=True)]

    def grade(self, problems: Sequence[Problem], solutions: Sequence[str | None], checks: Checks) -> list[Grade]:
        """The extracted final answer against the gold answer (reduced by `gold_answer`); ungraded (None) where the
        problem has no gold answer; no solution is wrong only where there is something to be right about."""
        out: list[Grade | None] = [
            None if s is not None else Grade(None, False if self.gradable(p) else None, "no solution")
            for p, s in zip(problems, solutions, strict=True)
        ]
        found = [i for i, s in enumerate(solutions) if s is not None]
        extracted = self.answers([solutions[i] for i in found], timeout=checks.timeout)  # type: ignore[misc]
        compare = []
        for i, answer in zip(found, extracted, strict=True):
            if self.gradable(problems[i]):
                compare.append((i, answer))
            else:
                out[i] = Grade(answer, None, "no gold answer")
        golds = [gold_answer(str(problems[i].answer)) for i, _ in compare]
        verdicts = compare_many([a for _, a in compare], golds, timeout=checks.timeout, workers=checks.workers)
        for (i, answer), (ok, why) in zip(compare, verdicts, strict=True):
            out[i] = Grade(answer, ok, why)
        return out  # type: ignore[return-value]


def group_distinct(distinct: list[list[str]], timeout: float) -> list[dict[str, int]]:
    """{answer: group} for each list of distinct answers, the comparisons of all lists batched together.

    Works in rounds: in each round every list with answers still unplaced makes its first unplaced answer the
    representative of a new group, and all its other unplaced answers are compared with that representative in one
    `compare_many` call shared by all lists. This is exactly the sequential rule (an answer joins the first group
    whose representative accepts it), with the fewest comparisons, in as many rounds as the largest number of
    groups in any one list. A comparison that times out counts as "different".
    """
    group_of: list[dict[str, int]] = [{} for _ in distinct]
    n_groups = [0] * len(distinct)
    pending = [list(ds) for ds in distinct]
    while any(pending):
        preds, reps, where = [], [], []
        for li, todo in enumerate(pending):
            if not todo:
                continue
            rep, rest = todo[0], todo[1:]
            group_of[li][rep] = n_groups[li]
            n_groups[li] += 1
            for answer in rest:
                preds.append(answer)
                reps.append(rep)
                where.append(li)
            pending[li] = rest
        verdicts = compare_many(preds, reps, timeout=timeout) if preds else []
        joined: list[set[str]] = [set() for _ in distinct]
        for answer, rep, li, (same, _why) in zip(preds, reps, where, verdicts, strict=True):
            if same:
                group_of[li][answer] = group_of[li][rep]
                joined[li].add(answer)
        pending = [[a for a in todo if a not in done] for todo, done in zip(pending, joined, strict=True)]
    return group_of


def hub(repo: str, config: str | None, default_split: str) -> Loader:
    """A dataset on the hub, read through `datasets.load_dataset` and the common row conversion."""

    def load(split: str | None, limit: int | None) -> list[Problem]:
        return load_hub(repo, config, split or default_split, limit)

    return load


HUB = {"math500": ("HuggingFaceH4/MATH-500", None, "test"), "gsm8k": ("openai/gsm8k", "main", "test")}
DATASETS: dict[str, Loader] = {name: hub(*spec) for name, spec in HUB.items()}
ALIASES = {repo.lower(): name for name, (repo, _, _) in HUB.items()}  # a hub id works as a name too
