"""Reward-model formats, in one registry: how a checkpoint on disk is loaded to score, what it scores, and how search
scores with it. Every command that loads a reward model (search, rerank, serve, rewards, eval) asks `load_reward_model`,
which takes the format named or the one the checkpoint's config declares; a new format is an entry here and its
loader, not another branch in each of them.

- `prmsearch`: what `prmsearch train` saves (`RewardModel`). Its read-out is one of `heads.HEADS` (linear,
  implicit, likelihood), named in the saved settings; the head says whether search scores a new step on its
  prefix's cached states (incremental) or re-reads the path.
- `qwen2.5-math-prm`, `math-shepherd`, `rlhflow`: public PRMs read as published (`models.adapters`); search re-reads
  each path whole, as their formats lay a path out anew when it grows.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..errors import FormatError

# How search scores with a format's models: `reward-model` (a `RewardModel`: steps on cached prefixes, or whole
# solutions, as its kind and head say), `whole-path` (a public PRM's adapter re-reads each path).
SCORING = ("reward-model", "whole-path")


@dataclass(frozen=True)
class Format:
    """A checkpoint format. `load(path, device, dtype)` gives an object with `score_steps_batch` (a PRM) or
    `score_batch` (ORM / BT); `declares(config)` says whether a checkpoint's config (as a dict) is of this format,
    so it loads unnamed (a format a config cannot tell apart, such as a plain causal LM, must be named)."""

    name: str
    help: str
    kinds: tuple[str, ...]
    scoring: str
    load: Callable[..., Any]
    declares: Callable[[dict[str, Any]], bool]


def _load_prmsearch(path: str, *, device: Any = None, dtype: Any = None) -> Any:
    from .reward_model import RewardModel

    return RewardModel.from_pretrained(path, device=device, dtype=dtype)


def _adapter(class_name: str) -> Callable[..., Any]:
    def load(path: str, *, device: Any = None, dtype: Any = None, **kwargs: Any) -> Any:
        from . import adapters

        return getattr(adapters, class_name).from_pretrained(path, device=device, dtype=dtype, **kwargs)

    return load


def _never(config: dict[str, Any]) -> bool:
    return False


FORMATS: dict[str, Format] = {
    "prmsearch": Format(
        "prmsearch",
        "saved by prmsearch (train, RewardModel.save_pretrained): PRM, ORM or BT, any head",
        ("prm", "orm", "bt"),
        "reward-model",
        _load_prmsearch,
        lambda config: isinstance(config.get("prmsearch"), dict),
    ),
    "qwen2.5-math-prm": Format(
        "qwen2.5-math-prm",
        "Qwen/Qwen2.5-Math-PRM-7B, -72B: a 2-way head read at each <extra_0>",
        ("prm",),
        "whole-path",
        _adapter("QwenMathPRM"),
        lambda config: "Qwen2ForProcessRewardModel" in (config.get("architectures") or ()),
    ),
    "math-shepherd": Format(
        "math-shepherd",
        "peiyi9979/math-shepherd-mistral-7b-prm: the LM's '+' against '-' at each ки (a causal LM: name it)",
        ("prm",),
        "whole-path",
        _adapter("MathShepherdPRM"),
        _never,
    ),
    "rlhflow": Format(
        "rlhflow",
        "RLHFlow/Llama3.1-8B-PRM-*: the LM's '+' against '-' after each user turn (a causal LM: name it)",
        ("prm",),
        "whole-path",
        _adapter("RLHFlowPRM"),
        _never,
    ),
}
PUBLIC = tuple(name for name in FORMATS if name != "prmsearch")  # what `--scorer-adapter` / `--adapter` may name


def load_reward_model(path: str, format: str | None = None, *, device: Any = None, dtype: Any = None) -> Any:
    """The reward model at `path` (a folder, hub id or embedded name), loaded by `format` or by the format its
    config declares, ready to score: a `RewardModel` or a public PRM's adapter."""
    name = format or detect(path)
    if name not in FORMATS:
        raise FormatError(f"unknown reward-model format {name!r}; the formats: {', '.join(FORMATS)}")
    if isinstance(dtype, str):
        import torch

        dtype = getattr(torch, dtype)
    return FORMATS[name].load(path, device=device, dtype=dtype)


def detect(path: str) -> str:
    """The format `path`'s config declares. A checkpoint that declares none is refused in one line that names the
    formats, the ones a config cannot tell apart included."""
    from transformers import AutoConfig

    from ..shipped import resolve

    try:
        config = AutoConfig.from_pretrained(resolve(path)).to_dict()
    except (OSError, ValueError) as e:
        raise FormatError(f"{path}: cannot read its config.json ({' '.join(str(e).split())[:200]})") from None
    found = [name for name, f in FORMATS.items() if f.declares(config)]
    if not found:
        raise FormatError(
            f"{path} has no prmsearch settings in its config and declares no other reward-model format; "
            f"a public PRM loads when its format is named: {', '.join(PUBLIC)}"
        )
    return found[0]


def load_adapter(name: str, path_or_id: str, *, device: Any = None, dtype: Any = None, **kwargs: Any) -> Any:
    """A public PRM ready to score: `load_adapter("qwen2.5-math-prm", "Qwen/Qwen2.5-Math-PRM-7B", device="cuda",
    dtype=torch.bfloat16)`. Names: `PUBLIC`; `kwargs` go to the adapter's `from_pretrained` (tokenizer,
    separator, transformers keywords)."""
    if name not in PUBLIC:
        raise FormatError(f"unknown adapter {name!r}: choose one of {sorted(PUBLIC)}")
    return FORMATS[name].load(path_or_id, device=device, dtype=dtype, **kwargs)
