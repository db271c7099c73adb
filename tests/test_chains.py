"""The bundled task: deterministic, disjoint splits, difficulty respected, true step labels, graded by the real
math verifier."""

import pytest

from prmsearch.tasks import load_problems
from prmsearch.tasks.chains import (
    ChainSpec,
    apply_all,
    first_error,
    generate,
    split_of,
    step_correct,
)
from prmsearch.verifiers.math import grade


def test_same_arguments_same_problems_and_splits_disjoint():
    a, b = generate("train", 300), generate("train", 300)
    assert [p.prompt for p in a] == [p.prompt for p in b]
    test = generate("test", 300)
    assert not {p.prompt for p in a} & {p.prompt for p in test}
    assert len({p.prompt for p in test}) == 300
    assert all(split_of(p.prompt, ChainSpec()) == "test" for p in test)
    assert [p.prompt for p in generate("train", 300, seed=1)] != [p.prompt for p in a]


@pytest.mark.parametrize(
    "spec", [ChainSpec(), ChainSpec(min_ops=2, max_ops=2, ops="+-", max_value=99), ChainSpec(min_ops=5, max_ops=6)]
)
def test_difficulty_is_respected(spec):
    for p in generate("train", 200, spec=spec):
        ops = p.meta["ops"]
        assert spec.min_ops <= len(ops) <= spec.max_ops
        assert {op for op, _ in ops} <= set(spec.ops)
        value = p.meta["start"]
        for op, x in ops:
            value = apply_all(value, [(op, x)])
            assert 0 <= value <= spec.max_value
            assert x <= (spec.max_factor if op == "*" else spec.max_operand)
        assert str(value) == p.answer
        assert len(p.meta["steps"]) == len(ops) + 1


def test_worked_solutions_are_right_and_graded_right():
    for p in generate("test", 50):
        steps = p.meta["steps"]
        assert step_correct(p, steps) == [True] * len(steps)
        assert first_error(p, steps) == -1
        assert grade("\n\n".join(steps), p.answer).correct


def test_step_labels_find_the_first_slip():
    p = generate("train", 1, spec=ChainSpec(min_ops=3, max_ops=3))[0]
    steps = list(p.meta["steps"])
    head, _, value = steps[1].rpartition(" ")
    steps[1] = f"{head} {int(value) + 1}"
    assert step_correct(p, steps) == [True, False, False, False]
    (op, x), value = p.meta["ops"][1], steps[0].rpartition(" ")[2]
    misread = list(p.meta["steps"])
    misread[1] = f"{value} {op} {x + 1} = {int(value) + (x + 1 if op == '+' else -(x + 1))}"  # arithmetic right
    assert step_correct(p, misread) == [True, False, False, False]
    miswritten = list(p.meta["steps"])
    miswritten[1] = f"{value} {op} {x + 1} = {p.meta['steps'][1].rpartition(' ')[2]}"  # the right value, wrongly shown
    assert step_correct(p, miswritten)[1] is False
    assert first_error(p, steps) == 1
    assert first_error(p, steps[:1] + ["oops"] + steps[2:]) == 1
    assert first_error(p, p.meta["steps"][:-1] + ["The answer is 0."]) == 3 or p.answer == "0"
    assert first_error(p, [*p.meta["steps"], "The answer is 1."]) == 4  # a step past the end is wrong
    assert not grade("\n\n".join(steps[:-1] + [f"The answer is {int(p.answer) + 1}."]), p.answer).correct


def test_load_problems_by_name():
    test = load_problems("chains", limit=20)
    assert [p.id for p in test] == [f"chain-test-{i}" for i in range(20)]
    assert test[0].prompt == generate("test", 1)[0].prompt
    assert load_problems("chains", split="train", limit=3)[0].id == "chain-train-0"
    with pytest.raises(ValueError, match="splits"):
        load_problems("chains", split="validation")
