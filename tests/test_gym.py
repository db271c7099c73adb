"""reasoning-gym tasks (`tasks/gym.py`): drawn by name, graded by each task's own `score_answer` through search,
label, rerank and reward_function; without the package, one line says how to get it."""

from __future__ import annotations

import json
import sys

import pandas as pd
import pytest

from prmsearch.cli import main
from prmsearch.rewards import reward_function
from prmsearch.search.rerank import rerank
from prmsearch.tasks import Checks, get_task, load_problems

rg = pytest.importorskip("reasoning_gym")
SPEC = "reasoning-gym:gsm_symbolic?seed=1"


def _score(problem, answer):
    entry = {"question": problem.prompt, "answer": problem.answer, "metadata": problem.meta["metadata"]}
    return rg.get_score_answer_fn(problem.meta["metadata"]["source_dataset"])(answer, entry)


def _solutions(problems):
    """Right answers in tags, wrong ones, right ones in another form, untagged ones and none, in turn."""
    forms = [
        lambda p: f"Step one.\n\n<answer>{p.answer}</answer>",
        lambda p: f"<answer>{int(p.answer) + 1}</answer>",
        lambda p: f"<answer> {p.answer}.0 </answer>",
        lambda p: f"The answer is {p.answer}.",
        lambda p: None,
    ]
    return [forms[i % len(forms)](p) for i, p in enumerate(problems)]


def test_grades_agree_with_score_answer_on_every_problem():
    problems = load_problems(SPEC, limit=50)
    assert len(problems) == 50 and len({p.id for p in problems}) == 50
    task = get_task("reasoning-gym")
    solutions = _solutions(problems)
    grades = task.grade(problems, solutions, Checks())
    answers = task.answers([s or "" for s in solutions], timeout=5.0)
    for p, s, a, g in zip(problems, solutions, answers, grades, strict=True):
        assert g.correct == (s is not None and _score(p, a) == 1.0), (p.id, s, g)
    assert 0 < sum(bool(g.correct) for g in grades) < 50


def test_search_runs_and_grades_with_the_tasks_scorer(tmp_path):
    out = tmp_path / "run"
    argv = ["search", "--policy", "embedded:policy", "--dataset", SPEC, "--strategy", "greedy", "--limit", "4"]
    assert main([*argv, "--max-tokens", "40", "--output", str(out), "--quiet"]) == 0
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    problems = {p.id: p for p in load_problems(SPEC, limit=4)}
    assert sorted(r["problem_id"] for r in rows) == sorted(problems)
    for r in rows:
        assert r["correct"] == (_score(problems[r["problem_id"]], r["answer"]) == 1.0)


def test_rerank_and_reward_function_grade_the_same_way():
    problems = load_problems(SPEC, limit=5)
    solutions = [f"<answer>{p.answer}</answer>" if i % 2 == 0 else "<answer>0</answer>" for i, p in enumerate(problems)]
    reward = reward_function("reasoning-gym")
    columns = {"answer": [p.answer for p in problems], "metadata": [p.meta["metadata"] for p in problems]}
    assert reward([p.prompt for p in problems], solutions, **columns) == [1.0, 0.0, 1.0, 0.0, 1.0]
    frame = pd.DataFrame(
        {"problem_id": ["q"] * 3, "text": ["<answer>7</answer>", "<answer>5</answer>", "<answer>7</answer>"]}
    )
    assert rerank(frame, "majority", task="reasoning-gym")["rerank_answer"].tolist() == ["7"]


def test_label_samples_reasoning_gym_problems(tmp_path):
    out = tmp_path / "labels.jsonl"
    argv = ["label", "--sample", "2", "--problems", SPEC, "--limit", "2", "--policy", "embedded:policy"]
    argv += ["--k", "2", "--max-tokens", "30", "--consensus", "mark"]
    assert main([*argv, "--output", str(out), "--quiet"]) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert rows and all(len(r["labels"]) == len(r["completions"]) for r in rows)
    # gsm_symbolic's solutions state their arithmetic: the arithmetic check gives its second opinion
    assert all(r["consensus"]["status"] != "unchecked" for r in rows)


def test_only_word_problems_get_the_arithmetic_check():
    task = get_task("reasoning-gym")
    (word,) = load_problems(SPEC, limit=1)
    (puzzle,) = load_problems("reasoning-gym:leg_counting?seed=1", limit=1)
    assert task.states_arithmetic(word) and not task.states_arithmetic(puzzle)


def test_without_the_package_one_line_says_how(monkeypatch, capsys, tmp_path):
    monkeypatch.setitem(sys.modules, "reasoning_gym", None)  # as if it were not installed
    assert main(["search", "--policy", "embedded:policy", "--dataset", SPEC, "--strategy", "greedy"]
                + ["--output", str(tmp_path / "run"), "--quiet"]) == 2  # fmt: skip
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].endswith("reasoning-gym tasks need the reasoning-gym package: pip install 'prmsearch[gym]'")
