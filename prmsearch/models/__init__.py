"""Reward models: heads on causal-LM backbones (one registry, `heads.HEADS`), load/save with their scoring settings,
the scoring API, tokenizer loading, and adapters that score with public PRMs in their own formats (`load_adapter`).

`RewardModel` is imported on first use: it needs torch (~1.5 s to import), which `prmsearch build` and the
verifiers' worker processes should not pay."""

from .tokenizers import load_tokenizer

__all__ = [
    "HEADS",
    "KINDS",
    "TOKEN_AGGREGATIONS",
    "AdapterError",
    "RewardModel",
    "RewardModelError",
    "load_adapter",
    "load_tokenizer",
]


def __getattr__(name: str):
    if name in ("HEADS", "KINDS", "RewardModelError"):
        from . import heads

        return getattr(heads, name)
    if name in ("TOKEN_AGGREGATIONS", "RewardModel"):
        from . import reward_model

        return getattr(reward_model, name)
    if name in ("AdapterError", "load_adapter"):
        from . import adapters

        return getattr(adapters, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
