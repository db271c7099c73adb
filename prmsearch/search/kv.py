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

States = list[tuple[torch.Tensor, torch.Tensor]]  # per layer: keys, values, each [heads, tokens, dim]


def concat(parts: Sequence[States]) -> States:
    """The states of consecutive spans as one span."""
    if len(parts) == 1:
        return parts[0]
    return [
        (torch.cat([p[layer][0] for p in parts], 1), torch.cat([p[layer][1] for p in parts], 1))
        for layer in range(len(parts[0]))
    ]


def stack(rows: Sequence[States | None], past: int, device: Any) -> Any:
    """A `DynamicCache` of `past` columns: row r holds `rows[r]` right-aligned (zeros to its left), or only zeros when
    None. Returns None when `past` is 0 or no row has states."""
    from transformers import DynamicCache

    template = next((r for r in rows if r), None)
    if past == 0 or template is None:
        return None
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
    return DynamicCache(ddp_cache_data=layers)


def take(cache: Any, row: int, columns: slice) -> States:
    """Row `row`'s states in `columns` of a batched cache, copied out so the batch can be freed or reshaped."""
    return [(layer.keys[row, :, columns].clone(), layer.values[row, :, columns].clone()) for layer in cache.layers]
