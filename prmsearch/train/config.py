"""`TrainConfig`: everything `prmsearch train {bt,orm,prm}` needs, as one dataclass loaded from a YAML recipe
(`train/*.yaml`) with `key=value` overrides from the command line, the way TRL's `*Config` classes are used."""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from typing import Any, ClassVar

import yaml

from ..models.reward_model import AGGREGATIONS, KINDS
from ..recipes import read_recipe
from .losses import PRM_LOSSES

BT_LOSSES = ("bt", "plackett_luce")


class TrainConfigError(ValueError):
    """A recipe or override that names an unknown key or an impossible combination."""


@dataclass
class TrainConfig:
    kind: str = "prm"
    # the backbone: a hub id or folder with weights, or `model_config` (a transformers config as a dict, with
    # `model_type`) for a randomly initialised model: tiny recipes and tests
    model: str | None = None
    model_config: dict[str, Any] | None = None
    tokenizer: str | None = None  # default: the one the data was built with (build.json), else `model`
    train_data: str = ""  # what `prmsearch build` wrote: a folder, .jsonl or .parquet
    eval_data: str | None = None
    eval_fraction: float = 0.05  # held out from train_data by prompt group when eval_data is not given
    eval_max_examples: int | None = 2000
    output_dir: str = "runs/rm"
    # heads and losses
    prm_loss: str = "ce"
    aggregation: str = "mean"  # ORM read-out stored with the model
    bt_loss: str = "bt"
    group_by_prompt: bool = False  # BT: all pairs of a prompt in one batch, each prompt weighted once
    center_rewards_coefficient: float | None = None
    # batching
    per_device_batch_size: int = 8  # examples (BT: pairs) per micro-batch
    packing: bool = True  # ORM / PRM: one packed row per micro-batch, no padding
    max_tokens_per_batch: int = 8192  # packed row length cap
    gradient_accumulation_steps: int = 1
    # optimisation
    learning_rate: float = 1e-5
    weight_decay: float = 0.0
    warmup_ratio: float = 0.0
    lr_scheduler_type: str = "linear"
    num_train_epochs: float = 1.0
    max_steps: int = -1
    max_grad_norm: float = 1.0
    seed: int = 42
    # model memory and precision
    bf16: bool = False
    gradient_checkpointing: bool = False
    attn_implementation: str | None = None
    lora_r: int = 0  # > 0 trains LoRA adapters (peft) plus the head; merged into the saved model
    lora_alpha: int = 16
    lora_dropout: float = 0.0
    lora_target_modules: list[str] = field(default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"])
    deepspeed: str | None = None  # a DeepSpeed JSON config (or use an accelerate config with DeepSpeed)
    # bookkeeping
    logging_steps: int = 10
    eval_steps: int | None = None  # None: evaluate once, at the end
    save_steps: int = 500
    save_total_limit: int | None = 2
    report_to: str = "none"
    dataloader_num_workers: int = 0

    CHOICES: ClassVar[dict[str, tuple[str, ...]]] = {
        "kind": KINDS,
        "prm_loss": PRM_LOSSES,
        "aggregation": AGGREGATIONS,
        "bt_loss": BT_LOSSES,
    }

    def __post_init__(self) -> None:
        for name, allowed in self.CHOICES.items():
            if getattr(self, name) not in allowed:
                raise TrainConfigError(f"{name} must be one of {', '.join(allowed)}; got {getattr(self, name)!r}")
        if not self.model and not self.model_config:
            raise TrainConfigError("set `model` (a hub id or folder) or `model_config` (a transformers config dict)")
        if self.model and self.model_config:
            raise TrainConfigError("set only one of `model` and `model_config`")
        if self.model_config is not None and "model_type" not in self.model_config:
            raise TrainConfigError("model_config needs a `model_type` (e.g. qwen2, llama)")
        if not self.train_data:
            raise TrainConfigError("set `train_data` to what `prmsearch build` wrote")
        if self.bt_loss == "plackett_luce" and self.kind == "bt":
            self.group_by_prompt = True  # a ranking needs its prompt's completions together
        if not 0 <= self.eval_fraction < 1:
            raise TrainConfigError(f"eval_fraction must be in [0, 1), got {self.eval_fraction}")

    @classmethod
    def from_yaml(cls, path: str, overrides: dict[str, Any] | None = None, **fixed: Any) -> TrainConfig:
        values = read_recipe(path, error=TrainConfigError)  # keys are checked after overrides, in from_dict
        return cls.from_dict(merge(values, {**(overrides or {}), **fixed}), source=path)

    @classmethod
    def from_dict(cls, values: dict[str, Any], source: str = "config") -> TrainConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise TrainConfigError(f"{source}: unknown keys {unknown}; known: {sorted(known)}")
        hints = typing.get_type_hints(cls)
        values = {k: _coerce(v, hints[k], f"{source}: {k}") for k, v in values.items()}
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def parse_overrides(pairs: list[str]) -> dict[str, Any]:
    """`key=value` strings → a dict, each value read as YAML (`lr=1e-4` a float, `packing=false` a bool,
    `lora_target_modules=[q_proj,v_proj]` a list, `model_config.hidden_size=64` into the nested dict)."""
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise TrainConfigError(f"override {pair!r} is not key=value")
        value = yaml.safe_load(raw) if raw else None
        *parents, last = key.strip().split(".")
        node = out
        for p in parents:
            node = node.setdefault(p, {})
        node[last] = value
    return out


def merge(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """Overrides into a recipe, nested dicts merged key by key (so one `model_config.*` key keeps the others)."""
    out = dict(base)
    for k, v in overrides.items():
        out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def _coerce(value: Any, hint: Any, where: str) -> Any:
    """YAML reads `1e-5` as a string (YAML 1.1 wants `1.0e-5`); numbers are accepted in either spelling."""
    allowed = typing.get_args(hint) or (hint,)
    if isinstance(value, str) and str not in allowed:
        for kind in (int, float):
            if kind in allowed:
                try:
                    return kind(value)
                except ValueError:
                    continue
        raise TrainConfigError(f"{where}: expected {hint}, got {value!r}")
    if isinstance(value, int) and not isinstance(value, bool) and float in allowed and int not in allowed:
        return float(value)
    return value
