"""Attention for packed rows without flash-attention: each packed example attends causally to itself only.

transformers can run a packed row through plain SDPA, but only by building a [total, total] block-diagonal mask,
which costs (Σ lengths)² per head where the examples need Σ length²: on CPU that made packed training slower than
padding. Here the row is cut at the `cu_seq_lens_q` boundaries (the same keyword arguments flash-attention's varlen
kernels read) and SDPA runs causally on each piece, which also lets it use its fused causal kernel.

Without boundaries (a right-padded batch) causal attention over the whole row is already exact for the real tokens
(they come before the padding), so no mask is built at all. Left padding is not supported by this implementation.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

NAME = "prmsearch_varlen"


def varlen_sdpa(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    scaling: float | None = None,
    dropout: float = 0.0,
    **kwargs,
) -> tuple[torch.Tensor, None]:
    """query [B, H, T, D], key/value [B, H_kv, T, D] → [B, T, H, D], as transformers' attention functions."""
    groups = query.shape[1] // key.shape[1]
    if groups > 1:
        key = key.repeat_interleave(groups, dim=1)
        value = value.repeat_interleave(groups, dim=1)
    bounds = kwargs.get("cu_seq_lens_q")
    if bounds is None:
        out = F.scaled_dot_product_attention(query, key, value, dropout_p=dropout, is_causal=True, scale=scaling)
    else:
        cuts = bounds.tolist()
        out = torch.cat(
            [
                F.scaled_dot_product_attention(
                    query[:, :, a:b], key[:, :, a:b], value[:, :, a:b], dropout_p=dropout, is_causal=True, scale=scaling
                )
                for a, b in zip(cuts, cuts[1:], strict=False)
            ],
            dim=2,
        )
    return out.transpose(1, 2).contiguous(), None


def _no_mask(*args, **kwargs) -> None:
    return None


def register() -> str:
    """Make `attn_implementation="prmsearch_varlen"` known to transformers; returns the name."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface

    AttentionInterface.register(NAME, varlen_sdpa)
    AttentionMaskInterface.register(NAME, _no_mask)
    return NAME
