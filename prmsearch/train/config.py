"""`TrainConfig`: everything `prmsearch train {bt,orm,prm}` needs, loaded from a YAML recipe (`train/*.yaml`) with
`key=value` overrides from the command line. It is transformers' `TrainingArguments` with the reward model's keys
added, the way TRL's configs are built: the optimiser, schedule, precision, logging, saving and DeepSpeed keys are
the Trainer's own (inherited, documented by transformers), and the ones whose defaults suit reward models differently
are re-declared with ours."""

from __future__ import annotations

import dataclasses
import difflib
import os
import typing
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import yaml
from transformers import TrainingArguments

from ..errors import InputError, PrmsearchError, require_local
from ..models.heads import KINDS, RewardModelError, get_head, heads_for
from ..models.reward_model import TOKEN_AGGREGATIONS
from ..recipes import read_recipe, yaml_problem
from ..scoring import STEP_AGGREGATIONS
from .losses import PRM_LOSSES
from .options import TrainOptions

BT_LOSSES = ("bt", "plackett_luce")
# Keys of earlier prmsearch recipes, read as the TrainingArguments keys that replaced them.
RENAMED = {"per_device_batch_size": "per_device_train_batch_size"}
OWN_KEYS = tuple(f.name for f in dataclasses.fields(TrainOptions))  # ours, and the Trainer's we re-declare


class TrainConfigError(PrmsearchError):
    """A recipe or override that names an unknown key or an impossible combination."""


@dataclass
class TrainConfig(TrainOptions, TrainingArguments):
    """Everything `prmsearch train` needs: the keys of a recipe (`train/*.yaml`), each overridable as key=value.
    Any `TrainingArguments` key is a recipe key too; `TrainOptions` declares the reward model's own, and the
    Trainer's with a default that suits reward models."""

    CHOICES: ClassVar[dict[str, tuple[str, ...]]] = {
        "kind": KINDS,
        "prm_loss": PRM_LOSSES,
        "aggregation": TOKEN_AGGREGATIONS,
        "step_aggregation": STEP_AGGREGATIONS,
        "bt_loss": BT_LOSSES,
        "prm_head": heads_for("prm"),
        "orm_head": heads_for("orm"),
    }

    def __post_init__(self) -> None:
        check_launch()  # before the Trainer's arguments set up the devices (and a process group) below
        self._check_ours()
        self._derive()
        try:
            super().__post_init__()
        except ValueError as e:  # the Trainer's own checks (`logging_steps=2.5`, ...), in one line
            raise TrainConfigError(" ".join(str(e).split())) from None
        self._check_loggers()

    def _check_ours(self) -> None:
        for name, allowed in self.CHOICES.items():
            if getattr(self, name) not in allowed:
                raise TrainConfigError(f"{name} must be one of {', '.join(allowed)}; got {getattr(self, name)!r}")
        if isinstance(self.train_data, str) and not self.train_data:
            raise TrainConfigError("set `train_data` to what `prmsearch build` wrote")
        if not self.model and not self.model_config:
            raise TrainConfigError("set `model` (a hub id or folder) or `model_config` (a transformers config dict)")
        if self.model and self.model_config:
            raise TrainConfigError("set only one of `model` and `model_config`")
        if self.model_config is not None and "model_type" not in self.model_config:
            raise TrainConfigError("model_config needs a `model_type` (e.g. qwen2, llama)")
        self._check_paths()
        if self.bt_loss == "plackett_luce" and self.kind == "bt":
            self.group_by_prompt = True  # a ranking needs its prompt's completions together
        if not 0 <= self.eval_fraction < 1:
            raise TrainConfigError(f"eval_fraction must be in [0, 1), got {self.eval_fraction}")
        self._check_counts()
        if self.prm_head != "linear" and self.kind != "prm":
            raise TrainConfigError(f"prm_head={self.prm_head} is a PRM's read-out; kind is {self.kind}")
        if self.orm_head != "linear" and self.kind != "orm":
            raise TrainConfigError(f"orm_head={self.orm_head} is an ORM's read-out; kind is {self.kind}")
        try:
            head = get_head(self.head, self.kind, self.prm_loss)  # the kind / head / loss pairing, checked once
        except RewardModelError as e:
            raise TrainConfigError(f"{self.kind}_head={self.head}: {e}") from None
        if head.reads_lm:
            self._check_lm_head()

    def _check_counts(self) -> None:
        """Sizes the Trainer would divide by, or run zero steps with and save an untrained model as if trained."""
        for name in ("per_device_train_batch_size", "gradient_accumulation_steps"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise TrainConfigError(f"{name} must be a whole number of at least 1; got {getattr(self, name)!r}")
        if self.per_device_eval_batch_size is not None and self.per_device_eval_batch_size < 1:
            raise TrainConfigError(
                f"per_device_eval_batch_size must be at least 1; got {self.per_device_eval_batch_size}"
            )
        if self.max_steps <= 0 and not self.num_train_epochs > 0:
            raise TrainConfigError(
                f"num_train_epochs={self.num_train_epochs} trains nothing: give a positive num_train_epochs, or "
                "max_steps"
            )

    def _derive(self) -> None:
        """The Trainer's keys that follow from ours: one micro-batch size unless told apart, warmup as a share of
        the steps, evaluation every eval_steps when they are set, and the CPU when no accelerator is present."""
        if self.per_device_eval_batch_size is None:
            self.per_device_eval_batch_size = self.per_device_train_batch_size
        if not 0 <= self.warmup_ratio < 1:  # the Trainer reads 1 or more as a number of steps
            raise TrainConfigError(f"warmup_ratio is a share of the steps, in [0, 1); got {self.warmup_ratio}")
        if self.warmup_ratio:
            if self.warmup_steps not in (0, self.warmup_ratio):
                raise TrainConfigError("set one of warmup_ratio (a share of the steps) and warmup_steps")
            self.warmup_steps = self.warmup_ratio  # transformers reads a float in [0, 1) here as a share
        if self.eval_steps and self.eval_strategy == "no":
            self.eval_strategy = "steps"
        if not (torch.cuda.is_available() or (hasattr(torch, "xpu") and torch.xpu.is_available())):
            self.use_cpu = True  # without an accelerator the Trainer joins a (gloo) process group only when told

    def _check_loggers(self) -> None:
        """Each `report_to` logger must be one transformers knows and installed here: else the Trainer stops after
        the model has loaded, in a traceback from its callback."""
        from transformers.integrations.integration_utils import (
            INTEGRATION_TO_CALLBACK,
            get_available_reporting_integrations,
        )

        for name in self.report_to:
            if name not in INTEGRATION_TO_CALLBACK:
                raise TrainConfigError(
                    f"report_to={name}: not a logger; one of none, {', '.join(INTEGRATION_TO_CALLBACK)}"
                )
            if name not in get_available_reporting_integrations():
                extra = " (or `pip install 'prmsearch[tensorboard]'`)" if name == "tensorboard" else ""
                raise TrainConfigError(
                    f"report_to={name}: {name} is not installed; `pip install {name}`{extra}, or report_to=none"
                )

    @property
    def head(self) -> str:
        """The read-out of the kind being trained: prm_head, orm_head, or linear (bt)."""
        return {"prm": self.prm_head, "orm": self.orm_head}.get(self.kind, "linear")

    def _check_lm_head(self) -> None:
        """What the heads that read the LM's token probabilities (`models.implicit`, `models.likelihood`) do not do
        yet, refused before anything loads."""
        head = f"{self.kind}_head={self.head}"
        if self.kind == "orm" and self.aggregation == "prod":
            raise TrainConfigError(
                f"{head} gives every completion token the solution's value: use aggregation mean or min"
            )
        if self.packing:
            raise TrainConfigError(f"{head} trains on padded batches: set packing=false")
        if self.lora_r > 0:
            raise TrainConfigError(f"{head} trains the whole LM: set lora_r=0")
        if self.implicit_beta <= 0:
            raise TrainConfigError(f"implicit_beta must be > 0, got {self.implicit_beta}")

    def _check_paths(self) -> None:
        """Refuse missing data and models now, not after the model is built. A name that looks like a local path
        ("./x", "x.jsonl") and does not exist is a typo. Any other missing name could be a hub dataset, but with
        neither `tokenizer` nor `model` set the tokenizer can only come from the build.json beside local data, so
        that data must exist (else training stopped later with a puzzling "no tokenizer")."""
        paths = {
            "train_data": "file or folder",
            "eval_data": "file or folder",
            "model": "model",
            "tokenizer": "tokenizer",
        }
        for key, what in paths.items():
            if isinstance(getattr(self, key), str) and getattr(self, key):
                require_local(getattr(self, key), what, key)
        if not isinstance(self.train_data, str):
            if not (self.tokenizer or self.model):
                raise TrainConfigError("a Dataset given as train_data has no build.json: set `tokenizer` (or `model`)")
        elif not (self.tokenizer or self.model) and not os.path.exists(self.train_data):
            raise InputError(
                f"train_data {self.train_data}: no such file or folder; build it first with `prmsearch build` "
                "(recipes in data_builders/), or set `tokenizer` to train on a hub dataset"
            )

    @classmethod
    def from_yaml(cls, path: str, overrides: dict[str, Any] | None = None, **fixed: Any) -> TrainConfig:
        values = read_recipe(path, error=TrainConfigError)  # keys are checked after overrides, in from_dict
        return cls.from_dict(merge(values, {**(overrides or {}), **fixed}), source=path)

    @classmethod
    def from_dict(cls, values: dict[str, Any], source: str = "config") -> TrainConfig:
        values = {RENAMED.get(k, k): v for k, v in values.items()}
        known = [f.name for f in dataclasses.fields(cls) if f.init]
        unknown = sorted(set(values) - set(known))
        if unknown:
            near = [m for k in unknown for m in difflib.get_close_matches(k, known, 1)]
            hint = f" (did you mean {', '.join(near)}?)" if near else ""
            raise TrainConfigError(f"{source}: unknown keys {unknown}{hint}; the keys: `prmsearch train --help`")
        hints, own = typing.get_type_hints(cls), OWN_KEYS
        values = {k: _coerce(v, hints[k], f"{source}: {k}", numbers=k in own) for k, v in values.items()}
        return cls(**values)

    def recipe(self) -> dict[str, Any]:
        """This run as a recipe (`train_config.yaml`; `prmsearch train KIND train_config.yaml` runs it again): every
        key declared here, and the Trainer's keys whose values differ from transformers' defaults. (The Trainer's
        full arguments are in each checkpoint's training_args.bin.)"""
        values = self.to_dict()  # the Trainer's serialisation: enums as strings, secrets masked
        for key in ("train_data", "eval_data"):  # a Dataset object is data, not a setting
            if values[key] is not None and not isinstance(values[key], str):
                values[key] = f"<a {type(values[key]).__name__} of {len(values[key])} rows>"
        own = {k: values[k] for k in OWN_KEYS if k in values}
        inherited = {f.name for f in dataclasses.fields(TrainingArguments) if f.init}
        base = TrainingArguments(**{k: v for k, v in own.items() if k in inherited}, use_cpu=self.use_cpu).to_dict()
        return {**own, **{k: v for k, v in values.items() if k not in own and k in base and v != base[k]}}


def check_launch() -> None:
    """`accelerate launch --cpu --num_processes N` (N > 1) starts ONE process unless MPI is used (accelerate's
    simple launcher): refuse rather than silently train on one process. Its trace: a rendezvous address is set
    for more than one process, but no rank was given."""
    env = os.environ
    launched_alone = env.get("MASTER_ADDR") and not any(
        k in env for k in ("RANK", "WORLD_SIZE", "PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "PMI_RANK")
    )
    if launched_alone and env.get("ACCELERATE_USE_CPU", "").lower() in ("1", "true"):
        raise TrainConfigError(
            "`accelerate launch --cpu --num_processes N` starts only one process (accelerate runs N CPU processes "
            "only through mpirun, --mpirun_hostfile). For N processes on CPU use "
            "`accelerate launch --multi_gpu --num_processes N -m prmsearch train …` (torchrun + gloo when no GPU "
            "is present) or `torchrun --nproc_per_node N -m prmsearch train …`; for DeepSpeed on CPU use an "
            "accelerate config without --cpu (train/accelerate/zero2.yaml)."
        )


def parse_overrides(pairs: list[str]) -> dict[str, Any]:
    """`key=value` strings → a dict, each value read as YAML (`lr=1e-4` a float, `packing=false` a bool,
    `lora_target_modules=[q_proj,v_proj]` a list, `model_config.hidden_size=64` into the nested dict)."""
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise TrainConfigError(f"override {pair!r} is not key=value")
        try:
            value = yaml.safe_load(raw) if raw else None
        except yaml.YAMLError as e:
            raise TrainConfigError(f"override {pair!r}: the value is not valid YAML: {yaml_problem(e)}") from None
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


def _coerce(value: Any, hint: Any, where: str, numbers: bool = True) -> Any:
    """YAML reads `1e-5` as a string (YAML 1.1 wants `1.0e-5`); numbers are accepted in either spelling. An int
    becomes a float for our float keys (`numbers`); the Trainer's own keys keep it (its `*_steps` read an int as
    steps and a float below 1 as a share)."""
    if hint is Any:
        return value
    allowed = typing.get_args(hint) or (hint,)
    if isinstance(value, str) and str not in allowed:
        for kind in (int, float):
            if kind in allowed:
                try:
                    return kind(value)
                except ValueError:
                    continue
        raise TrainConfigError(f"{where}: expected {hint}, got {value!r}")
    if numbers and isinstance(value, int) and not isinstance(value, bool) and float in allowed and int not in allowed:
        return float(value)
    return value
