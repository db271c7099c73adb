"""Pairwise judging: which of two solutions is better, asked in both orders to cancel position bias.

A judge LM favours one position (often the first) more than it should. Every pair is therefore judged twice, as
(A=x, B=y) and (A=y, B=x), in one batched `generate` call; a verdict that follows the position rather than the
solution (it flips with the order) is a tie, and counted as a flip. An output with no parseable verdict makes the
pair invalid (counted; a tie for scoring). A problem's N candidates are compared pair by pair and one score per
candidate comes from a Bradley-Terry fit of the outcomes (`bradley_terry`), so the judge ranks candidates like a
reward model and plugs in where a scorer does (`score_solutions`: best-of-N, weighted best-of-N, rerank).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import combinations
from typing import Any

from ..scoring import ScoreCounts, SolutionScores
from ..steps import StepFormat
from .pointwise import chat_prompt, has_chat_template
from .verdicts import majority, parse_pairwise

PAIRWISE_TEMPLATE = (
    "You compare two solutions to a problem and say which one is better: correct, or closer to correct.\n\n"
    "Problem:\n{problem}\n\nSolution A:\n{a}\n\nSolution B:\n{b}\n\n"
    'Reply with one line, "Better: A" or "Better: B".'
)


@dataclass
class PairVerdict:
    """The outcome of one pair judged in both orders. `winner`: 0 (the first solution), 1 (the second), or None
    (a tie: the verdict flipped with the order, or an output was invalid)."""

    winner: int | None
    flipped: bool = False
    invalid: bool = False
    outputs: tuple[list[str], list[str]] = field(default_factory=lambda: ([], []))


def bradley_terry(
    n: int, outcomes: Sequence[tuple[int, int, float]], *, prior: float = 0.5, iters: int = 200
) -> list[float]:
    """Bradley-Terry strengths of `n` candidates from (i, j, score of i against j) outcomes (1 win, 0 loss, 0.5 a
    tie), by Hunter's MM updates. Each candidate also plays `prior` virtual games (won half) against a reference of
    strength 1, so an unbeaten candidate still gets a finite strength. Returns log-strengths centred on 0."""
    wins = [prior / 2] * n
    games: dict[tuple[int, int], float] = {}
    for i, j, s in outcomes:
        wins[i] += s
        wins[j] += 1 - s
        games[i, j] = games.get((i, j), 0) + 1
    p = [1.0] * n
    for _ in range(iters):
        denom = [prior / (p[i] + 1.0) for i in range(n)]
        for (i, j), g in games.items():
            denom[i] += g / (p[i] + p[j])
            denom[j] += g / (p[i] + p[j])
        new = [wins[i] / denom[i] for i in range(n)]
        done = max(abs(a - b) for a, b in zip(new, p, strict=True)) < 1e-10 if n else True
        p = new
        if done:
            break
    logs = [math.log(x) for x in p]
    mean = sum(logs) / n if n else 0.0
    return [x - mean for x in logs]


class PairwiseJudge:
    """A causal LM judging pairs of solutions through a `Generator` (`HFGenerator`, `VLLMGenerator`). `template`
    has {problem}, {a} and {b}; with `samples` > 1 (and a temperature) each order's verdict is the majority of that
    many samples. `stats` counts pairs, invalid verdicts and flips over the judge's life."""

    kind = "judge"

    def __init__(
        self,
        generator: Any,
        *,
        template: str = PAIRWISE_TEMPLATE,
        max_tokens: int = 32,
        temperature: float = 0.0,
        samples: int = 1,
        chat: bool | None = None,
        prefill: str = "Better:",
        step_format: StepFormat | None = None,
        seed: int = 0,
    ) -> None:
        if samples < 1:
            raise ValueError(f"samples must be at least 1, got {samples}")
        if samples > 1 and temperature == 0:
            raise ValueError("a majority over samples needs temperature > 0 (at 0 every sample is the same)")
        self.generator, self.template, self.max_tokens = generator, template, max_tokens
        self.temperature, self.samples, self.seed = temperature, samples, seed
        self.chat, self.prefill = (has_chat_template(generator) if chat is None else chat), prefill
        self.format = step_format or StepFormat()
        self.stats: dict[str, Any] = {"pairs": 0, "invalid": 0, "flips": 0, "generated_tokens": 0, "seconds": 0.0}

    def prompt(self, problem: str, a: str, b: str) -> str:
        return chat_prompt(self.generator, self.template.format(problem=problem, a=a, b=b), self.chat, self.prefill)

    def compare(self, problems: Sequence[str], firsts: Sequence[str], seconds: Sequence[str]) -> list[PairVerdict]:
        """Judge every (problem, first, second) in both orders, all in one `generate` call."""
        if not len(problems) == len(firsts) == len(seconds):
            raise ValueError(f"{len(problems)} problems, {len(firsts)} firsts and {len(seconds)} seconds")
        prompts = []
        for p, x, y in zip(problems, firsts, seconds, strict=True):
            prompts += [self.prompt(p, x, y), self.prompt(p, y, x)]
        outs = self.generator.generate(
            prompts, n=self.samples, max_tokens=self.max_tokens, temperature=self.temperature, seed=self.seed
        )
        verdicts = []
        for k in range(len(problems)):
            forward, backward = outs[2 * k], outs[2 * k + 1]
            self.stats["generated_tokens"] += sum(c.num_tokens for c in (*forward, *backward))
            v1 = majority([parse_pairwise(self.prefill + c.text) for c in forward])  # "A": the first solution
            v2 = majority([parse_pairwise(self.prefill + c.text) for c in backward])  # "A": the second solution
            texts = ([c.text for c in forward], [c.text for c in backward])
            self.stats["pairs"] += 1
            if v1 is None or v2 is None:
                self.stats["invalid"] += 1
                verdicts.append(PairVerdict(None, invalid=True, outputs=texts))
            elif v1 == v2:  # the same position both times: the solution did not matter
                self.stats["flips"] += 1
                verdicts.append(PairVerdict(None, flipped=True, outputs=texts))
            else:
                verdicts.append(PairVerdict(0 if v1 == "A" else 1, outputs=texts))
        return verdicts

    def rank(self, problems: Sequence[str], candidates: Sequence[Sequence[str]]) -> list[list[float]]:
        """Every pair of each problem's candidates judged (in both orders) in one batch; returns each candidate's
        Bradley-Terry log-strength, centred on 0 within its problem."""
        jobs = [(k, i, j) for k, cands in enumerate(candidates) for i, j in combinations(range(len(cands)), 2)]
        verdicts = self.compare(
            [problems[k] for k, _, _ in jobs],
            [candidates[k][i] for k, i, _ in jobs],
            [candidates[k][j] for k, _, j in jobs],
        )
        outcomes: list[list[tuple[int, int, float]]] = [[] for _ in candidates]
        for (k, i, j), v in zip(jobs, verdicts, strict=True):
            outcomes[k].append((i, j, 0.5 if v.winner is None else 1.0 - v.winner))
        return [bradley_terry(len(c), o) if c else [] for c, o in zip(candidates, outcomes, strict=True)]

    def score_solutions(self, prompts: Sequence[str], solutions: Sequence[Sequence[str]]) -> SolutionScores:
        """The search `Scorer` contract: solutions of the same prompt are ranked against each other, and each gets
        sigmoid(its BT log-strength), in (0, 1), so weighted best-of-N can sum them. A solution with no steps, or
        alone with its prompt, is not judged (None, and 0.5 when alone)."""
        groups: dict[str, list[int]] = {}
        for i, s in enumerate(solutions):
            if any(step.strip() for step in s):
                groups.setdefault(prompts[i], []).append(i)
        scores: list[float | None] = [None] * len(prompts)
        order = list(groups)
        texts = [[self.format.join(list(solutions[i])) for i in groups[p]] for p in order]
        for members, strengths in zip((groups[p] for p in order), self.rank(order, texts), strict=True):
            for i, theta in zip(members, strengths, strict=True):
                scores[i] = 1.0 / (1.0 + math.exp(-theta))
        counts = ScoreCounts([0] * len(prompts), [set() for _ in prompts])
        return SolutionScores(scores, [[] for _ in prompts], counts)
