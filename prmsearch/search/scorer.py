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
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from ..models.reward_model import RewardModel, RewardModelError
from . import kv
from .select import aggregate

Key = Hashable


class ScorerError(ValueError):
    """A scorer used on keys it does not hold, or a model kind that cannot score this way."""


@dataclass
class _Entry:
    parent: Key | None
    ids: list[int] = field(default_factory=list)
    start: int = 0  # position of this entry's first token
    text: str = ""  # kept by scorers that re-feed whole paths (AdapterScorer)
    kv: list[tuple[torch.Tensor, torch.Tensor]] | None = None  # per layer, [heads, len, dim]
    score: float | None = None
    children: int = 0
    released: bool = False
    used: int = 0


@dataclass
class ScoreCounts:
    """What one `score` call cost each request: tokens fed through the model (recomputed ancestors included) and
    the ids of the forward passes it took part in (a problem's passes are the union over its requests)."""

    tokens: list[int]
    passes: list[set[int]]


class StepTree:
    """Keyed steps as search hands them to a step scorer: a root per prompt, every other key a step under its
    parent. Release is reference counted, so a pruned branch goes at once and a kept one stays."""

    def __init__(self) -> None:
        self.entries: dict[Key, _Entry] = {}

    def _add(self, key: Key, entry: _Entry) -> None:
        if key in self.entries:
            raise ScorerError(f"key {key!r} is already in use")
        if entry.parent is not None:
            if entry.parent not in self.entries:
                raise ScorerError(f"unknown parent key {entry.parent!r}")
            self.entries[entry.parent].children += 1
        self.entries[key] = entry

    def release(self, keys: Sequence[Key]) -> None:
        """The caller no longer needs these keys: each is dropped (with its cache) once no live entry descends from
        it, so releasing a beam that still has kept children frees nothing until they go too."""
        for key in keys:
            entry = self.entries.get(key)
            if entry is not None and not entry.released:
                entry.released = True
                self._drop_if_unused(key)

    def _drop_if_unused(self, key: Key) -> None:
        while key is not None:
            entry = self.entries[key]
            if not entry.released or entry.children:
                return
            del self.entries[key]
            self._forget(entry)
            key = entry.parent
            if key is not None:
                self.entries[key].children -= 1

    def _forget(self, entry: _Entry) -> None:
        """What a scorer frees with a dropped entry."""

    def _chain(self, key: Key) -> list[_Entry]:
        chain = []
        while key is not None:
            entry = self.entries[key]
            chain.append(entry)
            key = entry.parent
        return chain[::-1]


class StepScorer(StepTree):
    """Incremental PRM scoring over a tree of keyed steps. Keys are any hashables the caller picks (the search uses
    (tree, node) pairs); `add_prompt` makes a root, `score` adds steps under existing keys and scores them."""

    def __init__(
        self,
        rm: RewardModel,
        *,
        full_rescore: bool = False,
        max_cache_tokens: int = 2_000_000,
        max_batch_tokens: int = 16_384,
        agg: str = "last",
    ) -> None:
        if rm.kind != "prm":
            raise ScorerError(f"StepScorer needs a PRM, got a {rm.kind.upper()} model: use OutcomeScorer")
        self.rm, self.full_rescore, self.agg = rm.eval(), full_rescore, agg
        self.max_cache_tokens, self.max_batch_tokens = max_cache_tokens, max_batch_tokens
        self.format, self.tokenizer = rm.step_format, rm.tokenizer
        super().__init__()
        self.cached_tokens = 0
        self.stats = {"scored_tokens": 0, "forward_passes": 0, "evicted_tokens": 0, "seconds": 0.0}
        self._clock = itertools.count(1)
        self._temp = itertools.count()
        self._gap = len(self.format.step_ids(self.tokenizer, ["x"], first=False)[0]) - len(
            self.format.step_ids(self.tokenizer, ["x"], first=True)[0]
        )
        base = getattr(rm.model, rm.model.base_model_prefix)
        self._base, self._head = base, rm.model.score
        self._pad = rm.tokenizer.pad_token_id if rm.tokenizer.pad_token_id is not None else 0

    @property
    def kind(self) -> str:
        return "prm"

    # ---- the tree of entries -------------------------------------------------------------------------------------

    def add_prompt(self, key: Key, prompt: str) -> None:
        self._add(key, _Entry(None, self.format.prompt_ids(self.tokenizer, prompt)))

    def _forget(self, entry: _Entry) -> None:
        self._uncache(entry)

    def _uncache(self, entry: _Entry) -> None:
        if entry.kv is not None:
            entry.kv = None
            self.cached_tokens -= len(entry.ids)

    # ---- scoring ---------------------------------------------------------------------------------------------------

    def score(self, requests: Sequence[tuple[Key, Sequence[tuple[Key, str]]]]) -> tuple[list[list[float]], ScoreCounts]:
        """Add and score steps. A request is (parent key, [(new key, step text), ...]): one new step in beam
        search, a whole solution in best-of-N. Returns P(correct) of every new step, request by request."""
        started = time.perf_counter()
        targets = []
        for parent_key, steps in requests:
            if parent_key not in self.entries:
                raise ScorerError(f"unknown parent key {parent_key!r}")
            if not steps:
                raise ScorerError(f"a request under {parent_key!r} has no steps")
            texts = [text for _, text in steps]
            ids = self.format.step_ids(self.tokenizer, texts, first=False)
            if self.entries[parent_key].parent is None:
                ids[0] = ids[0][self._gap :]
            key = parent_key
            for (new_key, _), step_ids in zip(steps, ids, strict=True):
                parent = self.entries[key]
                self._add(new_key, _Entry(key, step_ids, parent.start + len(parent.ids)))
                key = new_key
            targets.append(key)
        counts = self._compute(targets)
        scores = [[self.entries[k].score for k, _ in steps] for _, steps in requests]
        self.stats["seconds"] += time.perf_counter() - started
        return scores, counts  # type: ignore[return-value]

    def _compute(self, targets: list[Key]) -> ScoreCounts:
        counts = ScoreCounts([0] * len(targets), [set() for _ in targets])
        self._compute_rows([(key, [i]) for i, key in enumerate(targets)], counts)
        self._evict()
        return counts

    def _compute_rows(self, rows: list[tuple[Key, list[int]]], counts: ScoreCounts) -> None:
        """Feed each row's uncached chain. A row is a target key and the requests it serves. Uncached ancestors
        that several rows share (a new prompt under its N first steps) are fed first, once, as rows of their own,
        so siblings then start from their cache. A row's tokens are charged to the first request it serves (rows
        that share an entry belong to one problem, or to problems with the same prompt); its passes to all of them."""
        if not self.full_rescore:
            users: dict[Key, list[int]] = {}
            for r, (key, _) in enumerate(rows):
                for k in self._uncached(key)[:-1]:
                    users.setdefault(k, []).append(r)
            shared = {k for k, rs in users.items() if len(rs) > 1}
            tops = shared - {self.entries[k].parent for k in shared}  # the deepest shared entries cover the rest
            if tops:
                self._compute_rows([(k, sorted({i for r in users[k] for i in rows[r][1]})) for k in tops], counts)
        parts = []  # per row: (entries with a cache, entries to feed)
        for key, _ in rows:
            chain = self._chain(key)
            cut = 0 if self.full_rescore else next((i for i, e in enumerate(chain) if e.kv is None), len(chain))
            parts.append((chain[:cut], chain[cut:]))
        tokens = [sum(len(e.ids) for e in new) for _, new in parts]
        # Sorted by new tokens first: the feed-forward layers pay for each row's padding to the widest new span.
        order = sorted(range(len(rows)), key=lambda r: (tokens[r], sum(len(e.ids) for e in parts[r][0])))
        for batch in self._batches(order, parts, tokens):
            self._forward([parts[r] for r in batch])
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
            entry = self.entries[key]
            keys.append(key)
            if entry.kv is None:
                uncached = len(keys)
            key = entry.parent
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
    def _forward(self, rows: list[tuple[list[_Entry], list[_Entry]]]) -> None:
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
        cache = self._stack_cache(rows, past, device)
        hidden = self._base(
            input_ids=ids.to(device),
            attention_mask=mask.to(device),
            position_ids=positions.to(device),
            cache=cache,
            use_cache=not self.full_rescore,
        ).last_hidden_state
        ends = [(r, offset + len(e.ids) - 1) for r, (_, new) in enumerate(rows) for offset, e in _offsets(new)]
        index = torch.tensor(ends, device=device)
        probs = self.rm.probabilities(self._head(hidden[index[:, 0], index[:, 1]])).tolist()
        at = 0
        tick = next(self._clock)
        for r, (old, new) in enumerate(rows):
            for e in old:
                e.used = tick
            for offset, e in _offsets(new):
                if e.parent is not None and e.score is None:
                    e.score = probs[at]
                at += 1
                e.used = tick
                if not self.full_rescore and e.kv is None:
                    e.kv = kv.take(cache, r, slice(past + offset, past + offset + len(e.ids)))
                    self.cached_tokens += len(e.ids)
        self.stats["forward_passes"] += 1

    def _stack_cache(self, rows: list, past: int, device: Any) -> Any:
        from transformers import DynamicCache

        cache = kv.stack([kv.concat([e.kv for e in old]) if old else None for old, _ in rows], past, device)
        return DynamicCache() if cache is None and not self.full_rescore else cache

    def _evict(self) -> None:
        if self.cached_tokens <= self.max_cache_tokens:
            return
        for entry in sorted((e for e in self.entries.values() if e.kv is not None), key=lambda e: e.used):
            self.stats["evicted_tokens"] += len(entry.ids)
            self._uncache(entry)
            if self.cached_tokens <= self.max_cache_tokens:
                return

    # ---- whole solutions ------------------------------------------------------------------------------------------

    def score_solutions(self, prompts: Sequence[str], solutions: Sequence[Sequence[str]]) -> SolutionScores:
        """Step scores and their `agg` of whole solutions (best-of-N), through the same entries and forward pass as
        step-by-step search; nothing is kept afterwards. A solution with no steps scores None."""
        scores: list[float | None] = [None] * len(prompts)
        step_scores: list[list[float]] = [[] for _ in prompts]
        counts = ScoreCounts([0] * len(prompts), [set() for _ in prompts])
        roots: dict[str, Key] = {}  # one root per distinct prompt: a problem's N solutions share its feed
        requests, which = [], []
        for i, (prompt, steps) in enumerate(zip(prompts, solutions, strict=True)):
            if not steps:
                continue
            if prompt not in roots:
                roots[prompt] = ("solution", next(self._temp))
                self.add_prompt(roots[prompt], prompt)
            root = roots[prompt]
            requests.append((root, [((root, i, j), s) for j, s in enumerate(steps)]))
            which.append(i)
        if requests:
            got, c = self.score(requests)
            for i, s, t, p in zip(which, got, c.tokens, c.passes, strict=True):
                step_scores[i], scores[i] = s, aggregate(s, self.agg)
                counts.tokens[i], counts.passes[i] = t, p
            self.release([*roots.values(), *(k for _, steps in requests for k, _ in steps)])
        return SolutionScores(scores, step_scores, counts)


@dataclass
class SolutionScores:
    scores: list[float | None]
    step_scores: list[list[float]]  # empty for ORM / BT
    counts: ScoreCounts


def _offsets(entries: list[_Entry]) -> list[tuple[int, _Entry]]:
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
        which = [i for i, s in enumerate(solutions) if s]
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


def load_scorer(
    path: str,
    *,
    adapter: str | None = None,
    device: str | None = None,
    dtype: Any = None,
    full_rescore: bool = False,
    agg: str = "last",
    max_cache_tokens: int = 2_000_000,
    max_batch_tokens: int = 16_384,
) -> Any:
    """A scorer for a reward model saved by `RewardModel.save_pretrained` (folder or hub id): PRMs score steps
    incrementally, ORM / BT models score whole solutions. With `adapter` (a name in `models.adapters.ADAPTERS`),
    `path` is a public PRM read in its own format, through `AdapterScorer`."""
    if isinstance(dtype, str):
        dtype = getattr(torch, dtype)
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    if adapter is not None:
        from ..models.adapters import AdapterError, load_adapter
        from .adapter_scorer import AdapterScorer

        try:
            return AdapterScorer(load_adapter(adapter, path, device=device, dtype=dtype), agg=agg)
        except AdapterError as e:
            raise ScorerError(str(e)) from e
    try:
        rm = RewardModel.from_pretrained(path, device=device, dtype=dtype)
    except RewardModelError as e:
        raise ScorerError(str(e)) from e
    if rm.kind == "prm":
        return StepScorer(
            rm, full_rescore=full_rescore, agg=agg, max_cache_tokens=max_cache_tokens, max_batch_tokens=max_batch_tokens
        )
    return OutcomeScorer(rm)
