"""Reward models: heads on causal-LM backbones, load/save with their scoring settings, the scoring API, and
tokenizer loading. Adapters for public PRM formats come next (issue 4).

`RewardModel` is imported on first use: it needs torch (~1.5 s to import), which `prmsearch build` and the
verifiers' worker processes should not pay."""

from .tokenizers import load_tokenizer

__all__ = ["AGGREGATIONS", "KINDS", "RewardModel", "RewardModelError", "load_tokenizer"]


def __getattr__(name: str):
    if name in ("AGGREGATIONS", "KINDS", "RewardModel", "RewardModelError"):
        from . import reward_model

        return getattr(reward_model, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
