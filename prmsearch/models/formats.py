"""Reward-model formats, in one registry: how a checkpoint on disk is loaded to score, what it scores, and how search
scores with it. Every command that loads a reward model (search, rerank, serve, rewards, eval) asks `load_reward_model`,
which takes the format named or the one the checkpoint's config declares; a new format is an entry here and its
loader, not another branch in each of them.

- `prmsearch`: what `prmsearch train` saves (`RewardModel`). Its read-out is one of `heads.HEADS` (linear,
  implicit, likelihood), named in the saved settings; the head says whether search scores a new step on its
  prefix's cached states (incremental) or re-reads the path.
- `qwen2.5-math-prm`, `math-shepherd`, `rlhflow`: public PRMs read as published (`models.adapters`); search re-reads
  each path whole, as their formats lay a path out anew when it grows.
- `trl-reward`, `trl-prm`: models trained by TRL (or by anyone in its conventions): a one-label sequence classifier
  read as TRL's reward trainer lays out a row (`models.trl_reward`), a two-label token classifier read where TRL's
  PRM trainer puts a step's label (`models.trl_prm`). Their configs declare them (the architecture, the number of
  labels and no prmsearch settings), so they load unnamed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..devices import pick_device, pick_dtype
from ..errors import FormatError, loading

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


def _loader(module: str, class_name: str) -> Callable[..., Any]:
    """`class_name.from_pretrained` of `prmsearch.models.<module>`, imported when a model of the format loads."""

    def load(path: str, *, device: Any = None, dtype: Any = None, **kwargs: Any) -> Any:
        import importlib

        cls = getattr(importlib.import_module(f"{__package__}.{module}"), class_name)
        return cls.from_pretrained(path, device=device, dtype=dtype, **kwargs)

    return load


def _never(config: dict[str, Any]) -> bool:
    return False


def _trl(head: str, labels: int) -> Callable[[dict[str, Any]], bool]:
    """A transformers classifier (`*For{head}Classification` with `labels` labels) that prmsearch did not save."""

    def declares(config: dict[str, Any]) -> bool:
        archs = config.get("architectures") or ()
        named = any(a.endswith(f"For{head}Classification") for a in archs)
        return named and len(config.get("id2label") or {}) == labels and "prmsearch" not in config

    return declares


FORMATS: dict[str, Format] = {
    "prmsearch": Format(
        "prmsearch",
        "saved by prmsearch (train, RewardModel.save_pretrained): PRM, ORM or BT, any head",
        ("prm", "orm", "bt"),
        "reward-model",
        _loader("reward_model", "RewardModel"),
        lambda config: isinstance(config.get("prmsearch"), dict),
    ),
    "qwen2.5-math-prm": Format(
        "qwen2.5-math-prm",
        "Qwen/Qwen2.5-Math-PRM-7B, -72B: a 2-way head read at each <extra_0>",
        ("prm",),
        "whole-path",
        _loader("adapters", "QwenMathPRM"),
        lambda config: "Qwen2ForProcessRewardModel" in (config.get("architectures") or ()),
    ),
    "math-shepherd": Format(
        "math-shepherd",
        "peiyi9979/math-shepherd-mistral-7b-prm: the LM's '+' against '-' at each ки (a causal LM: name it)",
        ("prm",),
        "whole-path",
        _loader("adapters", "MathShepherdPRM"),
        _never,
    ),
    "rlhflow": Format(
        "rlhflow",
        "RLHFlow/Llama3.1-8B-PRM-*: the LM's '+' against '-' after each user turn (a causal LM: name it)",
        ("prm",),
        "whole-path",
        _loader("adapters", "RLHFlowPRM"),
        _never,
    ),
    "trl-reward": Format(
        "trl-reward",
        "a one-label sequence classifier (TRL's RewardTrainer, public BT reward models), read on TRL's row layout",
        ("bt",),
        "reward-model",
        _loader("trl_reward", "SequenceRewardModel"),
        _trl("Sequence", 1),
    ),
    "trl-prm": Format(
        "trl-prm",
        "a two-label token classifier in TRL's stepwise convention (its PRM trainer), read at each step's end",
        ("prm",),
        "whole-path",
        _loader("trl_prm", "StepwisePRM"),
        _trl("Token", 2),
    ),
}
NAMED_ONLY = tuple(name for name, f in FORMATS.items() if f.declares is _never)  # a config cannot tell them apart


def load_reward_model(path: str, format: str | None = None, *, device: Any = None, dtype: Any = None) -> Any:
    """The reward model at `path` (a folder, hub id or embedded name), loaded by `format` or by the format its
    config declares, ready to score: a `RewardModel` or a public PRM's adapter."""
    name = format or detect(path)
    if name not in FORMATS:
        raise FormatError(f"unknown reward-model format {name!r}; the formats: {', '.join(FORMATS)}")
    with loading(path, "reward model"):
        return FORMATS[name].load(path, device=pick_device(device), dtype=pick_dtype(dtype))


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
            f"{path} has no prmsearch settings in its config and declares no other reward-model format "
            f"({', '.join(FORMATS)}); a causal-LM PRM loads when its format is named: {', '.join(NAMED_ONLY)}"
        )
    return found[0]


def load_adapter(name: str, path_or_id: str, *, device: Any = None, dtype: Any = None, **kwargs: Any) -> Any:
    """A public PRM ready to score: `load_adapter("qwen2.5-math-prm", "Qwen/Qwen2.5-Math-PRM-7B", device="cuda",
    dtype=torch.bfloat16)`. Names: any format but prmsearch's own; `kwargs` go to its `from_pretrained` (a PRM
    adapter's: tokenizer, separator, transformers keywords)."""
    if name not in FORMATS or name == "prmsearch":
        raise FormatError(f"unknown adapter {name!r}: choose one of {sorted(set(FORMATS) - {'prmsearch'})}")
    return FORMATS[name].load(path_or_id, device=device, dtype=dtype, **kwargs)
