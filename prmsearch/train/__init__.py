"""Reward-model training: configs (`TrainConfig`, YAML recipes in train/), batching and packing (collators),
losses, metrics, the trainers, and `train()`, which the `prmsearch train` command runs.

`from prmsearch.train import TrainConfig, train`; the submodules are imported on first use (torch, transformers).
"""

__all__ = ["TrainConfig", "TrainResult", "train"]


def __getattr__(name: str):
    if name == "TrainConfig":
        from .config import TrainConfig

        return TrainConfig
    if name in ("TrainResult", "train"):
        from . import run

        return getattr(run, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
