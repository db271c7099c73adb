"""How N candidate solutions become one answer: step-score aggregation, answer grouping, and the three selectors
(majority vote, best-of-N, weighted best-of-N). Used by the search strategies and by `rerank`.

Every selector returns the *index* of the chosen candidate, not its answer, so the caller keeps the whole candidate
(text, scores, token counts). Ties always go to what appeared first, so a run is reproducible from its inputs.

Grouping is by mathematical equivalence, not string equality ("0.5", "\\frac{1}{2}" and "1/2" are one vote). The
math comparison is gold-directed (see `prmsearch.verifiers.math`), so an answer is never compared with "the other
answers" in both directions: each new distinct answer is compared, as the prediction, with the representative (the
first member) of each existing group, as the gold, and joins the first group that accepts it.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence

from ..verifiers.math import DEFAULT_TIMEOUT, compare_many

AGGREGATIONS = ("last", "min", "prod", "mean")
METHODS = ("majority", "best_of_n", "weighted_best_of_n")
TASKS = ("math", "code")


def aggregate(step_scores: Sequence[float], how: str) -> float:
    """One score for a solution from the scores of its steps.

    last: the final step's score (a PRM's judgement of the whole prefix); min: the weakest step (one wrong step
    spoils a solution); prod: the probability that every step is right, computed as exp(sum of logs) so long
    solutions keep their precision (scores must be in [0, 1]; a 0 gives 0); mean: the average step.
    """
    if how not in AGGREGATIONS:
        raise ValueError(f"unknown aggregation {how!r}; choose one of {', '.join(AGGREGATIONS)}")
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


def group_answers(
    answers: Sequence[str | None], task: str = "math", *, timeout: float = DEFAULT_TIMEOUT
) -> list[int | None]:
    """A group index for every answer; groups are numbered 0, 1, ... in order of first appearance, so the result
    depends only on the answers and their order. None for a candidate with no answer, or an empty one (`\\boxed{}`).

    math: answers identical after `strip()` share a group without any comparison. Each other distinct answer A is
    compared with the representative R (first member) of every earlier group as `compare_many([A], [R])` (A as the
    prediction, R as the gold) and joins the first group that accepts it, else starts a new one. A comparison that
    times out counts as "different". code: the program text with trailing whitespace of every line and blank lines
    at both ends dropped must be identical.
    """
    return group_answers_many([answers], task, timeout=timeout)[0]


def group_answers_many(
    answer_lists: Sequence[Sequence[str | None]], task: str = "math", *, timeout: float = DEFAULT_TIMEOUT
) -> list[list[int | None]]:
    """`group_answers` for many candidate lists (one per problem) at once, with the same result as one call per
    list, but with the comparisons of all lists batched together.

    Works in rounds: in each round every list with answers still unplaced makes its first unplaced answer the
    representative of a new group, and all its other unplaced answers are compared with that representative in one
    `compare_many` call shared by all lists. This is exactly the sequential rule (an answer joins the first group
    whose representative accepts it), with the fewest comparisons, in as many rounds as the largest number of
    groups in any one list.
    """
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; choose one of {', '.join(TASKS)}")
    for li, answers in enumerate(answer_lists):
        for i, a in enumerate(answers):
            if a is not None and not isinstance(a, str):
                raise TypeError(f"list {li}, answer {i}: expected a str or None, got {type(a).__name__} ({a!r})")
    normalise = _normalise_code if task == "code" else str.strip
    keys = [[(normalise(a) or None) if a is not None else None for a in answers] for answers in answer_lists]
    distinct = [list(dict.fromkeys(k for k in ks if k is not None)) for ks in keys]  # first-appearance order
    if task == "code":
        group_of = [{d: g for g, d in enumerate(ds)} for ds in distinct]
    else:
        group_of = _group_distinct_math(distinct, timeout)
    return [[None if k is None else groups[k] for k in ks] for ks, groups in zip(keys, group_of, strict=True)]


def _group_distinct_math(distinct: list[list[str]], timeout: float) -> list[dict[str, int]]:
    """{answer: group} for each list of distinct answers (see `group_answers_many` for the rounds)."""
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


def _normalise_code(program: str) -> str:
    lines = [line.rstrip() for line in program.replace("\r\n", "\n").split("\n")]
    return "\n".join(lines).strip("\n")


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
    """Dispatch to one of `METHODS` by name; `scores` may be None for majority only."""
    if method not in METHODS:
        raise ValueError(f"unknown selection method {method!r}; choose one of {', '.join(METHODS)}")
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
    if method not in METHODS:
        raise ValueError(f"unknown selection method {method!r}; choose one of {', '.join(METHODS)}")
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
