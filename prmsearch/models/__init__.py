"""Reward models: the checkpoint formats a reward model loads from (one registry, `formats.FORMATS`:
`load_reward_model`), prmsearch's heads on causal-LM backbones (`heads.HEADS`), load/save with their scoring settings,
the scoring API, tokenizer loading, and adapters that score with public PRMs in their own formats (`load_adapter`).

`RewardModel` is imported on first use: it needs torch (~1.5 s to import), which `prmsearch build` and the
verifiers' worker processes should not pay."""

from .tokenizers import load_tokenizer

__all__ = [
    "FORMATS",
    "HEADS",
    "KINDS",
    "TOKEN_AGGREGATIONS",
    "AdapterError",
    "RewardModel",
    "RewardModelError",
    "load_adapter",
    "load_reward_model",
    "load_tokenizer",
]


def __getattr__(name: str):
    if name in ("HEADS", "KINDS", "RewardModelError"):
        from . import heads

        return getattr(heads, name)
    if name in ("TOKEN_AGGREGATIONS", "RewardModel"):
        from . import reward_model

        return getattr(reward_model, name)
    if name in ("FORMATS", "load_adapter", "load_reward_model"):
        from . import formats

        return getattr(formats, name)
    if name == "AdapterError":
        from . import adapters

        return adapters.AdapterError
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
