"""`MemoGenerator`: a `Generator` that remembers the samples it has drawn, so runs that draw the same samples pay
for them once.

Sample j of a prompt is fixed by (prompt, seed, j) and the sampling settings (the `Generator` contract), and
majority, best-of-N and weighted best-of-N at one seed judge the very same samples, as the N=4 run judges the first
4 of the N=16 run's. Run side by side (`prmsearch quickstart`, a sweep over strategies and N), those samples would be
generated again for every strategy and every N; through this wrapper they are generated once, and every later
request is served from memory, bit for bit what the backend would have returned. Token counts are the completions'
own, so each strategy is still charged the compute it would cost alone. Requests without a seed are never cached.
With a `SampleStore` the samples also outlive the process: read from it before the backend is asked, written to it
when drawn (`samples.py`).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

from .generators import Completion, Generator, Seeds, prompt_seeds
from .samples import SampleStore, sample_key


class MemoGenerator:
    """Wraps `generator`; keeps up to `max_prompts` (prompt, seed, settings) entries, least recently used first
    out. `hits` and `misses` count prompts served from memory (or the store) and prompts sent to the backend, `drawn`
    the samples the backend generated, `stored` the prompts served from the store."""

    def __init__(self, generator: Generator, *, max_prompts: int = 100_000, store: SampleStore | None = None) -> None:
        self.generator, self.max_prompts, self.store = generator, max_prompts, store
        self.tokenizer = generator.tokenizer
        self._memory: OrderedDict[tuple, list[Completion]] = OrderedDict()
        self.hits = self.misses = self.drawn = self.stored = 0

    def generate(
        self,
        prompts: Sequence[str],
        n: int = 1,
        stop: Sequence[str] | None = None,
        max_tokens: int = 256,
        temperature: float = 1.0,
        top_p: float = 1.0,
        seed: Seeds = None,
    ) -> list[list[Completion]]:
        if seed is None:
            return self.generator.generate(prompts, n, stop, max_tokens, temperature, top_p, None)
        seeds = prompt_seeds(seed, len(prompts))
        settings = (tuple(stop or ()), max_tokens, temperature, top_p)
        keys = [(p, s, settings) for p, s in zip(prompts, seeds, strict=True)]
        todo = [i for i, k in enumerate(keys) if len(self._memory.get(k, ())) < n]
        if self.store is not None:
            for i in todo:
                kept = self.store.get(sample_key(*keys[i]), n)
                if kept is not None:
                    self._memory[keys[i]] = kept
                    self.stored += 1
            todo = [i for i in todo if len(self._memory.get(keys[i], ())) < n]
        self.hits += len(prompts) - len(todo)
        self.misses += len(todo)
        if todo:
            fresh = self.generator.generate(
                [prompts[i] for i in todo], n, stop, max_tokens, temperature, top_p, [seeds[i] for i in todo]
            )
            for i, completions in zip(todo, fresh, strict=True):
                self._memory[keys[i]] = completions
                self.drawn += len(completions)
            if self.store is not None:
                self.store.put(
                    [(sample_key(*keys[i]), completions) for i, completions in zip(todo, fresh, strict=True)]
                )
        out = []
        for k in keys:
            self._memory.move_to_end(k)
            out.append(self._memory[k][:n])
        while len(self._memory) > self.max_prompts:
            self._memory.popitem(last=False)
        return out

    def __getattr__(self, name: str) -> Any:
        return getattr(self.generator, name)  # device, model, batch_size... of the wrapped backend
