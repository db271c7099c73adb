"""Pointwise judging: a causal LM reads one solution and gives a verdict (correct / incorrect, or a 1-10 rating),
parsed into a score in [0, 1]. It is a search `Scorer` of whole solutions (best-of-N, weighted best-of-N, rerank).

An output with no parseable verdict is invalid: counted in `stats["invalid"]` and scored `invalid_score` (0.5 by
default: no opinion), never read as "correct". With `samples` > 1 at a temperature, the score is the mean over the
valid samples.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..scoring import ScoreCounts, SolutionScores
from ..steps import StepFormat
from .verdicts import parse_pointwise

POINTWISE_TEMPLATE = (
    "You check a solution to a problem.\n\nProblem:\n{problem}\n\nSolution:\n{solution}\n\n"
    'Is the solution correct? Reply with one line, "Verdict: correct" or "Verdict: incorrect".'
)
RATING_TEMPLATE = (
    "You grade a solution to a problem.\n\nProblem:\n{problem}\n\nSolution:\n{solution}\n\n"
    'How good is the solution, from 1 (wrong) to 10 (correct and clear)? Reply with one line, "Rating: N".'
)


def chat_prompt(generator: Any, text: str, chat: bool, prefill: str = "") -> str:
    """`text` as the user turn of the judge's chat template (with the assistant turn opened), or as it is; then
    `prefill`, the start of the answer ("Verdict:"), which the judge continues. A small judge that would answer in
    its own words ("The solution is correct.") mostly completes a prefilled verdict line instead; the parser reads
    prefill + output, so a continuation that is not a verdict is still invalid."""
    if chat:
        messages = [{"role": "user", "content": text}]
        text = generator.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return text + prefill


def has_chat_template(generator: Any) -> bool:
    return bool(getattr(getattr(generator, "tokenizer", None), "chat_template", None))


class PointwiseJudge:
    """A judge LM through a `Generator`. `scale`: "verdict" or "rating"; `template` has {problem} and {solution}."""

    kind = "judge"

    def __init__(
        self,
        generator: Any,
        *,
        scale: str = "verdict",
        template: str | None = None,
        max_tokens: int = 32,
        temperature: float = 0.0,
        samples: int = 1,
        invalid_score: float = 0.5,
        chat: bool | None = None,
        prefill: str | None = None,
        step_format: StepFormat | None = None,
        seed: int = 0,
    ) -> None:
        if scale not in ("verdict", "rating"):
            raise ValueError(f"scale must be 'verdict' or 'rating', got {scale!r}")
        if samples < 1 or (samples > 1 and temperature == 0):
            raise ValueError("samples must be at least 1, and more than 1 needs temperature > 0")
        self.generator, self.scale = generator, scale
        self.template = template or (POINTWISE_TEMPLATE if scale == "verdict" else RATING_TEMPLATE)
        self.max_tokens, self.temperature, self.samples, self.seed = max_tokens, temperature, samples, seed
        self.invalid_score = invalid_score
        self.prefill = ("Verdict:" if scale == "verdict" else "Rating:") if prefill is None else prefill
        self.chat = has_chat_template(generator) if chat is None else chat
        self.format = step_format or StepFormat()
        self.stats: dict[str, Any] = {"verdicts": 0, "invalid": 0, "generated_tokens": 0, "seconds": 0.0}

    def judge(self, problems: Sequence[str], solutions: Sequence[str]) -> list[float | None]:
        """One score per (problem, solution); None where no sample gave a valid verdict (counted as invalid)."""
        prompts = [
            chat_prompt(self.generator, self.template.format(problem=p, solution=s), self.chat, self.prefill)
            for p, s in zip(problems, solutions, strict=True)
        ]
        outs = self.generator.generate(
            prompts, n=self.samples, max_tokens=self.max_tokens, temperature=self.temperature, seed=self.seed
        )
        scores: list[float | None] = []
        for completions in outs:
            self.stats["generated_tokens"] += sum(c.num_tokens for c in completions)
            parsed = [parse_pointwise(self.prefill + c.text, self.scale) for c in completions]
            valid = [v for v in parsed if v is not None]
            self.stats["verdicts"] += 1
            self.stats["invalid"] += not valid
            scores.append(sum(valid) / len(valid) if valid else None)
        return scores

    def score_solutions(self, prompts: Sequence[str], solutions: Sequence[Sequence[str]]) -> SolutionScores:
        """The search `Scorer` contract; an invalid verdict scores `invalid_score`, a solution with no steps None."""
        which = [i for i, s in enumerate(solutions) if any(step.strip() for step in s)]
        got = self.judge([prompts[i] for i in which], [self.format.join(list(solutions[i])) for i in which])
        scores: list[float | None] = [None] * len(prompts)
        for i, s in zip(which, got, strict=True):
            scores[i] = self.invalid_score if s is None else s
        counts = ScoreCounts([0] * len(prompts), [set() for _ in prompts])
        return SolutionScores(scores, [[] for _ in prompts], counts)
