"""The step-level critic (ProcessBench's protocol): a judge LM is shown a solution's steps, numbered, and names the
earliest wrong one, or none. That verdict becomes step scores a PRM's consumers use: 1.0 for the steps before the
named one, 0.0 from it on, 1.0 everywhere for "none".

It is a step scorer wherever a PRM is one: `score_steps_batch` (ProcessBench-style evaluation), `score_solutions`
(best-of-N: the min over steps), and the search tree's contract (`add_prompt` / `score` / `release`), so beam search,
DVTS and MCTS can be steered by it: a new step is judged with the path above it, and scores 0.0 when the critic
names any step of that path. An output with no parseable verdict is invalid: counted in `stats["invalid"]`, and
its steps score `invalid_score` (0.5: no opinion), never 1.0.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..scoring import ScoreCounts, SolutionScores, aggregate_steps
from ..steps import StepFormat
from .pointwise import chat_prompt, has_chat_template
from .verdicts import parse_critic

CRITIC_TEMPLATE = (
    "You check a solution to a problem step by step.\n\nProblem:\n{problem}\n\nSolution:\n{steps}\n\n"
    "Which step is the earliest wrong one? Reply with one line, "
    '"Earliest wrong step: N" (its number), or "Earliest wrong step: none" if every step is right.'
)


class CriticJudge:
    """A step critic through a `Generator`; `template` has {problem} and {steps} (numbered "Step 1: ...")."""

    kind = "prm"

    def __init__(
        self,
        generator: Any,
        *,
        template: str = CRITIC_TEMPLATE,
        max_tokens: int = 24,
        invalid_score: float = 0.5,
        chat: bool | None = None,
        prefill: str = "Earliest wrong step:",
        step_format: StepFormat | None = None,
        agg: str = "min",
        seed: int = 0,
    ) -> None:
        self.generator, self.template, self.max_tokens = generator, template, max_tokens
        self.invalid_score, self.agg, self.seed = invalid_score, agg, seed
        self.chat, self.prefill = (has_chat_template(generator) if chat is None else chat), prefill
        self.format = step_format or StepFormat()
        self.paths: dict[Any, tuple[str, list[str]]] = {}  # search key -> (problem, steps so far)
        self.stats: dict[str, Any] = {"verdicts": 0, "invalid": 0, "generated_tokens": 0, "seconds": 0.0}

    def first_errors(self, problems: Sequence[str], steps: Sequence[Sequence[str]]) -> list[int | None]:
        """The earliest wrong step of each solution (0-based, -1: none, None: invalid verdict), one generate call."""
        prompts = []
        for problem, these in zip(problems, steps, strict=True):
            numbered = "\n".join(f"Step {i + 1}: {s}" for i, s in enumerate(these))
            prompts.append(
                chat_prompt(
                    self.generator, self.template.format(problem=problem, steps=numbered), self.chat, self.prefill
                )
            )
        outs = self.generator.generate(prompts, n=1, max_tokens=self.max_tokens, temperature=0.0, seed=self.seed)
        found = []
        for (c,), these in zip(outs, steps, strict=True):
            self.stats["generated_tokens"] += c.num_tokens
            verdict = parse_critic(self.prefill + c.text, len(these))
            self.stats["verdicts"] += 1
            self.stats["invalid"] += verdict is None
            found.append(verdict)
        return found

    def step_scores(self, first: int | None, steps: int) -> list[float]:
        if first is None:
            return [self.invalid_score] * steps
        return [1.0 if first < 0 or i < first else 0.0 for i in range(steps)]

    def score_steps_batch(
        self, prompts: Sequence[str], steps: Sequence[Sequence[str]], batch_size: int = 8
    ) -> list[list[float]]:
        firsts = self.first_errors(prompts, steps)
        return [self.step_scores(f, len(s)) for f, s in zip(firsts, steps, strict=True)]

    def score_solutions(self, prompts: Sequence[str], solutions: Sequence[Sequence[str]]) -> SolutionScores:
        which = [i for i, s in enumerate(solutions) if s]
        got = self.score_steps_batch([prompts[i] for i in which], [list(solutions[i]) for i in which])
        scores: list[float | None] = [None] * len(prompts)
        step_scores: list[list[float]] = [[] for _ in prompts]
        for i, s in zip(which, got, strict=True):
            step_scores[i], scores[i] = s, aggregate_steps(s, self.agg)
        return SolutionScores(scores, step_scores, ScoreCounts([0] * len(prompts), [set() for _ in prompts]))

    # ---- the search tree's contract (TreeScorer) ------------------------------------------------------------------

    def add_prompt(self, key: Any, prompt: str) -> None:
        self.paths[key] = (prompt, [])

    def score(self, requests: Sequence[tuple[Any, Sequence[tuple[Any, str]]]]) -> tuple[list[list[float]], ScoreCounts]:
        """Each new step judged with its path: 1.0 when the critic finds no wrong step, 0.0 when it names one."""
        flat = []
        for parent, children in requests:
            problem, above = self.paths[parent]
            for key, text in children:
                self.paths[key] = (problem, [*above, text])
                flat.append(self.paths[key])
        firsts = self.first_errors([p for p, _ in flat], [s for _, s in flat])
        values = iter(
            [
                self.step_scores(f, len(s))[-1] if s else self.invalid_score
                for f, (_, s) in zip(firsts, flat, strict=True)
            ]
        )
        out = [[next(values) for _ in children] for _, children in requests]
        return out, ScoreCounts([0] * len(requests), [set() for _ in requests])

    def release(self, keys: Sequence[Any]) -> None:
        for key in keys:
            self.paths.pop(key, None)
