"""The bundled task: chained arithmetic, procedural and verifiable, for the embedded default.

A problem is an expression evaluated from left to right ("Compute 37 + 25 - 14 from left to right."); its worked
solution applies one operation a step to the value so far ("37 + 25 = 62", "62 - 14 = 48") and ends with
"The answer is 48.". Each step takes its left operand from the step before it and its right operand from the
problem, so a slip in one step (a dropped carry, an operand misread) is local to that step and carries, unrepaired,
into the final answer: the shape of error a process reward model is meant to catch, one a tiny policy really makes,
and one Monte Carlo rollouts label faithfully (a rollout from a wrong value cannot come back to the right one
except by a second, cancelling slip).

Difficulty is a `ChainSpec` (number of operations, operand sizes, the operations allowed, the largest value).
Splits are fixed and disjoint: a problem's split is a hash of its text, so the same generator can never put one
problem in both, whatever the seed. `step_correct` gives the true label of every step of any written solution, so
automatic (rollout) labels and trained PRMs can be measured against the truth.
"""

from __future__ import annotations

import hashlib
import random
import re
from collections.abc import Iterator
from dataclasses import asdict, dataclass

from ..records import Problem

SEPARATOR = "\n\n"
_STEP = re.compile(r"^(\d+) ([+\-*]) (\d+) = (-?\d+)$")
_FINAL = re.compile(r"^\s*The answer is (-?\d+)\.?\s*$")
SPLITS = ("train", "test")
TEST_SIZE = 500  # problems in the named test set (`load_problems("chains")`)


@dataclass(frozen=True)
class ChainSpec:
    """How hard the problems are."""

    min_ops: int = 3  # operations per problem, at least
    max_ops: int = 4  # operations per problem, at most
    max_start: int = 30  # the start value is drawn from 2..max_start
    max_operand: int = 9  # operands of + and - are drawn from 2..max_operand
    max_factor: int = 3  # factors of * are drawn from 2..max_factor
    max_value: int = 60  # no intermediate value leaves [0, max_value]
    ops: str = "+-"  # the operations allowed
    test_fraction: float = 0.1  # the share of all problem texts that belongs to the test split

    def to_dict(self) -> dict:
        return asdict(self)


def split_of(prompt: str, spec: ChainSpec) -> str:
    """The split a problem belongs to, fixed by its text alone."""
    h = int.from_bytes(hashlib.blake2b(prompt.encode(), digest_size=8).digest(), "little")
    return "test" if (h % 10_000) < spec.test_fraction * 10_000 else "train"


def _chain(rng: random.Random, spec: ChainSpec) -> tuple[int, list[tuple[str, int]]]:
    start = rng.randint(2, spec.max_start)
    value, ops = start, []
    for _ in range(rng.randint(spec.min_ops, spec.max_ops)):
        choices = []
        for op in spec.ops:
            if op == "+" and value + 2 <= spec.max_value:
                choices.append((op, rng.randint(2, min(spec.max_operand, spec.max_value - value))))
            elif op == "-" and value - 2 >= 0:
                choices.append((op, rng.randint(2, min(spec.max_operand, value))))
            elif op == "*" and value * 2 <= spec.max_value and value > 1:
                choices.append((op, rng.randint(2, min(spec.max_factor, spec.max_value // value))))
        op, x = rng.choice(choices)
        value = apply(value, op, x)
        ops.append((op, x))
    return start, ops


def apply(value: int, op: str, x: int) -> int:
    return value + x if op == "+" else value - x if op == "-" else value * x


def expression(start: int, ops: list[tuple[str, int]]) -> str:
    return " ".join([str(start), *(f"{op} {x}" for op, x in ops)])


def prompt_text(start: int, ops: list[tuple[str, int]]) -> str:
    return f"Compute {expression(start, ops)} from left to right."


def worked_steps(start: int, ops: list[tuple[str, int]]) -> list[str]:
    """The correct solution: one operation a step, then the answer."""
    steps, value = [], start
    for op, x in ops:
        new = apply(value, op, x)
        steps.append(f"{value} {op} {x} = {new}")
        value = new
    return [*steps, f"The answer is {value}."]


def generate(split: str, count: int, *, spec: ChainSpec = ChainSpec(), seed: int = 0) -> list[Problem]:
    """`count` distinct problems of `split`, the same for the same (split, count, spec, seed). Ids are
    "chain-{split}-{index}"; meta holds the worked solution's steps and the chain, so any solution can be checked
    step by step (`step_correct`)."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    rng = random.Random(f"{seed}:{split}")
    seen: set[str] = set()
    out: list[Problem] = []
    tries = 0
    while len(out) < count:
        tries += 1
        if tries > 200 * count + 10_000:
            raise ValueError(f"cannot find {count} distinct {split} problems with {spec}; ask for fewer")
        start, ops = _chain(rng, spec)
        prompt = prompt_text(start, ops)
        if prompt in seen or split_of(prompt, spec) != split:
            continue
        seen.add(prompt)
        steps = worked_steps(start, ops)
        meta = {"task": "math", "start": start, "ops": [list(o) for o in ops], "steps": steps}
        out.append(Problem(f"chain-{split}-{len(out)}", prompt, str(apply_all(start, ops)), meta))
    return out


def apply_all(start: int, ops: list[tuple[str, int]]) -> int:
    value = start
    for op, x in ops:
        value = apply(value, op, x)
    return value


def step_correct(problem: Problem, steps: list[str]) -> list[bool]:
    """The true label of every step of a written solution: step i is right when it applies operation i of the
    chain to the right value and computes it exactly (or, once the operations are done, states the right answer).
    A step after a wrong one is wrong too (its value is off, or it copies a wrong value): once a step is wrong, the
    solution cannot reach the answer by right steps, which is what a PRM is asked to see."""
    value = int(problem.meta["start"])
    ops = [(op, int(x)) for op, x in problem.meta["ops"]]
    out: list[bool] = []
    ok = True
    for i, step in enumerate(steps):
        if ok and i < len(ops):
            m = _STEP.match(step.strip())
            op, x = ops[i]
            new = apply(value, op, x)
            ok = bool(m) and (int(m[1]), m[2], int(m[3]), int(m[4])) == (value, op, x, new)
            value = new
        elif ok:
            m = _FINAL.match(step)
            ok = i == len(ops) and bool(m) and int(m[1]) == value
        out.append(ok)
    return out


def first_error(problem: Problem, steps: list[str]) -> int:
    """Index of the first wrong step, or -1 (ProcessBench's convention)."""
    labels = step_correct(problem, steps)
    return labels.index(False) if False in labels else -1


def corpus(problems: list[Problem]) -> Iterator[str]:
    """Prompts and worked solutions: what the task's tokenizer is trained on."""
    for p in problems:
        yield p.prompt
        yield SEPARATOR.join(p.meta["steps"])


def write_problems(problems: list[Problem], path: str) -> None:
    """A problem file (`id`, `prompt`, `answer` per line) that `load_problems` and `prmsearch label --problems`
    read."""
    import json

    with open(path, "w", encoding="utf-8") as f:
        f.writelines(json.dumps({"id": p.id, "prompt": p.prompt, "answer": p.answer}) + "\n" for p in problems)


def load(split: str | None, limit: int | None) -> list[Problem]:
    """The named dataset "chains": the fixed test set of `TEST_SIZE` problems, or split "train" (10,000 unless
    `limit` says otherwise). Its problems are math problems: graded by their answer."""
    split = split or "test"
    if split not in SPLITS:
        raise ValueError(f"the chains task has splits {SPLITS}; got split={split!r}")
    if split == "test":
        return generate("test", min(TEST_SIZE, TEST_SIZE if limit is None else limit))
    return generate("train", 10_000 if limit is None else limit)


DATASETS = {"chains": load}
