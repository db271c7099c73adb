"""The losses of the three reward-model kinds, as plain tensor functions.

Every loss returns per-item values (per pair, per ranking, per supervised token) rather than a mean, because the
mean must be taken over the *global* batch: `global_mean` divides a shard's sum by the number of supervised items on
all shards, so data-parallel training gives the loss of one big batch even when shards are uneven (a shard with 3
supervised steps must not weigh as much as one with 300).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

IGNORE = -100  # label value of unsupervised positions (prmsearch.data_builders.labels.IGNORE)
PRM_LOSSES = ("ce", "ce3", "bce", "mse")


def bt_losses(chosen: torch.Tensor, rejected: torch.Tensor, margin: torch.Tensor | None = None) -> torch.Tensor:
    """Bradley-Terry: -log σ(r_c - r_r - m) = softplus(r_r - r_c + m), per pair (softplus is the stable form)."""
    diff = chosen - rejected
    if margin is not None:
        diff = diff - margin
    return F.softplus(-diff)


def centering_penalties(chosen: torch.Tensor, rejected: torch.Tensor) -> torch.Tensor:
    """(r_c + r_r)², TRL's `center_rewards_coefficient` term: zero exactly when a pair's rewards are centred on 0,
    which BT alone leaves free (it sees only differences)."""
    return (chosen + rejected) ** 2


def plackett_luce_losses(
    scores: torch.Tensor, mask: torch.Tensor | None = None, levels: torch.Tensor | None = None
) -> torch.Tensor:
    """Plackett-Luce over K completions, per ranking: -Σ_i [s_i - logsumexp({s_i} ∪ {s_j : j ranked below i})].

    `scores` is [B, K]; `mask` [B, K] marks real entries (rankings shorter than K are padded). `levels` [B, K]
    gives each entry's rank, lower is better, ties allowed; without it the entries are in rank order. A tied
    entry is not "below" its peer, so with two levels (correct / incorrect solutions) each correct one is scored
    against all incorrect ones, and with K = 2 this is exactly `bt_losses`.
    """
    if mask is None:
        mask = torch.ones_like(scores, dtype=torch.bool)
    if levels is None:
        levels = torch.arange(scores.shape[-1], device=scores.device).expand_as(scores)
    below = levels.unsqueeze(-1) < levels.unsqueeze(-2)  # [B, i, j]: j ranked strictly below i
    eye = torch.eye(scores.shape[-1], dtype=torch.bool, device=scores.device)
    field = (below | eye) & mask.unsqueeze(-2) & mask.unsqueeze(-1)
    fill = torch.finfo(scores.dtype).min / 4  # finite: -inf gives NaN gradients
    lse = scores.unsqueeze(-2).expand_as(field).masked_fill(~field, fill).logsumexp(-1)
    terms = (lse - scores).masked_fill(~mask, 0.0)  # an entry with nothing below it adds log 1 = 0
    return terms.sum(-1)


def group_pair_weights(group_ids: list[str]) -> torch.Tensor:
    """Weight 1/n for each of a group's n pairs, so every prompt counts once however many pairs its K samples make
    (K good and K bad samples give K² pairs: unweighted, prompts with many samples would dominate)."""
    counts: dict[str, int] = {}
    for g in group_ids:
        counts[g] = counts.get(g, 0) + 1
    return torch.tensor([1.0 / counts[g] for g in group_ids])


def orm_losses(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Per-token BCE of a 1-logit token head against the outcome on every completion token; only positions whose
    label is not IGNORE, returned flat (masking happens before any reduction)."""
    logits = logits.squeeze(-1) if logits.dim() == labels.dim() + 1 else logits
    keep = labels != IGNORE
    return F.binary_cross_entropy_with_logits(logits[keep].float(), labels[keep].float(), reduction="none")


def prm_losses(logits: torch.Tensor, labels: torch.Tensor, loss: str) -> torch.Tensor:
    """Per-step losses at supervised positions (step ends), flat.

    - "ce": 2-class cross-entropy, labels 0/1, logits [..., 2];
    - "ce3": 3-class cross-entropy, labels -1/0/+1 (PRM800K's ratings), logits [..., 3];
    - "bce": binary cross-entropy with soft targets in [0, 1], logits [..., 1];
    - "mse": regression of σ(logit) onto soft or hard targets, logits [..., 1].
    """
    if loss not in PRM_LOSSES:
        raise ValueError(f"unknown PRM loss {loss!r}; choose one of {PRM_LOSSES}")
    keep = labels != IGNORE
    target = labels[keep]
    chosen = logits[keep].float()
    if loss in ("ce", "ce3"):
        classes = 2 if loss == "ce" else 3
        if chosen.shape[-1] != classes:
            raise ValueError(f"loss {loss!r} needs a head with {classes} outputs, got {chosen.shape[-1]}")
        index = target.long() + (1 if loss == "ce3" else 0)  # -1/0/+1 -> 0/1/2
        return F.cross_entropy(chosen, index, reduction="none")
    if chosen.shape[-1] != 1:
        raise ValueError(f"loss {loss!r} needs a head with 1 output, got {chosen.shape[-1]}")
    chosen = chosen.squeeze(-1)
    if loss == "bce":
        return F.binary_cross_entropy_with_logits(chosen, target.float(), reduction="none")
    return (torch.sigmoid(chosen) - target.float()) ** 2


def global_mean(
    values: torch.Tensor,
    weights: torch.Tensor | None = None,
    accelerator=None,
    total: torch.Tensor | float | None = None,
) -> torch.Tensor:
    """Σ(w·v) over this shard divided by Σw over *all* shards, times the number of processes.

    `total` is Σw over the global batch when the caller already has it (the Trainer counts supervised labels over
    all gradient-accumulation micro-batches and processes); otherwise it is all-reduced here.

    Data-parallel backends average gradients over processes; multiplying by their number undoes that, so the
    gradient is that of Σ(w·v) / Σw over the global batch, the same as one process seeing the whole batch. On one
    process (no accelerator, or num_processes == 1) it is the plain weighted mean.
    """
    weights = torch.ones_like(values) if weights is None else weights.to(values)
    local_sum = (values * weights).sum()
    world = accelerator.num_processes if accelerator is not None else 1
    if total is None:
        total = weights.sum().detach()
        if world > 1:
            total = accelerator.reduce(total.clone(), reduction="sum")
    if total <= 0:
        return local_sum * 0.0  # no supervised item anywhere: a zero loss that still has a graph
    return local_sum * world / total
