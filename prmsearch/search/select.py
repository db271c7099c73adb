"""How N candidate solutions become one answer: step-score aggregation, answer grouping, and the three selectors
(majority vote, best-of-N, weighted best-of-N). Used by the search strategies and by `rerank`.

Every selector returns the *index* of the chosen candidate, not its answer, so the caller keeps the whole candidate
(text, scores, token counts). Ties always go to what appeared first, so a run is reproducible from its inputs.

Grouping is the task's (`Task.group`): by mathematical equivalence for math ("0.5", "\\frac{1}{2}" and "1/2" are
one vote), by program text for code.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence

from ..tasks import get_task
from ..verifiers.math import DEFAULT_TIMEOUT

SELECTIONS = ("majority", "best_of_n", "weighted_best_of_n")


def group_answers(
    answers: Sequence[str | None], task: str = "math", *, timeout: float = DEFAULT_TIMEOUT
) -> list[int | None]:
    """A group index for every answer; groups are numbered 0, 1, ... in order of first appearance, so the result
    depends only on the answers and their order. None for a candidate with no answer, or an empty one (`\\boxed{}`).
    How answers are grouped is the task's (`tasks.math.MathTask.group`: equivalence against each group's first
    member; `tasks.code.CodeTask.group`: the program text, trailing whitespace and blank end lines dropped)."""
    return group_answers_many([answers], task, timeout=timeout)[0]


def group_answers_many(
    answer_lists: Sequence[Sequence[str | None]], task: str = "math", *, timeout: float = DEFAULT_TIMEOUT
) -> list[list[int | None]]:
    """`group_answers` for many candidate lists (one per problem) at once, with the same result as one call per
    list, but with the comparisons of all lists batched together."""
    tasked = get_task(task)
    for li, answers in enumerate(answer_lists):
        for i, a in enumerate(answers):
            if a is not None and not isinstance(a, str):
                raise TypeError(f"list {li}, answer {i}: expected a str or None, got {type(a).__name__} ({a!r})")
    return tasked.group(answer_lists, timeout=timeout)


def majority(answers: Sequence[str | None], task: str = "math", *, timeout: float = DEFAULT_TIMEOUT) -> int | None:
    """The index of the first member of the largest answer group (ties: the group that appeared first).
    Candidates without an answer do not vote; None when no candidate has an answer."""
    return select_from_groups("majority", group_answers(answers, task, timeout=timeout))


def best_of_n(scores: Sequence[float | None]) -> int | None:
    """The index of the highest score (ties: the first). A None score (candidate not scored) is skipped; None when
    no candidate has a score. Answers play no part: a candidate without an answer can win."""
    _check_scores(scores)
    best: int | None = None
    for i, s in enumerate(scores):
        if s is not None and (best is None or s > scores[best]):  # type: ignore[operator]
            best = i
    return best


def weighted_best_of_n(
    answers: Sequence[str | None],
    scores: Sequence[float | None],
    task: str = "math",
    *,
    timeout: float = DEFAULT_TIMEOUT,
) -> int | None:
    """The highest-scoring member of the answer group with the largest sum of scores.

    Only candidates with both an answer and a score count; None when there is none. Ties between groups go to the
    group that appeared first, ties within a group to its first member. The scores are summed, so they must be
    non-negative (probabilities, e.g. a PRM's aggregated score): with signed rewards (BT logits) a sum would favour
    small groups, so those raise; map them through a sigmoid first, or use best_of_n.
    """
    if len(answers) != len(scores):
        raise ValueError(f"got {len(answers)} answers but {len(scores)} scores")
    _check_scores(scores, summed=True)  # before the comparisons, which are the slow part
    return select_from_groups("weighted_best_of_n", group_answers(answers, task, timeout=timeout), scores)


def select(
    method: str,
    answers: Sequence[str | None],
    scores: Sequence[float | None] | None = None,
    task: str = "math",
    *,
    timeout: float = DEFAULT_TIMEOUT,
) -> int | None:
    """Dispatch to one of `SELECTIONS` by name; `scores` may be None for majority only."""
    if method not in SELECTIONS:
        raise ValueError(f"unknown selection method {method!r}; choose one of {', '.join(SELECTIONS)}")
    if scores is not None and len(scores) != len(answers):
        raise ValueError(f"got {len(answers)} answers but {len(scores)} scores")
    if method == "majority":
        return majority(answers, task, timeout=timeout)
    if scores is None:
        raise ValueError(f"method {method!r} needs scores; only 'majority' works without them")
    if method == "best_of_n":
        return best_of_n(scores)
    return weighted_best_of_n(answers, scores, task, timeout=timeout)


def select_from_groups(
    method: str, groups: Sequence[int | None], scores: Sequence[float | None] | None = None
) -> int | None:
    """`select` on answers already grouped (by `group_answers`, or `group_answers_many` for many problems at once),
    so a caller that needs the groups too (vote counts, weights) compares the answers only once. Same rules and
    tie-breaking as the named selectors; `groups` must number groups in order of first appearance."""
    if method not in SELECTIONS:
        raise ValueError(f"unknown selection method {method!r}; choose one of {', '.join(SELECTIONS)}")
    if scores is not None and len(scores) != len(groups):
        raise ValueError(f"got {len(groups)} answer groups but {len(scores)} scores")
    if method == "best_of_n":
        if scores is None:
            raise ValueError("method 'best_of_n' needs scores; only 'majority' works without them")
        return best_of_n(scores)
    if method == "majority":
        scores = [1.0] * len(groups)  # one vote each
    elif scores is None:
        raise ValueError("method 'weighted_best_of_n' needs scores; only 'majority' works without them")
    else:
        _check_scores(scores, summed=True)
    weight: dict[int, float] = {}
    best_member: dict[int, int] = {}
    for i, (g, s) in enumerate(zip(groups, scores, strict=True)):
        if g is None or s is None:
            continue
        weight[g] = weight.get(g, 0.0) + s
        if g not in best_member or s > scores[best_member[g]]:  # type: ignore[operator]
            best_member[g] = i  # majority: all scores equal, so this stays the group's first member
    if not weight:
        return None
    heaviest = max(weight, key=lambda g: (weight[g], -g))  # group numbers follow first appearance
    return best_member[heaviest]


def _check_scores(scores: Sequence[float | None], *, summed: bool = False) -> None:
    for i, s in enumerate(scores):
        if s is None:
            continue
        if isinstance(s, bool) or not isinstance(s, numbers.Real) or not math.isfinite(s):
            raise ValueError(f"candidate {i} has score {s!r}; a score must be a finite number (or None: not scored)")
        if summed and s < 0:
            raise ValueError(
                f"candidate {i} has score {s!r}: weighted_best_of_n sums scores per answer, so they must be "
                "non-negative (probabilities); map signed rewards through a sigmoid, or use best_of_n"
            )
