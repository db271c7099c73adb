"""Batches for reward-model training: which examples go together (batch samplers) and how they become tensors
(collators).

Two ideas carry the speed and the correctness:
- Packing (ORM / PRM): the examples of a micro-batch are concatenated into ONE row with position ids restarting at
  0 for each, and no attention mask. transformers turns such position ids into a block-diagonal causal mask (or
  flash-attention's varlen kernels), so no token attends across examples and no compute is spent on padding. The
  loss is the same as padded training because labels travel with their tokens and the loss is a sum over
  supervised positions divided by their count.
- Prompt groups (BT): all pairs of one prompt sit in one micro-batch, each completion is run once however many
  pairs it is in, and the loss gives every prompt the same weight.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from ..errors import PrmsearchError
from .losses import IGNORE


class BatchingError(PrmsearchError):
    """Examples that cannot be batched as asked (a sequence longer than the token budget, a BT read-out that padding
    would hide, pairs that form a cycle)."""


class TokenBudgetSampler:
    """Micro-batches of whole examples in a seeded shuffled order: at most `batch_size` examples, and with
    `max_tokens` at most that many tokens in all (the size of a packed row).

    Deterministic in (seed, epoch), so a resumed run sees the same batches and `accelerate` can shard them
    (process i takes batches i, i + n, ...).
    """

    def __init__(
        self,
        lengths: Sequence[int],
        *,
        batch_size: int | None = None,
        max_tokens: int | None = None,
        shuffle: bool = True,
        seed: int = 0,
        oversize_alone: bool = False,
    ) -> None:
        if batch_size is None and max_tokens is None:
            raise ValueError("TokenBudgetSampler needs batch_size, max_tokens or both")
        if not oversize_alone and max_tokens is not None and lengths and max(lengths) > max_tokens:
            longest = max(range(len(lengths)), key=lengths.__getitem__)
            raise BatchingError(
                f"example {longest} has {lengths[longest]} tokens, more than max_tokens_per_batch={max_tokens}: "
                "raise max_tokens_per_batch or rebuild the data with a smaller max_length"
            )
        self.lengths, self.batch_size, self.max_tokens = list(lengths), batch_size, max_tokens
        self.shuffle, self.seed, self.epoch = shuffle, seed, 0
        self._cache: tuple[int, list[list[int]]] | None = None

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def batches(self) -> list[list[int]]:
        if self._cache is not None and self._cache[0] == self.epoch:
            return self._cache[1]
        order = list(range(len(self.lengths)))
        if self.shuffle:
            random.Random(self.seed * 1_000_003 + self.epoch).shuffle(order)
        out: list[list[int]] = []
        batch: list[int] = []
        tokens = 0
        for i in order:
            full = self.batch_size is not None and len(batch) >= self.batch_size
            over = self.max_tokens is not None and tokens + self.lengths[i] > self.max_tokens
            if batch and (full or over):
                out.append(batch)
                batch, tokens = [], 0
            batch.append(i)
            tokens += self.lengths[i]
        if batch:
            out.append(batch)
        self._cache = (self.epoch, out)
        return out

    def __iter__(self) -> Iterator[list[int]]:
        return iter(self.batches())

    def __len__(self) -> int:
        return len(self.batches())


class GroupBatchSampler(TokenBudgetSampler):
    """Micro-batches of whole prompt groups (every pair of a prompt together), up to `batch_size` pairs; a group
    larger than that is a batch of its own. Groups are shuffled, the pairs inside a group keep their order."""

    def __init__(self, group_ids: Sequence[str], *, batch_size: int, shuffle: bool = True, seed: int = 0) -> None:
        members: dict[str, list[int]] = {}
        for i, g in enumerate(group_ids):
            members.setdefault(g, []).append(i)
        self.groups = list(members.values())
        sizes = [len(m) for m in self.groups]
        super().__init__(sizes, max_tokens=batch_size, shuffle=shuffle, seed=seed, oversize_alone=True)

    def batches(self) -> list[list[int]]:
        return [[i for g in batch for i in self.groups[g]] for batch in super().batches()]


def _labels_tensor(rows: list[list[float]]) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.float32)  # float keeps soft labels; CE casts -1/0/1 back to classes


@dataclass
class TokenCollator:
    """ORM / PRM examples (`input_ids`, `labels`) → a packed row (`input_ids`, `position_ids`, `labels`, all
    [1, total], plus the example boundaries `cu_seq_lens_*`) or a right-padded batch (`input_ids`,
    `attention_mask`, `labels`, [B, longest]); with `prompt_length`, also each example's `prompt_length` [B]
    (an implicit PRM counts completion tokens only)."""

    pad_token_id: int
    packing: bool = True
    prompt_length: bool = False

    def __call__(self, examples: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        if self.packing:
            ids, positions, labels, bounds = [], [], [], [0]
            for e in examples:
                ids += e["input_ids"]
                positions += range(len(e["input_ids"]))
                labels += e["labels"]
                bounds.append(len(ids))
            cu = torch.tensor(bounds, dtype=torch.int32)
            longest = max(len(e["input_ids"]) for e in examples)
            return {
                "input_ids": torch.tensor([ids], dtype=torch.long),
                "position_ids": torch.tensor([positions], dtype=torch.long),
                "labels": _labels_tensor([labels]),
                # example boundaries, under the names flash-attention's varlen path (and ours) reads
                "cu_seq_lens_q": cu,
                "cu_seq_lens_k": cu,
                "max_length_q": longest,
                "max_length_k": longest,
            }
        width = max(len(e["input_ids"]) for e in examples)
        ids = torch.full((len(examples), width), self.pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(examples), width), dtype=torch.long)
        labels = torch.full((len(examples), width), float(IGNORE))
        for row, e in enumerate(examples):
            n = len(e["input_ids"])
            ids[row, :n] = torch.tensor(e["input_ids"])
            mask[row, :n] = 1
            labels[row, :n] = torch.tensor(e["labels"], dtype=torch.float32)
        batch = {"input_ids": ids, "attention_mask": mask, "labels": labels}
        if self.prompt_length:
            batch["prompt_length"] = torch.tensor([e["prompt_length"] for e in examples], dtype=torch.long)
        return batch


def sequences(batch: dict[str, torch.Tensor]) -> list[tuple[int, int, int]]:
    """(row, start, end) of every example in a batch from either collator: packed rows restart their position
    ids at 0, padded rows end where the attention mask does."""
    if "position_ids" in batch:
        out = []
        for row, pos in enumerate(batch["position_ids"]):
            starts = (pos == 0).nonzero().flatten().tolist() + [len(pos)]
            out += [(row, a, b) for a, b in zip(starts, starts[1:], strict=False)]
        return out
    return [(row, 0, int(n)) for row, n in enumerate(batch["attention_mask"].sum(-1).tolist())]


@dataclass
class PairCollator:
    """BT pairs (`chosen_ids`, `rejected_ids`, optional `margin`, `group_id`) → the unique completions of the batch,
    right padded, plus index tensors saying which rows form each pair.

    A completion that appears in several pairs of its prompt is run once. With `rankings`, each prompt's
    completions also come as one Plackett-Luce ranking: `ranking_index` [G, K] (rows, -1 padded) and
    `ranking_levels` [G, K] (0 = best), the levels being each completion's depth in the pairs' "beats" graph.
    """

    pad_token_id: int
    rankings: bool = False

    def __call__(self, examples: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        rows: dict[tuple[str, tuple[int, ...]], int] = {}

        def row_of(group: str, ids: Sequence[int]) -> int:
            return rows.setdefault((group, tuple(ids)), len(rows))

        chosen, rejected, groups, margins = [], [], [], []
        group_index: dict[str, int] = {}
        for i, e in enumerate(examples):
            group = e.get("group_id") or f"#pair{i}"
            chosen.append(row_of(group, e["chosen_ids"]))
            rejected.append(row_of(group, e["rejected_ids"]))
            groups.append(group_index.setdefault(group, len(group_index)))
            margins.append(float(e.get("margin") or 0.0))
        seqs = [list(key[1]) for key in rows]
        for s in seqs:
            if s[-1] == self.pad_token_id:
                raise BatchingError(
                    f"a completion ends with the pad token id {self.pad_token_id}: the sequence-classification "
                    "head reads the last non-pad token, so this score would be read elsewhere; use a tokenizer "
                    "whose pad token differs from the tokens that end a completion"
                )
        width = max(len(s) for s in seqs)
        ids = torch.full((len(seqs), width), self.pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(seqs), width), dtype=torch.long)
        for r, s in enumerate(seqs):
            ids[r, : len(s)] = torch.tensor(s)
            mask[r, : len(s)] = 1
        batch = {
            "input_ids": ids,
            "attention_mask": mask,
            "chosen_index": torch.tensor(chosen),
            "rejected_index": torch.tensor(rejected),
            "pair_group": torch.tensor(groups),
        }
        if any("margin" in e for e in examples):
            batch["margin"] = torch.tensor(margins)
        if self.rankings:
            batch["ranking_index"], batch["ranking_levels"] = _rankings(chosen, rejected, groups, len(group_index))
        return batch


def _rankings(chosen: list[int], rejected: list[int], groups: list[int], n_groups: int):
    """Per group: its completions and their level = length of the longest chain of completions beating them."""
    beaten_by: list[dict[int, set[int]]] = [{} for _ in range(n_groups)]
    for c, r, g in zip(chosen, rejected, groups, strict=True):
        beaten_by[g].setdefault(c, set())
        beaten_by[g].setdefault(r, set()).add(c)
    ranked = []
    for g, graph in enumerate(beaten_by):
        level: dict[int, int] = {}

        def depth(node: int, seen: tuple[int, ...] = (), graph=graph, level=level, g=g) -> int:
            if node in seen:
                raise BatchingError(f"the pairs of prompt group {g} contain a cycle: no ranking exists")
            if node not in level:
                level[node] = max((depth(w, seen + (node,)) + 1 for w in graph[node]), default=0)
            return level[node]

        ranked.append(sorted((depth(n), n) for n in graph))
    k = max(len(r) for r in ranked)
    index = torch.full((n_groups, k), -1, dtype=torch.long)
    levels = torch.zeros((n_groups, k), dtype=torch.long)
    for g, members in enumerate(ranked):
        for j, (lvl, node) in enumerate(members):
            index[g, j], levels[g, j] = node, lvl
    return index, levels
