"""Key/value states as plain per-layer tensors, moved in and out of transformers' batched cache.

The policy's prefix cache and the PRM's step cache both keep the states of token spans outside any batch (one
`[heads, tokens, dim]` pair per layer) and rebuild a batch from them for the next forward pass. This is that
round trip: rows of different cached lengths are right-aligned against the tokens fed next, the padding columns
left of a shorter row masked out by the caller's attention mask.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from transformers import DynamicCache
from transformers.cache_utils import Cache, DynamicLayer

States = list[tuple[torch.Tensor, torch.Tensor]]  # per layer: keys, values, each [heads, tokens, dim]


def concat(parts: Sequence[States]) -> States:
    """The states of consecutive spans as one span."""
    if len(parts) == 1:
        return parts[0]
    return [
        (torch.cat([p[layer][0] for p in parts], 1), torch.cat([p[layer][1] for p in parts], 1))
        for layer in range(len(parts[0]))
    ]


def stack(rows: Sequence[States | None], past: int, device: Any, *, growing: bool = False) -> Any:
    """A cache of `past` columns: row r holds `rows[r]` right-aligned (zeros to its left), or only zeros when
    None. Returns None when `past` is 0 or no row has states (with `growing`, an empty growing cache). `growing`:
    layers that decode token by token cheaply (`GrowingLayer`)."""
    template = next((r for r in rows if r), None)
    if past == 0 or template is None:
        return Cache(layer_class_to_replicate=GrowingLayer) if growing else None
    layers = []
    for layer, (k0, v0) in enumerate(template):
        heads, _, dim = k0.shape
        keys = k0.new_zeros((len(rows), heads, past, dim))
        values = v0.new_zeros((len(rows), heads, past, dim))
        for r, states in enumerate(rows):
            if states:
                k, v = states[layer]
                keys[r, :, past - k.shape[1] :] = k
                values[r, :, past - v.shape[1] :] = v
        layers.append((keys.to(device), values.to(device)))
    if growing:
        grown = [GrowingLayer() for _ in layers]
        for layer, (keys, values) in zip(grown, layers, strict=True):
            layer.update(keys, values)
        return Cache(layers=grown)
    return DynamicCache(ddp_cache_data=layers)


def take(cache: Any, row: int, columns: slice) -> States:
    """Row `row`'s states in `columns` of a batched cache, copied out so the batch can be freed or reshaped."""
    return [(layer.keys[row, :, columns].clone(), layer.values[row, :, columns].clone()) for layer in cache.layers]


class GrowingLayer(DynamicLayer):
    """A `DynamicLayer` whose states live in a buffer with spare columns. transformers' layer appends a token
    with `torch.cat`, copying the whole cache every decoding step, so a token costs more the longer the batch
    has run; here it writes one column, and the buffer doubles when full. `keys` / `values` are views of the
    filled columns, so everything that reads a `DynamicLayer` reads this."""

    def lazy_initialization(self, key_states: torch.Tensor, value_states: torch.Tensor) -> None:
        super().lazy_initialization(key_states, value_states)
        self.buffers: tuple[torch.Tensor, torch.Tensor] | None = None
        self.length = 0

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        end = self.length + key_states.shape[-2]
        if self.buffers is None or end > self.buffers[0].shape[-2]:
            self._reserve(key_states, value_states, max(end + 64, 2 * end))
        keys, values = self.buffers  # type: ignore[misc]
        keys[..., self.length : end, :] = key_states
        values[..., self.length : end, :] = value_states
        self.length = end
        self._views()
        return self.keys, self.values

    def _reserve(self, key_states: torch.Tensor, value_states: torch.Tensor, columns: int) -> None:
        grown = []
        for old, new in zip(self.buffers or (None, None), (key_states, value_states), strict=True):
            buffer = new.new_empty((*new.shape[:-2], columns, new.shape[-1]))
            if old is not None:
                buffer[..., : self.length, :] = old[..., : self.length, :]
            grown.append(buffer)
        self.buffers = (grown[0], grown[1])

    def _views(self) -> None:
        keys, values = self.buffers  # type: ignore[misc]
        self.keys, self.values = keys[..., : self.length, :], values[..., : self.length, :]

    def get_seq_length(self) -> int:
        return self.length if self.is_initialized else 0

    def crop(self, tokens_to_remove: int) -> None:
        if tokens_to_remove > 0:
            raise ValueError("crop takes the number of tokens to remove as a negative integer")
        if tokens_to_remove and self.is_initialized:
            self.length = max(0, self.length + tokens_to_remove)
            self._views()

    def reset(self) -> None:
        super().reset()
        self.buffers, self.length = None, 0

    def batch_repeat_interleave(self, repeats: int) -> None:
        if self.get_seq_length() > 0:
            keys, values = self.buffers  # type: ignore[misc]
            self.buffers = (keys.repeat_interleave(repeats, 0), values.repeat_interleave(repeats, 0))
            self._views()

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        if self.get_seq_length() > 0:
            keys, values = self.buffers  # type: ignore[misc]
            self.buffers = (keys[indices], values[indices])
            self._views()
