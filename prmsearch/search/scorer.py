"""Scorers: reward models as search sees them.

`StepScorer` is the incremental PRM scorer. Search scores the newest step of many partial solutions at every depth;
re-feeding each whole prefix (what the anchors do) makes a depth-d step cost d steps of compute. Here every step is
an entry holding the key/value cache of its own tokens only, chained to its parent, so the cache of a prefix is the
chain's concatenation: a step's tokens go through the model once in the whole search, siblings share their
ancestors' memory, and a pruned branch frees exactly what it added. A memory cap evicts least recently used caches;
an entry that lost its cache (or any entry after it in a chain) is recomputed from the last cached ancestor, so the
cap changes speed, never scores. `full_rescore=True` computes every chain from the prompt each time: the baseline.

Token ids come from `StepFormat.prompt_ids` / `step_ids`, whose concatenation is exactly `StepFormat.encode`, so a
step scored here gets the score `RewardModel.score_steps` gives it (same ids, same positions; to float rounding).

`OutcomeScorer` scores whole solutions with an ORM or BT model. Both count scored tokens and forward passes.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from ..models.heads import HEADS
from ..models.reward_model import RewardModel
from ..scoring import DEFAULT_STEP_AGGREGATION, Key, ScoreCounts, ScorerError, SolutionScores, aggregate_steps
from . import kv
from .keytree import KeyTree


@dataclass
class Step:
    """What `StepScorer` keeps per key: the step's token ids and position, its key/value states and its score."""

    ids: list[int]
    start: int = 0  # position of this step's first token
    kv: list[tuple[torch.Tensor, torch.Tensor]] | None = None  # per layer, [heads, len, dim]
    last: torch.Tensor | None = None  # likelihood head: the hidden state at the last token, which predicts the next
    score: float | None = None
    used: int = 0


class StepScorer:
    """Incremental PRM scoring over a tree of keyed steps. Keys are any hashables the caller picks (the search uses
    (tree, node) pairs); `add_prompt` makes a root, `score` adds steps under existing keys and scores them."""

    def __init__(
        self,
        rm: RewardModel,
        *,
        full_rescore: bool = False,
        max_cache_tokens: int = 2_000_000,
        max_batch_tokens: int = 16_384,
        agg: str | None = None,
    ) -> None:
        if rm.kind != "prm":
            raise ScorerError(f"StepScorer needs a PRM, got a {rm.kind.upper()} model: use OutcomeScorer")
        # A head that is not incremental (the implicit PRM reads every token's probability under two LMs) scores each
        # path from its start. An incremental head that reads the LM (the likelihood PRM) predicts a step's first
        # token by its parent's last hidden state, which the parent's entry keeps.
        head = HEADS[rm.head]
        self.whole_paths, self.reads_lm = not head.incremental, head.reads_lm
        self.rm, self.full_rescore = rm.eval(), full_rescore or self.whole_paths
        self.agg = agg or rm.step_aggregation or DEFAULT_STEP_AGGREGATION  # the caller's, else the model's
        self.max_cache_tokens, self.max_batch_tokens = max_cache_tokens, max_batch_tokens
        self.format, self.tokenizer = rm.step_format, rm.tokenizer
        self.steps: KeyTree[Step] = KeyTree(on_drop=self._uncache, error=ScorerError)
        self.cached_tokens = 0
        self.stats = {"scored_tokens": 0, "forward_passes": 0, "evicted_tokens": 0, "seconds": 0.0}
        self._clock = itertools.count(1)
        self._temp = itertools.count()
        self._gap = len(self.format.step_ids(self.tokenizer, ["x"], first=False)[0]) - len(
            self.format.step_ids(self.tokenizer, ["x"], first=True)[0]
        )
        if self.reads_lm and not self.whole_paths:
            lm = rm.model.policy
            self._base, self._head = getattr(lm, lm.base_model_prefix), lm.get_output_embeddings()
            self._markers = torch.tensor(rm.model.marker_ids)
        elif not self.whole_paths:
            self._base, self._head = getattr(rm.model, rm.model.base_model_prefix), rm.model.score
        self._pad = rm.tokenizer.pad_token_id if rm.tokenizer.pad_token_id is not None else 0

    @property
    def kind(self) -> str:
        return "prm"

    # ---- the tree of steps ---------------------------------------------------------------------------------------

    def add_prompt(self, key: Key, prompt: str) -> None:
        self.steps.add(key, None, Step(self.format.prompt_ids(self.tokenizer, prompt)))

    def release(self, keys: Sequence[Key]) -> None:
        """See `KeyTree.release`: a released key's cache goes once nothing below it lives."""
        self.steps.release(keys)

    def _uncache(self, entry: Step) -> None:
        if entry.kv is not None:
            entry.kv = None
            self.cached_tokens -= len(entry.ids)

    # ---- scoring ---------------------------------------------------------------------------------------------------

    def score(
        self, requests: Sequence[tuple[Key, Sequence[tuple[Key, str]]]], *, keep: bool = True
    ) -> tuple[list[list[float]], ScoreCounts]:
        """Add and score steps. A request is (parent key, [(new key, step text), ...]): one new step in beam
        search, a whole solution in best-of-N. Returns P(correct) of every new step, request by request.
        `keep=False`: nothing will be added under the new steps, so their caches are not kept (ancestors that
        several requests share still are, for their siblings)."""
        started = time.perf_counter()
        targets = []
        for parent_key, steps in requests:
            if parent_key not in self.steps:
                raise ScorerError(f"unknown parent key {parent_key!r}")
            if not steps:
                raise ScorerError(f"a request under {parent_key!r} has no steps")
            texts = [text for _, text in steps]
            ids = self.format.step_ids(self.tokenizer, texts, first=False)
            if self.steps.is_root(parent_key):
                ids[0] = ids[0][self._gap :]
            targets.append(self._grow(parent_key, [(k, i) for (k, _), i in zip(steps, ids, strict=True)]))
        counts = self._compute(targets, keep)
        scores = [[self.steps[k].score for k, _ in steps] for _, steps in requests]
        self.stats["seconds"] += time.perf_counter() - started
        return scores, counts  # type: ignore[return-value]

    def _grow(self, key: Key, steps: Sequence[tuple[Key, list[int]]]) -> Key:
        """Add a chain of steps, (new key, token ids) each, under `key`; returns the last new key."""
        for new_key, ids in steps:
            parent = self.steps[key]
            self.steps.add(new_key, key, Step(ids, parent.start + len(parent.ids)))
            key = new_key
        return key

    def _compute(self, targets: list[Key], keep: bool) -> ScoreCounts:
        counts = ScoreCounts([0] * len(targets), [set() for _ in targets])
        self._compute_rows([(key, [i]) for i, key in enumerate(targets)], counts, keep)
        self._evict()
        return counts

    def _compute_rows(self, rows: list[tuple[Key, list[int]]], counts: ScoreCounts, keep: bool) -> None:
        """Feed each row's uncached chain. A row is a target key and the requests it serves. Uncached ancestors
        that several rows share (a new prompt under its N first steps) are fed first, once, as rows of their own,
        so siblings then start from their cache. A row's tokens are charged to the first request it serves (rows
        that share an entry belong to one problem, or to problems with the same prompt); its passes to all of them.
        `keep`: whether the rows' new entries keep their caches (shared ancestors always do)."""
        if not self.full_rescore:
            users: dict[Key, list[int]] = {}
            for r, (key, _) in enumerate(rows):
                for k in self._uncached(key)[:-1]:
                    users.setdefault(k, []).append(r)
            shared = {k for k, rs in users.items() if len(rs) > 1}
            tops = shared - {self.steps.parent(k) for k in shared}  # the deepest shared entries cover the rest
            if tops:
                self._compute_rows([(k, sorted({i for r in users[k] for i in rows[r][1]})) for k in tops], counts, True)
        parts = []  # per row: (entries with a cache, entries to feed)
        for key, _ in rows:
            chain = self.steps.chain(key)
            self.rm.check_length(sum(len(e.ids) for e in chain), "a prompt with its steps so far")
            cut = 0 if self.full_rescore else next((i for i, e in enumerate(chain) if e.kv is None), len(chain))
            parts.append((chain[:cut], chain[cut:]))
        tokens = [sum(len(e.ids) for e in new) for _, new in parts]
        # Sorted by new tokens first: the feed-forward layers pay for each row's padding to the widest new span.
        order = sorted(range(len(rows)), key=lambda r: (tokens[r], sum(len(e.ids) for e in parts[r][0])))
        for batch in self._batches(order, parts, tokens):
            self._forward([parts[r] for r in batch], keep)
            for r in batch:
                served = rows[r][1]
                counts.tokens[served[0]] += tokens[r]
                for i in served:
                    counts.passes[i].add(self.stats["forward_passes"])
        self.stats["scored_tokens"] += sum(tokens)

    def _uncached(self, key: Key) -> list[Key]:
        """Keys from the first entry of `key`'s chain without a cache down to `key` itself."""
        keys: list[Key] = []
        uncached = 0
        while key is not None:
            keys.append(key)
            if self.steps[key].kv is None:
                uncached = len(keys)
            key = self.steps.parent(key)
        return keys[:uncached][::-1]

    def _batches(self, order: list[int], rows: list, tokens: list[int]) -> list[list[int]]:
        batches: list[list[int]] = []
        current: list[int] = []
        widest = 0
        for r in order:
            width = sum(len(e.ids) for e in rows[r][0]) + tokens[r]
            if current and max(widest, width) * (len(current) + 1) > self.max_batch_tokens:
                batches.append(current)
                current, widest = [], 0
            current.append(r)
            widest = max(widest, width)
        return [*batches, current] if current else batches

    @torch.no_grad()
    def _forward(self, rows: list[tuple[list[Step], list[Step]]], keep: bool) -> None:
        device = next(self.rm.parameters()).device
        lengths = [(sum(len(e.ids) for e in old), sum(len(e.ids) for e in new)) for old, new in rows]
        past = max(c for c, _ in lengths)
        width = max(n for _, n in lengths)
        ids = torch.full((len(rows), width), self._pad, dtype=torch.long)
        mask = torch.zeros((len(rows), past + width), dtype=torch.long)
        positions = torch.zeros((len(rows), width), dtype=torch.long)
        for r, ((_, new), (c, n)) in enumerate(zip(rows, lengths, strict=True)):
            ids[r, :n] = torch.tensor([t for e in new for t in e.ids])
            mask[r, past - c : past + n] = 1  # the cached prefix right-aligned against the new tokens
            positions[r] = torch.arange(c, c + width)
        ends = [(r, offset + len(e.ids) - 1) for r, (_, new) in enumerate(rows) for offset, e in _offsets(new)]
        index = torch.tensor(ends, device=device)
        keep = keep and not self.full_rescore
        if self.whole_paths:  # whole paths (past == 0), the prompt first
            prompt_length = torch.tensor([len(new[0].ids) for _, new in rows], device=device)
            logits = self.rm(ids.to(device), mask.to(device), prompt_length)
            probs = self.rm.probabilities(logits[index[:, 0], index[:, 1]]).tolist()
        else:
            cache = self._stack_cache(rows, past, device, keep)
            hidden = self._base(
                input_ids=ids.to(device),
                attention_mask=mask.to(device),
                position_ids=positions.to(device),
                cache=cache,
                use_cache=cache is not None,
            ).last_hidden_state
            if self.reads_lm:
                probs = self._likelihood(rows, ids.to(device), hidden)
            else:
                probs = self.rm.probabilities(self._head(hidden[index[:, 0], index[:, 1]])).tolist()
        at = 0
        tick = next(self._clock)
        for r, (old, new) in enumerate(rows):
            for e in old:
                e.used = tick
            for offset, e in _offsets(new):
                if (old or offset) and e.score is None:  # the first entry of a chain is its prompt: no score
                    e.score = probs[at]
                at += 1
                e.used = tick
                if keep and e.kv is None:
                    e.kv = kv.take(cache, r, slice(past + offset, past + offset + len(e.ids)))
                    self.cached_tokens += len(e.ids)
                    if self.reads_lm:
                        e.last = hidden[r, offset + len(e.ids) - 1].clone()
        self.stats["forward_passes"] += 1

    def _likelihood(self, rows: list, ids: torch.Tensor, hidden: torch.Tensor) -> list[float]:
        """P(correct) of every new entry under a likelihood head (`models.likelihood`): the least log-probability
        of its non-marker tokens. Token j is predicted by the hidden state at j - 1; the first new token of a row
        by the last cached entry's kept state (a row without one starts at its prompt, which has no score)."""
        before = torch.zeros_like(hidden)
        before[:, 1:] = hidden[:, :-1]
        for r, (old, _) in enumerate(rows):
            if old:
                before[r, 0] = old[-1].last
        logp = torch.log_softmax(self._head(before).float(), -1).gather(-1, ids[..., None]).squeeze(-1)
        counted = ~torch.isin(ids, self._markers.to(ids.device))
        minima = []
        for r, (_, new) in enumerate(rows):
            for offset, e in _offsets(new):
                span = slice(offset, offset + len(e.ids))
                own = logp[r, span][counted[r, span]]
                minima.append(own.min() if own.numel() else logp.new_zeros(()))
        return self.rm.probabilities(self.rm.model.read_out(torch.stack(minima))).tolist()

    def _stack_cache(self, rows: list, past: int, device: Any, keep: bool) -> Any:
        from transformers import DynamicCache

        cache = kv.stack([kv.concat([e.kv for e in old]) if old else None for old, _ in rows], past, device)
        return DynamicCache() if cache is None and keep else cache

    def _evict(self) -> None:
        if self.cached_tokens <= self.max_cache_tokens:
            return
        for entry in sorted((e for e in self.steps.values() if e.kv is not None), key=lambda e: e.used):
            self.stats["evicted_tokens"] += len(entry.ids)
            self._uncache(entry)
            if self.cached_tokens <= self.max_cache_tokens:
                return

    # ---- whole solutions ------------------------------------------------------------------------------------------

    def encode_solutions(self, prompts: Sequence[str], solutions: Sequence[Sequence[str]]) -> list[list[list[int]]]:
        """The token ids `score_solutions` feeds for each solution: its prompt's, then each step's. One tokenizer
        call per distinct prompt and one for every step of every solution (a call costs more than the few tokens
        it reads). A server reads a batch once: to size it, then to score it (`score_solutions(encoded=...)`)."""
        firsts = {p: self.format.prompt_ids(self.tokenizer, p) for p in dict.fromkeys(prompts)}
        flat = [step for steps in solutions for step in steps]
        ids = self.format.step_ids(self.tokenizer, flat, first=False) if flat else []
        out, at = [], 0
        for prompt, steps in zip(prompts, solutions, strict=True):
            own = ids[at : at + len(steps)]
            at += len(steps)
            if own:  # the first step follows the prompt directly: no gap, as `score` reads a step under a root
                own[0] = own[0][self._gap :]
            out.append([firsts[prompt], *own])
        return out

    def score_solutions(
        self,
        prompts: Sequence[str],
        solutions: Sequence[Sequence[str]],
        encoded: Sequence[Sequence[list[int]]] | None = None,
    ) -> SolutionScores:
        """Step scores and their `agg` of whole solutions (best-of-N), through the same entries and forward pass as
        step-by-step search; nothing is kept afterwards. A solution with no steps scores None. `encoded`: their
        ids as `encode_solutions` gives them, when the caller has read them already."""
        started = time.perf_counter()
        encoded = self.encode_solutions(prompts, solutions) if encoded is None else encoded
        scores: list[float | None] = [None] * len(prompts)
        step_scores: list[list[float]] = [[] for _ in prompts]
        counts = ScoreCounts([0] * len(prompts), [set() for _ in prompts])
        roots: dict[str, Key] = {}  # one root per distinct prompt: a problem's N solutions share its feed
        chains: list[list[Key]] = []
        which, targets = [], []
        try:
            for i, (prompt, ids) in enumerate(zip(prompts, encoded, strict=True)):
                if len(ids) < 2:  # the prompt alone: no steps
                    continue
                if prompt not in roots:
                    roots[prompt] = ("solution", next(self._temp))
                    self.steps.add(roots[prompt], None, Step(list(ids[0])))
                chains.append([(roots[prompt], i, j) for j in range(len(ids) - 1)])
                targets.append(self._grow(roots[prompt], list(zip(chains[-1], ids[1:], strict=True))))
                which.append(i)
            if targets:
                c = self._compute(targets, keep=False)
                for i, keys, t, p in zip(which, chains, c.tokens, c.passes, strict=True):
                    step_scores[i] = [self.steps[k].score for k in keys]  # type: ignore[misc]
                    scores[i] = aggregate_steps(step_scores[i], self.agg)
                    counts.tokens[i], counts.passes[i] = t, p
        finally:  # also when a solution cannot be scored (too long): a server retries around it for days
            self.release([*roots.values(), *(k for keys in chains for k in keys)])
        self.stats["seconds"] += time.perf_counter() - started
        return SolutionScores(scores, step_scores, counts)


def _offsets(entries: list[Step]) -> list[tuple[int, Step]]:
    out, offset = [], 0
    for e in entries:
        out.append((offset, e))
        offset += len(e.ids)
    return out


class OutcomeScorer:
    """Whole-solution scores from an ORM (aggregated token probabilities) or a BT model (centred reward)."""

    def __init__(self, rm: RewardModel, *, batch_size: int = 16) -> None:
        if rm.kind == "prm":
            raise ScorerError("OutcomeScorer takes an ORM or BT model; a PRM goes in StepScorer")
        self.rm, self.batch_size = rm.eval(), batch_size
        self.format = rm.step_format
        self.stats = {"scored_tokens": 0, "forward_passes": 0, "evicted_tokens": 0, "seconds": 0.0}

    @property
    def kind(self) -> str:
        return self.rm.kind

    def score_solutions(self, prompts: Sequence[str], solutions: Sequence[Sequence[str]]) -> SolutionScores:
        scores: list[float | None] = [None] * len(prompts)
        counts = ScoreCounts([0] * len(prompts), [set() for _ in prompts])
        which = [i for i, s in enumerate(solutions) if any(step.strip() for step in s)]
        started = time.perf_counter()
        if which:
            got = self.rm.score_batch(
                [prompts[i] for i in which], [list(solutions[i]) for i in which], batch_size=self.batch_size
            )
            first = self.stats["forward_passes"]
            for k, (i, s) in enumerate(zip(which, got, strict=True)):
                scores[i] = s
                counts.tokens[i] = len(self.rm.encode(prompts[i], list(solutions[i])).input_ids)
                counts.passes[i] = {first + k // self.batch_size}  # score_batch runs batch_size rows per pass
            self.stats["scored_tokens"] += sum(counts.tokens)
            self.stats["forward_passes"] += -(-len(which) // self.batch_size)
        self.stats["seconds"] += time.perf_counter() - started
        return SolutionScores(scores, [[] for _ in prompts], counts)
