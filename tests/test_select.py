"""Selection of one candidate out of N: aggregation by hand, grouping by real math equivalence (math-verify through
the worker pool), majority / best-of-N / weighted best-of-N on cases where they disagree, ties, and None."""

import math

import numpy as np
import pytest

from prmsearch.scoring import STEP_AGGREGATIONS, aggregate_steps
from prmsearch.search.select import (
    SELECTIONS,
    best_of_n,
    group_answers,
    group_answers_many,
    majority,
    select,
    weighted_best_of_n,
)
from prmsearch.tasks import math as math_task

# ---- aggregate ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "how, expected",
    [("last", 0.8), ("min", 0.5), ("prod", 0.9 * 0.5 * 0.8), ("mean", (0.9 + 0.5 + 0.8) / 3)],
)
def test_aggregate_by_hand(how, expected):
    assert aggregate_steps([0.9, 0.5, 0.8], how) == pytest.approx(expected, rel=1e-12)


def test_aggregations_listed():
    assert STEP_AGGREGATIONS == ("last", "min", "prod", "mean")
    for how in STEP_AGGREGATIONS:
        assert aggregate_steps([0.25], how) == pytest.approx(0.25)


def test_aggregate_prod_is_stable_and_exact_at_edges():
    assert aggregate_steps([1.0, 1.0], "prod") == 1.0
    assert aggregate_steps([0.7, 0.0, 0.9], "prod") == 0.0
    assert aggregate_steps([0.5] * 1000, "prod") == pytest.approx(0.5**1000, rel=1e-9)  # 9e-302, no underflow to 0
    assert aggregate_steps(np.array([0.5, 0.5], dtype=np.float32), "prod") == pytest.approx(0.25)


def test_aggregate_errors():
    with pytest.raises(ValueError, match="empty list of step scores"):
        aggregate_steps([], "min")
    with pytest.raises(ValueError, match="unknown aggregation 'max'.*last, min, prod, mean"):
        aggregate_steps([0.5], "max")
    with pytest.raises(ValueError, match="step score 1 is nan"):
        aggregate_steps([0.5, float("nan")], "mean")
    with pytest.raises(ValueError, match="step score 0 is '0.5'"):
        aggregate_steps(["0.5"], "last")
    with pytest.raises(ValueError, match=r"must be in \[0, 1\]; got -0.5"):
        aggregate_steps([0.5, -0.5], "prod")
    assert aggregate_steps([-2.0, 3.0], "min") == -2.0  # logits are fine where nothing is multiplied


# ---- grouping --------------------------------------------------------------------------------------------------


def test_group_equivalent_forms():
    answers = ["0.5", None, "\\frac{1}{2}", "1/2", " 0.5 ", "1,000", "1000", "2", "\\dfrac{2}{4}"]
    assert group_answers(answers) == [0, None, 0, 0, 0, 1, 1, 2, 0]


def test_group_is_gold_directed_with_the_first_member_as_gold():
    # "2x + z = 3" says more than "3": accepted as a prediction against gold "3", but "3" is not gold "2x + z = 3".
    assert group_answers(["3", "2x + z = 3"]) == [0, 0]
    assert group_answers(["2x + z = 3", "3"]) == [0, 1]


def test_group_identical_strings_need_no_comparison(monkeypatch):
    calls = []
    monkeypatch.setattr(math_task, "compare_many", lambda p, g, **kw: calls.append((p, g)) or [(False, "")] * len(p))
    assert group_answers(["42", " 42", "42\n", None, "42"]) == [0, 0, 0, None, 0]
    assert calls == []


def test_group_comparisons_are_batched_in_rounds(monkeypatch):
    """One compare_many call per round (a new representative per list), not one per pair, and no pair twice."""
    real = math_task.compare_many
    calls = []

    def spy(preds, golds, **kw):
        calls.append(list(zip(preds, golds, strict=True)))
        return real(preds, golds, **kw)

    monkeypatch.setattr(math_task, "compare_many", spy)
    lists = [["1", "2", "1.0", "3", "2.0"], ["7", "\\frac{14}{2}", "8"], [], [None, None]]
    assert group_answers_many(lists) == [[0, 1, 0, 2, 1], [0, 0, 1], [], [None, None]]
    assert len(calls) == 2  # two rounds: list 0 has three groups, but the third needs no comparison
    assert calls[0] == [("2", "1"), ("1.0", "1"), ("3", "1"), ("2.0", "1"), ("\\frac{14}{2}", "7"), ("8", "7")]
    assert calls[1] == [("3", "2"), ("2.0", "2")]


def test_group_many_matches_one_list_at_a_time():
    lists = [["5", "x = 5", "6", "\\frac{10}{2}", "six"], ["0.25", "1/4", "25\\%", "4"], ["a"]]
    assert group_answers_many(lists) == [group_answers(answers) for answers in lists]


def test_group_code_by_text_up_to_trailing_whitespace():
    a = "def f(x):\n    return x + 1\n"
    same = "\n\ndef f(x):   \r\n    return x + 1\n\n\n"
    other = "def f(x):\n  return x + 1\n"  # indentation is meaning in Python
    assert group_answers([a, same, other, None, a], task="code") == [0, 0, 1, None, 0]


def test_group_errors():
    with pytest.raises(ValueError, match="unknown task 'chess'"):
        group_answers(["1"], task="chess")
    with pytest.raises(TypeError, match="answer 1: expected a str or None, got int"):
        group_answers(["1", 2])


# ---- selectors -------------------------------------------------------------------------------------------------


def test_majority_with_equivalent_forms():
    # "1,000" and "1000" are one answer with 3 votes; "0.5"/"1/2" have 2; the first member of the winner is returned
    answers = ["0.5", "1,000", "1/2", "1000", None, "1000.0", "7"]
    assert majority(answers) == 1


def test_majority_ties_go_to_first_appearance():
    assert majority(["3", "4", "4", "3"]) == 0
    assert majority(["4", "3", "\\frac{6}{2}", "4"]) == 0
    assert majority([None, "9", "8"]) == 1


def test_majority_none_answers():
    assert majority([None, None, "5"]) == 2  # a candidate without an answer never votes
    assert majority([None, None]) is None
    assert majority([]) is None


def test_weighted_and_naive_best_of_n_differ():
    answers = ["\\frac{1}{2}", "3", "0.5", "1/2"]
    scores = [0.4, 0.9, 0.3, 0.35]
    assert best_of_n(scores) == 1  # the single best solution says 3
    assert weighted_best_of_n(answers, scores) == 0  # but 1/2 has weight 1.05 against 0.9; its best member is 0
    assert majority(answers) == 0


def test_weighted_returns_the_best_member_of_the_heaviest_group():
    answers = ["2", "5", "2.0", "5", "2"]
    scores = [0.2, 0.5, 0.9, 0.6, 0.1]
    assert weighted_best_of_n(answers, scores) == 2  # group "2" weighs 1.2 > 1.1, and 0.9 is its best member


def test_ties():
    assert best_of_n([0.5, 0.7, 0.7]) == 1
    assert weighted_best_of_n(["1", "2"], [0.5, 0.5]) == 0  # equal weights: the group that appeared first
    assert weighted_best_of_n(["1", "2", "2", "1"], [0.3, 0.5, 0.2, 0.4]) == 3  # tie 0.7 each: group of "1"
    assert weighted_best_of_n(["1", "1.0"], [0.5, 0.5]) == 0  # equal members: the first


def test_none_scores_and_answers():
    assert best_of_n([None, 0.2, None]) == 1
    assert best_of_n([None, None]) is None
    assert best_of_n([]) is None
    assert best_of_n([0.1, 0.9]) == 1
    assert best_of_n([0.9, 0.95]) == 1
    # best_of_n ignores answers: an unanswered candidate can win it, never weighted (or majority)
    answers, scores = [None, "4", "5"], [0.99, 0.3, 0.2]
    assert select("best_of_n", answers, scores) == 0
    assert select("weighted_best_of_n", answers, scores) == 1
    # an unscored candidate adds no weight and is never returned
    assert weighted_best_of_n(["6", "7", "7"], [0.5, None, 0.4]) == 0
    assert weighted_best_of_n(["6", "6"], [None, None]) is None
    assert weighted_best_of_n([None, None], [0.5, 0.5]) is None


def test_score_validation():
    with pytest.raises(ValueError, match="candidate 1 has score nan"):
        best_of_n([0.1, float("nan")])
    with pytest.raises(ValueError, match="candidate 0 has score inf"):
        weighted_best_of_n(["1"], [math.inf])
    with pytest.raises(ValueError, match="candidate 1 has score -0.2: weighted_best_of_n sums.*sigmoid"):
        weighted_best_of_n(["1", "2"], [0.1, -0.2])
    with pytest.raises(ValueError, match="got 2 answers but 1 scores"):
        weighted_best_of_n(["1", "2"], [0.1])
    assert best_of_n([-3.0, -1.0]) == 1  # signed rewards are fine for naive best-of-N
    assert best_of_n(np.array([0.1, 0.3, 0.2], dtype=np.float32)) == 1


def test_select_dispatch():
    assert SELECTIONS == ("majority", "best_of_n", "weighted_best_of_n")
    answers, scores = ["1", "2", "2"], [0.9, 0.5, 0.45]
    assert select("majority", answers) == 1
    assert select("majority", answers, scores) == 1
    assert select("best_of_n", answers, scores) == 0
    assert select("weighted_best_of_n", answers, scores) == 1
    with pytest.raises(ValueError, match="unknown selection method 'weighted'.*majority, best_of_n, weighted_best"):
        select("weighted", answers, scores)
    with pytest.raises(ValueError, match="'best_of_n' needs scores"):
        select("best_of_n", answers)
    with pytest.raises(ValueError, match="got 3 answers but 2 scores"):
        select("majority", answers, [0.1, 0.2])


def test_select_code_task():
    a, b = "def f():\n    return 1\n", "def f():\n    return 2\n"
    assert select("majority", [b, a, a + "   \n"], task="code") == 1
    assert select("weighted_best_of_n", [b, a, a + "\n"], [0.9, 0.5, 0.6], task="code") == 2


def test_empty_answers_are_no_answer():
    assert group_answers(["", "  ", "3", "\n"]) == [None, None, 0, None]
    assert majority(["", "", "3"]) == 2


def test_select_from_groups_reuses_groups():
    from prmsearch.search.select import select_from_groups

    groups = [0, 1, None, 1, 0, 2]
    scores = [0.3, 0.2, 0.99, 0.25, 0.1, 0.5]
    assert select_from_groups("majority", groups) == 0  # groups 0 and 1 tie at 2 votes: first appearance
    assert select_from_groups("best_of_n", groups, scores) == 2
    assert select_from_groups("weighted_best_of_n", groups, scores) == 5  # 0.5 > 0.45 > 0.4
    assert select_from_groups("majority", [None, None]) is None
    with pytest.raises(ValueError, match="'weighted_best_of_n' needs scores"):
        select_from_groups("weighted_best_of_n", groups)
