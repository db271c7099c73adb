"""check_arithmetic_steps: exact checking of stated computations, on hand cases and on GSM8K's gold solutions."""

import json
from pathlib import Path

import pytest

from prmsearch.verifiers.arithmetic import check_arithmetic_steps

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def verdicts(text, separator="\n"):
    return [c.correct for c in check_arithmetic_steps(text, separator)]


@pytest.mark.parametrize(
    "step, correct",
    [
        ("Natalia sold 48/2 = <<48/2=24>>24 clips in May.", True),
        ("Natalia sold 48/2 = <<48/2=25>>25 clips in May.", False),
        ("Janet sells 16 - 3 - 4 = 9 duck eggs a day.", True),
        ("She makes 9 * 2 = $18 every day.", True),
        ("She makes 9 * 2 = $19 every day.", False),
        ("James slept 9 hours * 2/3 = 6 hours.", True),  # a unit word between number and operator
        ("The total is 1,200 + 800 = 2,000 dollars.", True),
        ("That is 20% * 50 = 10 people.", True),
        ("So 10 / 3 = 3.33 each.", True),  # a rounded decimal
        ("So 10 / 3 = 3.34 each.", False),
        ("4.20 + 9.45 + 1.35 = 14.999999999999998", True),  # calculator float noise
        ("The tour takes 3 / 2 = 1 1/2 hours.", True),  # a mixed number
        ("He has 1 - 3/4 = 1/4 of the land.", True),  # a fraction claimed
        ("Then 30 - 8 * 3 = 30 - 24 = 6 days.", True),  # a running computation
        ("2 * (3 + 4) = 14", True),
        ("2 ^ 10 = 1024", True),
        ("15 pages x 1/3 = 5 pages", True),  # x as a times sign
        ("Emma has 120 – 80 - 15 = 25 points.", True),  # an en dash as minus
        ("¾ x 12 = 9", True),
        ("3x + 4 = 28", None),  # algebra with a variable: not checked
        ("3B - 30 = 45", None),
        ("X*4 + 240 = 1920", None),
        ("Let x = 5.", None),  # nothing computed
        ("She had no money left.", None),
        ("5 / 0 = 3", None),  # cannot be evaluated
        ("10 ^ 1000000 = 1", None),  # too big to evaluate safely
    ],
)
def test_single_steps(step, correct):
    assert verdicts(step) == [correct]


def test_steps_from_list_and_equation_details():
    checks = check_arithmetic_steps(["48 / 2 = 24", "48 + 24 = 73", "The answer is 72."])
    assert [c.correct for c in checks] == [True, False, None]
    eq = checks[1].equations[0]
    assert (eq.expression, eq.claimed, eq.value, eq.correct) == ("48 + 24", "73", "72", False)


def test_annotation_and_visible_text_count_once():
    (check,) = check_arithmetic_steps("Janet sells 16 - 3 - 4 = <<16-3-4=9>>9 duck eggs a day.")
    assert len(check.equations) == 1 and check.correct


def test_hostile_steps_stay_fast():
    import time

    start = time.perf_counter()
    check_arithmetic_steps("1 + " * 50_000 + "1 = 50001\n" + "9" * 100_000 + " * 2 = 3\n" + "(" * 10_000 + "= 1")
    assert time.perf_counter() - start < 5


@pytest.mark.skipif(not (DATA / "gsm8k_test.jsonl").exists(), reason="needs ../shared/data")
def test_gsm8k_gold_solutions_are_almost_all_right():
    """The 1319 gold solutions state ~4,800 computations; only two are wrong, both real typos in the data
    ("364 / 4 = 273" for 3/4 of 364, "$32 - $20 = $300")."""
    wrong, checked = [], 0
    for line in open(DATA / "gsm8k_test.jsonl"):
        for check in check_arithmetic_steps(json.loads(line)["answer"]):
            checked += sum(e.correct is not None for e in check.equations)
            wrong += [(e.expression, e.claimed) for e in check.equations if e.correct is False]
    assert checked > 4700
    assert sorted(set(wrong)) == [("$32 - $20", "$300"), ("364 / 4", "273")]
