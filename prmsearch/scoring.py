"""What every reward model, judge and search shares: the `Scorer` contracts and their results, and how a solution's
step scores become one score.

`Scorer` is the reward model as search uses it (whole solutions in, scores out); a `TreeScorer` also scores the new
steps of a growing search tree, keeping per-node state under keys the search picks. Our PRMs and ORMs
(`search.scorer`), public PRMs (`search.adapter_scorer`) and generative judges (`judges`) implement them; search,
reranking, rewards and the server consume them. Step-score aggregation (`aggregate_steps`: last, min, prod, mean
over a path's step scores) is named apart from a reward model's token aggregation (`models.reward_model`: how an
ORM's per-token probabilities make one).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from .errors import PrmsearchError
from .steps import StepFormat

STEP_AGGREGATIONS = ("last", "min", "prod", "mean")
# A solution's score from its step scores when neither the caller nor the reward model says how: its weakest step.
# A wrong step sinks a solution whatever follows it: best-of-8 with the embedded PRM picks a right answer to 0.833 of
# the first 30 problems of the bundled task by min, 0.233 by last (README, "One aggregation").
DEFAULT_STEP_AGGREGATION = "min"

Key = Hashable  # how a search names a node to a TreeScorer: (problem's uid, node id), or deeper for rollout steps
StepRequest = tuple[Key, Sequence[tuple[Key, str]]]  # (parent key, [(new key, step text), ...])


@dataclass
class ScoreCounts:
    """What one score call cost each request: tokens fed through the model (recomputed ancestors included) and
    the ids of the forward passes it took part in (a problem's passes are the union over its requests)."""

    tokens: list[int]
    passes: list[set[int]]


@dataclass
class SolutionScores:
    scores: list[float | None]  # None: a solution with no steps
    step_scores: list[list[float]]  # empty for ORM / BT
    counts: ScoreCounts


@runtime_checkable
class Scorer(Protocol):
    """A reward model as search uses it: scores of whole solutions (best-of-N, weighted best-of-N). `kind` is "prm",
    "orm" or "bt"; `format` splits a solution into steps; `stats` counts scored tokens, forward passes, evicted
    tokens and seconds."""

    format: StepFormat
    stats: dict[str, Any]

    @property
    def kind(self) -> str: ...

    def score_solutions(self, prompts: Sequence[str], solutions: Sequence[Sequence[str]]) -> SolutionScores: ...


@runtime_checkable
class TreeScorer(Scorer, Protocol):
    """A step scorer (a PRM, `kind` "prm"): it scores the new steps of many partial solutions as a search tree grows.
    `add_prompt` makes a root; a `score` request is (parent key, [(new key, step text), ...]) and gets P(correct)
    of each new step, read on top of the parent's path; `release` says the search no longer needs keys, so their
    state can go once nothing below them lives."""

    def add_prompt(self, key: Key, prompt: str) -> None: ...

    def score(self, requests: Sequence[StepRequest]) -> tuple[list[list[float]], ScoreCounts]: ...

    def release(self, keys: Sequence[Key]) -> None: ...


class ScorerError(PrmsearchError):
    """A scorer used on keys it does not hold, or a model kind that cannot score this way."""


def aggregate_steps(step_scores: Sequence[float], how: str) -> float:
    """One score for a solution from the scores of its steps.

    last: the final step's score (a PRM's judgement of the whole prefix); min: the weakest step (one wrong step
    spoils a solution); prod: the probability that every step is right, computed as exp(sum of logs) so long
    solutions keep their precision (scores must be in [0, 1]; a 0 gives 0); mean: the average step.
    """
    if how not in STEP_AGGREGATIONS:
        raise ValueError(f"unknown aggregation {how!r}; choose one of {', '.join(STEP_AGGREGATIONS)}")
    scores = list(step_scores)
    if not scores:
        raise ValueError(f"cannot aggregate ({how}) an empty list of step scores: the solution has no scored step")
    for i, s in enumerate(scores):
        if isinstance(s, bool) or not isinstance(s, numbers.Real) or not math.isfinite(s):
            raise ValueError(f"step score {i} is {s!r}; step scores must be finite numbers")
    if how == "last":
        return float(scores[-1])
    if how == "min":
        return float(min(scores))
    if how == "mean":
        return math.fsum(scores) / len(scores)
    if any(s < 0 or s > 1 for s in scores):
        bad = next(s for s in scores if s < 0 or s > 1)
        raise ValueError(f"agg 'prod' multiplies probabilities, so step scores must be in [0, 1]; got {bad!r}")
    if any(s == 0 for s in scores):
        return 0.0
    return math.exp(math.fsum(math.log(s) for s in scores))
