"""A new kind of problem is one file and its registry lines: this file adds a task that exists only here (reverse a
word, graded by exact match), registers it the way `prmsearch/tasks/__init__.py` registers math and code, and runs
it through everything that takes a task: loading by name, `prmsearch search` (grading, voting), `prmsearch label`
(rollouts graded by the task), a TRL reward function and `rerank`. Nothing else in the package knows it."""

from __future__ import annotations

import json
from collections.abc import Sequence

import pandas as pd
import pytest

from prmsearch import tasks
from prmsearch.records import Grade, Problem, Trace
from prmsearch.search.generators import Completion

WORDS = ["stone", "river", "cloud", "ember"]


class ReverseTask:
    """Reverse a word, one letter a step, then "Answer: <word>"; right when the answer is the reversed word."""

    name = "reverse"
    needs = "reversed word"
    system_prompt = None
    indented = False

    def states_arithmetic(self, problem: Problem) -> bool:
        return False

    def plain_prompt(self, problem: Problem) -> str:
        return problem.prompt + "\n\n"

    def separator(self, separator: str) -> str:
        return separator

    def split(self, text, fmt) -> list[str]:
        return fmt.split(text)

    def clean_steps(self, steps: Sequence[str]) -> list[str]:
        return [s.strip() for s in steps if s.strip()]

    def step_text(self, text: str) -> str:
        return text.strip()

    def solution(self, problem, steps, separator, completion=None) -> str:
        return separator.join(s for s in [*steps, *([completion.strip()] if completion else [])] if s.strip())

    def gradable(self, problem: Problem) -> bool:
        return bool(problem.answer)

    def answers(self, solutions, *, timeout):
        return [s.rsplit("Answer:", 1)[1].strip().lower() if "Answer:" in s else None for s in solutions]

    def group(self, answer_lists, *, timeout):
        out = []
        for answers in answer_lists:
            ids = {a: g for g, a in enumerate(dict.fromkeys(a for a in answers if a))}
            out.append([ids.get(a) if a else None for a in answers])
        return out

    def grade(self, problems, solutions, checks) -> list[Grade]:
        out = []
        for problem, solution in zip(problems, solutions, strict=True):
            if solution is None:
                out.append(Grade(None, False, "no solution"))
                continue
            (answer,) = self.answers([solution], timeout=checks.timeout)
            out.append(Grade(answer, answer == problem.answer, "same" if answer == problem.answer else "different"))
        return out


def load_reverse(split: str | None, limit: int | None) -> list[Problem]:
    words = WORDS[:limit] if limit is not None else WORDS
    return [Problem(w, f"Reverse the word {w}.", w[::-1], {"task": "reverse"}) for w in words]


@pytest.fixture
def registered(monkeypatch):
    """The registry lines: `TASKS["reverse"] = ReverseTask()` and `DATASETS["reverse"] = load_reverse`."""
    monkeypatch.setitem(tasks.TASKS, "reverse", ReverseTask())
    monkeypatch.setitem(tasks.DATASETS, "reverse", load_reverse)


class Reverser:
    """A policy that reverses the word in its prompt, one letter a step; it slips on "cloud" (writes "dulco")."""

    tokenizer = None

    def generate(self, prompts, n=1, stop=None, max_tokens=256, temperature=1.0, top_p=1.0, seed=None):
        out = []
        for prompt in prompts:
            word = prompt.split("Reverse the word ", 1)[1].split(".", 1)[0]
            answer = "dulco" if word == "cloud" else word[::-1]
            done = prompt.count("\n\n") - 1  # steps already written after the prompt
            steps = [f"letter {i + 1}: {c}" for i, c in enumerate(answer)][max(done, 0) :]
            text = "\n\n".join([*steps, f"Answer: {answer}"])
            out.append([Completion(text, [0] * len(text.split()), "eos") for _ in range(n)])
        return out


def test_a_task_in_one_file_loads_by_name(registered):
    problems = tasks.load_problems("reverse", limit=3)
    assert [p.id for p in problems] == ["stone", "river", "cloud"]
    assert tasks.task_of(problems[0]).name == "reverse"


def test_search_grades_and_votes_with_the_new_task(registered, tmp_path):
    from prmsearch.search.runner import SearchConfig, search_dataset

    cfg = SearchConfig(
        policy="unused", dataset="reverse", output=str(tmp_path / "run"), strategy=["greedy", "majority"], n=[3],
        prompt_template="plain",
    )  # fmt: skip
    search_dataset(cfg, progress=False, generator=Reverser())
    rows = [json.loads(line) for line in (tmp_path / "run" / "results.jsonl").read_text().splitlines()]
    got = {(r["strategy"], r["problem_id"]): (r["answer"], r["correct"], r["grade_reason"]) for r in rows}
    for strategy in ("greedy", "majority"):
        assert got[strategy, "stone"] == ("enots", True, "same")
        assert got[strategy, "cloud"] == ("dulco", False, "different")
    assert len(rows) == 2 * len(WORDS)


def test_rollout_labels_are_graded_by_the_new_task(registered):
    from prmsearch.label import LabelConfig, label_traces

    steps = ["letter 1: e", "letter 2: n", "Answer: enots"]
    right = Trace("Reverse the word stone.", steps, meta={"task": "reverse", "gold": "enots"})
    wrong = Trace("Reverse the word cloud.", ["letter 1: d", "letter 2: u"], meta={"task": "reverse", "gold": "duolc"})
    result = label_traces([right, wrong], Reverser(), LabelConfig(method="mc", k=2, labels="soft"))
    labels = {r["prompt"]: (r["task"], r["labels"], r["outcome"]) for r in result.records}
    assert labels["Reverse the word stone."] == ("reverse", [1.0, 1.0, 1.0], True)
    assert labels["Reverse the word cloud."] == ("reverse", [0.0, 0.0], False)  # the policy's slip: never right


def test_reward_function_and_rerank_use_the_new_task(registered):
    from prmsearch.rewards import reward_function
    from prmsearch.search.rerank import rerank

    reward = reward_function("reverse")
    assert reward(["p", "p"], ["Answer: enots", "Answer: stone"], answer=["enots", "enots"]) == [1.0, 0.0]
    frame = pd.DataFrame({"problem_id": [0, 0, 0], "text": ["Answer: ab", "Answer: BA", "Answer: ba"]})
    assert rerank(frame, "majority", task="reverse").index.tolist() == [1]  # "BA" and "ba" are one answer


class SaysSeven:
    """A policy that answers 7 to everything."""

    tokenizer = None

    def generate(self, prompts, n=1, stop=None, max_tokens=256, temperature=1.0, top_p=1.0, seed=None):
        return [[Completion("The answer is 7.", [0, 1, 2], "eos") for _ in range(n)] for _ in prompts]


def test_a_readers_own_task_field_is_not_taken_for_a_task():
    """Math-Shepherd's traces carry meta {"task": "GSM8K"} (its source benchmark): they are labelled as math."""
    from prmsearch.label import LabelConfig, label_traces

    trace = Trace("What is 3 + 4?", ["3 + 4 = 7", "The answer is 7."], meta={"task": "GSM8K", "gold": "7"})
    (record,) = label_traces([trace], SaysSeven(), LabelConfig(method="mc", k=1)).records
    assert (record["task"], record["labels"], record["outcome"]) == ("math", [True, True], True)
