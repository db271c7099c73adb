"""A judge by name: a causal LM (folder, hub id or embedded name) loaded as the policy is, wrapped in one of the
three protocols. What `prmsearch search --judge` and `prmsearch eval processbench --judge` use."""

from __future__ import annotations

from typing import Any

PROTOCOLS = ("critic", "pointwise", "pairwise")


def load_judge(
    model: str, protocol: str = "critic", *, device: str | None = None, batch_size: int = 32, agg: str = "min"
) -> Any:
    """`model` as a `protocol` judge at temperature 0: "critic" (the earliest wrong step; a step scorer for beam,
    DVTS and MCTS, `agg` turning its step scores into a solution's), "pointwise" (a verdict per solution) or
    "pairwise" (both orders, Bradley-Terry scores); the last two score whole solutions (best-of-N)."""
    from ..search.generators import HFGenerator
    from .critic import CriticJudge
    from .pairwise import PairwiseJudge
    from .pointwise import PointwiseJudge

    if protocol not in PROTOCOLS:
        raise ValueError(f"judge protocol must be one of {', '.join(PROTOCOLS)}, got {protocol!r}")
    generator = HFGenerator.from_pretrained(model, device=device, batch_size=batch_size)
    if protocol == "critic":
        return CriticJudge(generator, agg=agg)
    return PointwiseJudge(generator) if protocol == "pointwise" else PairwiseJudge(generator)
