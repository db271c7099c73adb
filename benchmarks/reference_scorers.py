"""Two step scorers whose ProcessBench figures are known in advance, to check the metric and the readers rather than
a model: `eval.processbench` rows in `processbench_champ.py`, and its tests."""

from __future__ import annotations

from collections.abc import Sequence

from prmsearch.eval.processbench import Annotated


class Oracle:
    """A step scorer that knows the annotations of `items`: 1.0 before a solution's first error, 0.0 from it on. It
    scores F1 100 by construction, so it checks the metric and the reader, not a model."""

    def __init__(self, items: Sequence[Annotated]) -> None:
        self.gold = {(a.problem, tuple(a.steps)): a.first_error for a in items}

    def score_steps_batch(
        self, prompts: Sequence[str], steps: Sequence[Sequence[str]], batch_size: int = 8
    ) -> list[list[float]]:
        scores = []
        for p, s in zip(prompts, steps, strict=True):
            g = self.gold[(p, tuple(s))]
            scores.append([1.0 if g < 0 or i < g else 0.0 for i in range(len(s))])
        return scores


class Constant:
    """A step scorer that gives every step `value`: above the threshold it flags nothing (right on correct solutions
    only), below it flags every first step; either way F1 is 0."""

    def __init__(self, value: float) -> None:
        self.value = value

    def score_steps_batch(
        self, prompts: Sequence[str], steps: Sequence[Sequence[str]], batch_size: int = 8
    ) -> list[list[float]]:
        return [[self.value] * len(s) for s in steps]
