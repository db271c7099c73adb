"""reasoning-gym's procedural tasks (the `reasoning-gym` package: `pip install 'prmsearch[gym]'`): problems drawn by
name, size and seed, the policy prompted with reasoning-gym's own system prompt (the answer in <answer> tags), the
answer read from the last <answer> tag and graded by the task's own `score_answer`. A solve is a score of 1.0: the
partial credit some tasks give (0.01 for an answer in the wrong form) is not one.

`--dataset reasoning-gym:NAME` draws `reasoning_gym.create_dataset(NAME, size=..., seed=..., **config)`; the size,
seed and the dataset's config ride in the name as a query, `reasoning-gym:gsm_symbolic?size=50&seed=3` (values read
as YAML). `limit` caps the size; the seed defaults to 0, the size to 100.

A problem keeps its entry's `metadata` in `meta["metadata"]` (the task's name is `metadata["source_dataset"]`), the
entry's question as its prompt and its answer as the gold answer: what `score_answer` is given back to grade. A row
of a dataset built from reasoning-gym (its `question`, `answer` and `metadata` columns) grades the same way.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from urllib.parse import parse_qsl

import yaml

from ..records import Grade, Problem
from .base import Checks
from .math import MathTask
from .problems import DatasetUnavailableError

NAME = "reasoning-gym"
DEFAULT_SIZE = 100
# datasets whose solutions are worked arithmetic, one "a op b = c" a step, as GSM8K's are
ARITHMETIC_DATASETS = frozenset({"gsm_symbolic"})


def _gym() -> Any:
    try:
        import reasoning_gym
    except ImportError:
        raise DatasetUnavailableError(
            "reasoning-gym tasks need the reasoning-gym package: pip install 'prmsearch[gym]'"
        ) from None
    return reasoning_gym


def _source(problem: Problem) -> str | None:
    metadata = problem.meta.get("metadata")
    return metadata.get("source_dataset") if isinstance(metadata, dict) else None


class GymTask(MathTask):
    """Laid out, split into steps and joined back as a math problem (`MathTask`'s methods); what differs is the
    answer (an <answer> tag), the grouping (the same text) and the grading (the task's `score_answer`)."""

    name = NAME
    needs = "reasoning-gym entry (its metadata)"

    @property
    def system_prompt(self) -> str:  # type: ignore[override]
        return _gym().utils.SYSTEM_PROMPTS["default"]

    def states_arithmetic(self, problem: Problem) -> bool:
        """Only the word problems' worked solutions state their arithmetic ("160-48=112"); a puzzle's do not."""
        return _source(problem) in ARITHMETIC_DATASETS

    def gradable(self, problem: Problem) -> bool:
        return _source(problem) is not None

    def answers(self, solutions: Sequence[str], *, timeout: float) -> list[str | None]:
        """The last <answer> tag's content, stripped (None: no tag, or an empty one)."""
        extract = _gym().utils.extract_answer
        out = []
        for s in solutions:
            answer = extract(s) if s else None
            out.append((answer.strip() or None) if answer is not None else None)
        return out

    def group(self, answer_lists: Sequence[Sequence[str | None]], *, timeout: float) -> list[list[int | None]]:
        """Answers are the same when their text is (each task's `score_answer` judges one answer against the gold
        one; there is no equivalence between two answers to ask it)."""
        out = []
        for answers in answer_lists:
            ids: dict[str, int] = {}
            out.append([None if a is None else ids.setdefault(a, len(ids)) for a in answers])
        return out

    def grade(self, problems: Sequence[Problem], solutions: Sequence[str | None], checks: Checks) -> list[Grade]:
        gym = _gym()
        answers = self.answers([s or "" for s in solutions], timeout=checks.timeout)
        out = []
        for problem, solution, answer in zip(problems, solutions, answers, strict=True):
            if not self.gradable(problem):
                out.append(Grade(answer, None, "no reasoning-gym metadata"))
            elif solution is None:
                out.append(Grade(None, False, "no solution"))
            else:
                entry = {"question": problem.prompt, "answer": problem.answer, "metadata": problem.meta["metadata"]}
                score = float(gym.get_score_answer_fn(entry["metadata"]["source_dataset"])(answer, entry))
                out.append(Grade(answer, score >= 1.0, f"score_answer {score:g}"))
        return out


def load(spec: str, split: str | None, limit: int | None) -> list[Problem]:
    """The problems `spec` names: NAME or NAME?size=..&seed=..&<config key>=.. (split is not used: a procedural
    dataset is drawn by its seed)."""
    name, _, query = spec.partition("?")
    options = {k: yaml.safe_load(v) for k, v in parse_qsl(query, keep_blank_values=True)}
    size, seed = int(options.pop("size", DEFAULT_SIZE)), int(options.pop("seed", 0))
    size = min(size, limit) if limit is not None else size
    gym = _gym()
    try:
        data = gym.create_dataset(name, size=size, seed=seed, **options)
    except (KeyError, ValueError, TypeError) as e:
        raise DatasetUnavailableError(f"reasoning-gym:{spec}: {' '.join(str(e).split())}") from None
    problems = []
    for i in range(size):
        entry = data[i]
        meta = {"task": NAME, "metadata": entry["metadata"]}
        problems.append(Problem(f"{name}-{seed}-{i}", entry["question"], str(entry["answer"]), meta))
    return problems
