"""A public PRM (Qwen2.5-Math-PRM, Math-Shepherd, RLHFlow: `prmsearch.models.adapters`) as the step scorer of a
search: `prmsearch search --scorer Qwen/Qwen2.5-Math-PRM-7B --scorer-adapter qwen2.5-math-prm`.

These models read steps inside their own chat or text layout, which puts template text after the newest step (the
end of the assistant turn, the next "+" turn), so a step cannot be fed on top of its prefix's cache the way
`StepScorer` feeds our own format. Every score call re-feeds prompt + all steps of each path, one forward pass per
path: full re-scoring, as search-and-learn does with these models. The key tree (keys, release) is the same
`KeyTree` `StepScorer` keeps, here holding each step's text, so search drives both alike.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from ..models.adapters import PRMAdapter
from ..scoring import DEFAULT_STEP_AGGREGATION, Key, ScoreCounts, ScorerError, SolutionScores, aggregate_steps
from .keytree import KeyTree


class AdapterScorer:
    """Step scores from a `PRMAdapter`. A step the adapter does not score (whitespace only) takes the score of the
    step before it in its path, or 0 if it is the first."""

    def __init__(self, adapter: PRMAdapter, *, agg: str | None = None, batch_size: int = 16) -> None:
        self.steps: KeyTree[str] = KeyTree(error=ScorerError)  # a root holds its prompt, a step its text
        self.adapter, self.agg, self.batch_size = adapter, agg or DEFAULT_STEP_AGGREGATION, batch_size
        self.format = adapter.step_format
        self.stats = {"scored_tokens": 0, "forward_passes": 0, "evicted_tokens": 0, "seconds": 0.0}

    @property
    def kind(self) -> str:
        return "prm"

    def add_prompt(self, key: Key, prompt: str) -> None:
        self.steps.add(key, None, prompt)

    def release(self, keys: Sequence[Key]) -> None:
        self.steps.release(keys)

    def score(self, requests: Sequence[tuple[Key, Sequence[tuple[Key, str]]]]) -> tuple[list[list[float]], ScoreCounts]:
        """Same contract as `StepScorer.score`: add the steps of each request under its parent key and return
        P(correct) of every new step."""
        targets = []
        for parent_key, steps in requests:
            if not steps:
                raise ScorerError(f"a request under {parent_key!r} has no steps")
            key = parent_key
            for new_key, text in steps:
                self.steps.add(new_key, key, text)
                key = new_key
            targets.append(key)
        chains = [self.steps.chain(key) for key in targets]
        got, counts = self._score([c[0] for c in chains], [c[1:] for c in chains])
        return [path[len(path) - len(steps) :] for path, (_, steps) in zip(got, requests, strict=True)], counts

    def score_solutions(self, prompts: Sequence[str], solutions: Sequence[Sequence[str]]) -> SolutionScores:
        scores: list[float | None] = [None] * len(prompts)
        step_scores: list[list[float]] = [[] for _ in prompts]
        counts = ScoreCounts([0] * len(prompts), [set() for _ in prompts])
        which = [i for i, steps in enumerate(solutions) if steps]
        if which:
            got, c = self._score([prompts[i] for i in which], [list(solutions[i]) for i in which])
            for k, i in enumerate(which):
                step_scores[i], scores[i] = got[k], aggregate_steps(got[k], self.agg)
                counts.tokens[i], counts.passes[i] = c.tokens[k], c.passes[k]
        return SolutionScores(scores, step_scores, counts)

    def _score(self, prompts: list[str], solutions: list[list[str]]) -> tuple[list[list[float]], ScoreCounts]:
        """Every step's score, for whole paths, in `batch_size` paths per forward pass."""
        started = time.perf_counter()
        encoded = [self.adapter.encode(p, steps) for p, steps in zip(prompts, solutions, strict=True)]
        probs = self.adapter.score_encoded(encoded, batch_size=self.batch_size)
        out = []
        for e, p, steps in zip(encoded, probs, solutions, strict=True):
            by_step, last, path = dict(zip(e.kept, p, strict=True)), 0.0, []
            for i in range(len(steps)):
                last = by_step.get(i, last)
                path.append(last)
            out.append(path)
        first = self.stats["forward_passes"]
        counts = ScoreCounts(
            [len(e.input_ids) for e in encoded], [{first + i // self.batch_size} for i in range(len(encoded))]
        )
        self.stats["forward_passes"] += -(-len(encoded) // self.batch_size)
        self.stats["scored_tokens"] += sum(counts.tokens)
        self.stats["seconds"] += time.perf_counter() - started
        return out, counts
