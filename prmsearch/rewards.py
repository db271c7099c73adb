"""Reward functions for RL: any prmsearch scorer or verifier with TRL's reward-function signature.

TRL's `GRPOTrainer` (and its other online trainers) call `reward_func(prompts=..., completions=..., **columns)`,
where `columns` are the dataset's other columns, one value per completion, and want one float per completion.
`reward_function(model)` turns into such a callable:

- a reward model saved by prmsearch (a folder, a hub id or `embedded:prm`), a loaded `RewardModel`, or any `Scorer`
  (a public-PRM adapter, a judge): BT gives its centred reward, an ORM its aggregated token probability, a PRM the
  `agg` of its step probabilities (the completion split into steps by the model's own `StepFormat`), scored in
  batches through the same scorer search uses;
- "math": 1.0 when the completion's final answer equals the row's gold answer (`verifiers.math`, math-verify), else
  0.0;
- "code": 1.0 when the program passes the row's unit tests in the sandbox (`verifiers.code`), else 0.0;
- any other task name (`prmsearch.tasks.TASKS`): its own grader, on the row's gold answer column.
The graders are the tasks' own (`Task.grade`), the ones search and labelling use.

What this adds over passing a model to TRL: TRL feeds an `nn.Module` reward model the raw concatenated text and reads
one logit, which is wrong for a PRM (its score lives at every step end) and for an ORM (an aggregate over tokens).
Scores can be published against a fixed reference set rather than as raw logits (`reference=`): each reward is then
(score - mean) / std of the reference completions' scores, computed once, so rewards stay comparable across runs.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Any

from .errors import InputError
from .records import Problem
from .scoring import Scorer
from .tasks import TASKS, Checks, get_task

_FENCE = re.compile(r"```(?:python|py)?[^\n]*\n(.*?)```", re.S)


def text_of(value: Any) -> str:
    """A prompt or completion as text: a string as it is; a conversation (TRL's conversational format, a list of
    {"role", "content"} messages) as the content of its last user message for a prompt, or of its assistant
    messages for a completion."""
    if isinstance(value, str):
        return value
    if isinstance(value, list) and all(isinstance(m, dict) and "content" in m for m in value):
        users = [m["content"] for m in value if m.get("role") == "user"]
        if users and value[-1].get("role") != "assistant":
            return str(users[-1])
        said = [str(m["content"]) for m in value if m.get("role") == "assistant"]
        return "".join(said) if said else str(value[-1]["content"]) if value else ""
    raise InputError(f"a prompt or completion must be a string or a list of chat messages, got {type(value).__name__}")


class RewardFunction:
    """A callable with TRL's reward-function signature (`reward_function` builds one). `__name__` is what TRL logs
    the rewards under (`rewards/NAME/mean`)."""

    def __init__(
        self,
        model: Any,
        *,
        agg: str | None = None,
        reference: Sequence[tuple[str, str]] | None = None,
        answer_column: str = "answer",
        empty: float = 0.0,
        device: str | None = None,
        name: str | None = None,
        grade_timeout: float = 5.0,
    ) -> None:
        self.verifier = model if isinstance(model, str) and model in TASKS else None
        self.scorer = None if self.verifier else _as_scorer(model, agg=agg, device=device)
        self.answer_column, self.empty, self.grade_timeout = answer_column, float(empty), grade_timeout
        self.__name__ = name or (self.verifier or f"{self.scorer.kind}_reward")  # type: ignore[union-attr]
        self.center, self.scale = 0.0, 1.0
        if reference is not None:
            if self.verifier:
                raise InputError("reference= normalises a reward model's scores; a verifier's rewards are 0 or 1")
            prompts, completions = zip(*reference, strict=True) if reference else ((), ())
            scores = [s for s in self.raw(list(prompts), list(completions), {}) if not math.isnan(s)]
            if len(scores) < 2:
                raise InputError(f"reference= needs at least 2 scorable (prompt, completion) pairs, got {len(scores)}")
            mean = sum(scores) / len(scores)
            std = math.sqrt(sum((s - mean) ** 2 for s in scores) / (len(scores) - 1))
            if std == 0:
                raise InputError("the reference completions all score the same: their spread cannot scale rewards")
            self.center, self.scale = mean, std

    def __call__(self, prompts: Sequence[Any], completions: Sequence[Any], **columns: Any) -> list[float]:
        if len(prompts) != len(completions):
            raise InputError(f"{len(prompts)} prompts but {len(completions)} completions")
        scores = self.raw(prompts, completions, columns)
        return [self.empty if math.isnan(s) else (s - self.center) / self.scale for s in scores]

    def raw(self, prompts: Sequence[Any], completions: Sequence[Any], columns: dict[str, Any]) -> list[float]:
        """Scores before normalisation; NaN where a completion has nothing to score."""
        texts = [text_of(c) for c in completions]
        if self.verifier is not None:
            read = _GRADED_ROWS.get(self.verifier, _answer_rows)
            problems, solutions = read(self.verifier, prompts, completions, texts, columns, self.answer_column)
            grades = get_task(self.verifier).grade(problems, solutions, Checks(timeout=self.grade_timeout))
            return [float(bool(g.correct)) for g in grades]
        steps = [self.scorer.format.split(t) for t in texts]  # type: ignore[union-attr]
        # The policy's prompt template ends the prompt with a separator; the reward model's StepFormat adds its own.
        problems = [text_of(p).rstrip() for p in prompts]
        got = self.scorer.score_solutions(problems, steps).scores  # type: ignore[union-attr]
        return [math.nan if s is None else float(s) for s in got]


def _answer_rows(
    task: str, prompts: Sequence[Any], completions: Sequence[Any], texts: list[str], columns: dict, answer_column: str
) -> tuple[list[Problem], list[str]]:
    """Problems of `task` with the gold answers of `answer_column` (the row's other columns in meta); the
    completions are the solutions."""
    golds = _column(columns, answer_column, len(texts))
    other = {k: v for k, v in columns.items() if k != answer_column and isinstance(v, (list, tuple))}
    problems = []
    for i, gold in enumerate(golds):
        meta = {k: v[i] for k, v in other.items() if len(v) == len(texts)}
        problems.append(Problem(str(i), text_of(prompts[i]), str(gold), {**meta, "task": task}))
    return problems, texts


def _code_rows(
    task: str, prompts: Sequence[Any], completions: Sequence[Any], texts: list[str], columns: dict, answer_column: str
) -> tuple[list[Problem], list[str]]:
    """Code problems with the unit tests of the columns `test` and `entry_point` (HumanEval's); the program is the
    prompt continued by the completion (plain text), or a chat answer's first fenced code block (else all of it)."""
    tests = _column(columns, "test", len(texts))
    entry = columns.get("entry_point") or [None] * len(texts)
    problems, programs = [], []
    for prompt, completion, text, test, point in zip(prompts, completions, texts, tests, entry, strict=True):
        if isinstance(prompt, str) and isinstance(completion, str):
            program = prompt + text
        else:
            fenced = _FENCE.search(text)
            program = fenced.group(1) if fenced else text
        problems.append(Problem(str(len(problems)), "", None, {"task": task, "test": str(test), "entry_point": point}))
        programs.append(program)
    return problems, programs


# How a task's grader reads TRL's reward-function arguments into problems and the solutions to grade, where it
# needs more than a gold answer column (`_answer_rows`).
_GRADED_ROWS = {"code": _code_rows}


def reward_function(
    model: Any,
    *,
    agg: str | None = None,
    reference: Sequence[tuple[str, str]] | None = None,
    answer_column: str = "answer",
    empty: float = 0.0,
    device: str | None = None,
    name: str | None = None,
) -> RewardFunction:
    """A TRL reward function (`(prompts, completions, **columns) -> list[float]`) for a reward model or verifier.

    `model`: a path, hub id or embedded name of a reward model saved by prmsearch, a `RewardModel`, any `Scorer`,
    or "math" / "code" for a verifier. `agg`: how a PRM's step scores make one reward (min, prod, mean, last;
    default: the model's own). `reference`: (prompt, completion) pairs whose score statistics centre and scale
    every reward. `answer_column`:
    the dataset column with the gold answer ("math"); "code" reads the columns `test` and `entry_point`
    (HumanEval's). `empty`: the reward of a completion with no steps to score. `name`: what TRL logs it as.

        from trl import GRPOConfig, GRPOTrainer
        from prmsearch import reward_function
        trainer = GRPOTrainer(model=policy, reward_funcs=[reward_function("embedded:prm"), reward_function("math")],
                              args=GRPOConfig(...), train_dataset=dataset)
    """
    return RewardFunction(
        model, agg=agg, reference=reference, answer_column=answer_column, empty=empty, device=device, name=name
    )


def _column(columns: dict[str, Any], name: str, rows: int) -> list[Any]:
    values = columns.get(name)
    if values is None:
        have = ", ".join(sorted(k for k in columns if k not in ("trainer_state", "log_extra", "log_metric"))) or "none"
        raise InputError(f"the reward needs the dataset column {name!r}; the columns passed: {have}")
    if len(values) != rows:
        raise InputError(f"column {name!r} has {len(values)} values for {rows} completions")
    return list(values)


def _as_scorer(model: Any, *, agg: str | None, device: str | None) -> Any:
    if isinstance(model, Scorer):
        return model
    from .models.reward_model import RewardModel
    from .search.scorer import OutcomeScorer, StepScorer

    if isinstance(model, RewardModel):
        return StepScorer(model, agg=agg) if model.kind == "prm" else OutcomeScorer(model)
    if isinstance(model, str):
        from .search.load import load_scorer

        return load_scorer(model, device=device, agg=agg)
    raise InputError(
        f"reward_function takes a reward model (path, RewardModel or Scorer) or a task name ({', '.join(TASKS)}), "
        f"got {type(model).__name__}"
    )
