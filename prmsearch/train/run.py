"""`train(config)`: built data → reward model → trainer → checkpoints → final evaluation → a saved `RewardModel`.

Three steps, each a function: `prepare` (checks, tokenizer, model, data, Trainer), `fit` (the training loop) and
`finalize` (evaluation, the saved model, the run's records). What the data is and whether it fits the training asked
for is `data.py`'s job: its `build.json` (written by `prmsearch build`) supplies the tokenizer and the StepFormat the
labels were made with, so the saved model scores with the same step boundaries it was trained on.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..devices import short_of_memory
from ..errors import loading
from ..files import write_atomic
from ..models.heads import HEADS
from ..models.reward_model import RewardModel, write_settings
from ..steps import StepFormat
from .checkpoints import check_output, latest_whole
from .config import TrainConfig, TrainConfigError
from .data import inspect_data, load_data, load_data_tokenizer

CENTRE_SAMPLE = 512  # training pairs whose mean reward becomes a BT model's centre


@dataclass
class TrainResult:
    output_dir: str
    train_metrics: dict[str, float]
    eval_metrics: dict[str, float]
    losses: list[float]  # the logged training losses, in order


@dataclass
class Run:
    """A run as `prepare` leaves it: the reward model around the weights being trained, the two halves of the data,
    the Trainer that fits them, and the checkpoint to resume from (None for a fresh start)."""

    cfg: TrainConfig
    rm: RewardModel
    trainer: Any
    train_set: Any
    eval_set: Any | None
    checkpoint: str | None


def train(
    cfg: TrainConfig, *, resume: str | bool | None = None, callbacks: list[Any] | None = None, progress: bool = True
) -> TrainResult:
    """Train, evaluate and save; `resume` is a checkpoint folder, or True for the latest one in `output_dir`."""
    run = prepare(cfg, resume=resume, callbacks=callbacks, progress=progress)
    train_metrics = fit(run)
    return finalize(run, train_metrics)


# ---- 1. prepare ---------------------------------------------------------------------------------------------------


def prepare(
    cfg: TrainConfig, *, resume: str | bool | None = None, callbacks: list[Any] | None = None, progress: bool = True
) -> Run:
    """Everything before the first step. The cheap checks come first (the launch, the data's build.json, the
    checkpoint to resume from), so a mistake is reported before a model is loaded; then the tokenizer the data was
    built with, the model, the rows (checked against the model's vocabulary) and the Trainer."""
    from transformers import set_seed

    set_seed(cfg.seed)
    spec = inspect_data(cfg)
    checkpoint = _checkpoint(cfg, resume)
    check_output(cfg, resuming=checkpoint is not None)
    tokenizer = load_data_tokenizer(spec)
    rm = build_reward_model(cfg, tokenizer, spec.step_format)
    train_set, eval_set = load_data(cfg, spec, rm.model.get_input_embeddings().num_embeddings, rm.tokenizer)
    from .trainers import make_collator

    collate = make_collator(cfg.kind, rm.tokenizer.pad_token_id, cfg)
    if HEADS[cfg.head].calibrated and checkpoint is None:
        calibrate(cfg, rm, train_set, collate, progress=progress)
    trainer = _make_trainer(cfg, rm, train_set, eval_set, collate, callbacks=callbacks, progress=progress)
    return Run(cfg, rm, trainer, train_set, eval_set, checkpoint)


def calibrate(
    cfg: TrainConfig, rm: RewardModel, train_set: Any, collate: Any, *, rows: int = 1024, progress: bool = True
) -> None:
    """A likelihood head's scale and bias, fitted to (a seeded sample of) the training labels before the first step,
    in batches as `collate` (the trainer's collator) makes them: see `models.likelihood` for why. A resumed run
    reads them from its checkpoint instead."""
    sample = train_set.shuffle(seed=cfg.seed).select(range(min(rows, len(train_set))))
    size = cfg.per_device_train_batch_size
    batches = (
        collate([sample[i] for i in range(at, min(at + size, len(sample)))]) for at in range(0, len(sample), size)
    )
    fit = rm.model.calibrate(batches)
    if progress:
        what = "steps" if cfg.kind == "prm" else "solutions"
        fitted = f"scale={fit['scale']:.3f}, bias={fit['bias']:.3f}"
        print(f"likelihood head calibrated on {fit['examples']} {what}: {fitted}")


def _make_trainer(
    cfg: TrainConfig,
    rm: RewardModel,
    train_set: Any,
    eval_set: Any | None,
    collate: Any,
    *,
    callbacks: list[Any] | None,
    progress: bool,
) -> Any:
    """The Trainer for the kind (TRL's RewardTrainer underneath for BT), on the model as it will be trained: with
    prmsearch's attention for packed rows, the settings in its config, and LoRA adapters when asked for."""
    from .trainers import PairRMTrainer, TokenRMTrainer

    if cfg.attn_implementation in (None, "sdpa", "prmsearch_varlen") and (cfg.kind == "bt" or cfg.packing):
        # Packed rows need per-example attention; right-padded pair batches get the same causal kernel without a
        # padding mask (exact for the real tokens, which precede the padding).
        from . import packed_attention

        rm.model.set_attn_implementation(packed_attention.register())
    write_settings(rm.model, rm)  # now, so every checkpoint loads with RewardModel.from_pretrained
    model = _with_lora(cfg, rm.model) if cfg.lora_r > 0 else rm.model
    args = _trainer_args(cfg, progress)
    trainer_cls = PairRMTrainer if cfg.kind == "bt" else TokenRMTrainer
    return trainer_cls(
        model=model,
        args=args,
        data_collator=collate,
        train_dataset=train_set,
        eval_dataset=eval_set,
        processing_class=rm.tokenizer,
        callbacks=callbacks,
        rm=rm,
        cfg=cfg,
    )


def _checkpoint(cfg: TrainConfig, resume: str | bool | None) -> str | None:
    """The checkpoint folder `resume` names: itself, the newest whole `checkpoint-*` in output_dir for True, or
    None."""
    if resume is not True:
        return resume or None
    return os.fspath(latest_whole(Path(cfg.output_dir)))


def build_reward_model(cfg: TrainConfig, tokenizer: Any, fmt: StepFormat | None) -> RewardModel:
    """A new head on `cfg.model` (pretrained weights) or on a random `cfg.model_config` backbone, seeded so the
    same recipe starts from the same weights; its vocabulary is the data tokenizer's."""
    kwargs: dict[str, Any] = {}
    if cfg.attn_implementation:
        kwargs["attn_implementation"] = cfg.attn_implementation
    if cfg.model_config is not None:
        from transformers import AutoConfig

        values = dict(cfg.model_config)
        values.setdefault("vocab_size", len(tokenizer))
        backbone = AutoConfig.for_model(values.pop("model_type"), **values)
        _check_fits(backbone)
        torch.manual_seed(cfg.seed)  # random init is part of the run: same seed, same weights
    else:
        backbone = cfg.model
    with loading(cfg.model or "model_config", "backbone"):
        return _from_backbone(cfg, backbone, tokenizer, fmt, kwargs)


def _from_backbone(cfg: TrainConfig, backbone: Any, tokenizer: Any, fmt: StepFormat | None, kwargs: dict) -> Any:
    return RewardModel.from_backbone(
        backbone,
        tokenizer,
        cfg.kind,
        fmt,
        prm_loss=cfg.prm_loss,
        aggregation=cfg.aggregation,
        step_aggregation=cfg.step_aggregation if cfg.kind == "prm" else None,
        head=cfg.head,
        beta=cfg.implicit_beta,
        **kwargs,
    )


BYTES_TO_TRAIN = 16  # per parameter in fp32 with Adam: the weight, its gradient and two moments


def _check_fits(config: Any) -> None:
    """Refuse a `model_config` whose model cannot be trained in the memory free here, before it is built: a config
    without sizes takes transformers' defaults (a qwen2 of 7B parameters), and building it gets the process killed
    without a word. The count is a decoder's: embeddings, then per layer attention (queries and output h^2 each,
    keys and values h times their width) and a gated MLP (3 h i); norms and biases left out."""
    h, layers = getattr(config, "hidden_size", 0) or 0, getattr(config, "num_hidden_layers", 0) or 0
    inner, vocab = getattr(config, "intermediate_size", None) or 4 * h, getattr(config, "vocab_size", 0) or 0
    heads = getattr(config, "num_attention_heads", 0) or 1
    kv_width = (getattr(config, "num_key_value_heads", None) or heads) * (h // heads)
    params = vocab * h + layers * (2 * h * h + 2 * h * kv_width + 3 * h * inner)
    free = short_of_memory(params * BYTES_TO_TRAIN)
    if free is not None:
        raise TrainConfigError(
            f"model_config builds a model of about {params / 1e9:.1f}B parameters (hidden_size {h}, "
            f"num_hidden_layers {layers}), {params * BYTES_TO_TRAIN / 2**30:.0f} GiB to train, more than the "
            f"{free / 2**30:.0f} GiB free: give its sizes (hidden_size, num_hidden_layers, intermediate_size, ...)"
        )


def _trainer_args(cfg: TrainConfig, progress: bool) -> Any:
    """The Trainer's copy of the config (the Trainer may change its arguments; the caller's config stays as it
    was): the config itself for ORM / PRM, TRL's `RewardConfig` for BT, which reads a few keys of its own."""
    changed: dict[str, Any] = {"disable_tqdm": True} if not progress else {}
    for key in ("train_data", "eval_data"):  # a Dataset object stays out of the Trainer's saved arguments
        value = getattr(cfg, key)
        if value is not None and not isinstance(value, str):
            changed[key] = f"<{type(value).__name__}>"
    if cfg.kind != "bt":
        return dataclasses.replace(cfg, **changed)
    from trl import RewardConfig

    shared = {f.name: getattr(cfg, f.name) for f in dataclasses.fields(RewardConfig) if f.init and hasattr(cfg, f.name)}
    shared.update((k, v) for k, v in changed.items() if k in shared)
    return RewardConfig(**shared, max_length=None, disable_dropout=True)


def _with_lora(cfg: TrainConfig, model: Any) -> Any:
    try:
        from peft import LoraConfig, get_peft_model
    except ImportError as e:
        raise TrainConfigError("lora_r > 0 needs peft: pip install 'prmsearch[peft]'") from e
    task = "SEQ_CLS" if cfg.kind == "bt" else "TOKEN_CLS"
    lora = LoraConfig(
        r=cfg.lora_r,
        lora_alpha=cfg.lora_alpha,
        lora_dropout=cfg.lora_dropout,
        target_modules=cfg.lora_target_modules,
        modules_to_save=["score"],
        task_type=task,
    )
    return get_peft_model(model, lora)


# ---- 2. fit -------------------------------------------------------------------------------------------------------


def fit(run: Run) -> dict[str, float]:
    """The training loop itself (the Trainer's), writing checkpoints as it goes; returns its metrics."""
    return run.trainer.train(resume_from_checkpoint=run.checkpoint).metrics


# ---- 3. finalize --------------------------------------------------------------------------------------------------


def finalize(run: Run, train_metrics: dict[str, float]) -> TrainResult:
    """The final evaluation, the BT centre, the saved model and the run's records (metrics.json and the config).
    A run a callback stopped early (an interruption) keeps its checkpoints and writes no final model."""
    trainer, cfg, rm = run.trainer, run.cfg, run.rm
    if trainer.control.should_training_stop and trainer.state.global_step < trainer.state.max_steps:
        return TrainResult(cfg.output_dir, train_metrics, {}, _losses(trainer))

    eval_metrics = trainer.evaluate() if run.eval_set is not None else {}
    if cfg.kind == "bt":  # the training-time reward centre, subtracted at scoring time
        sample = run.train_set.select(range(min(len(run.train_set), CENTRE_SAMPLE)))
        records = trainer.collect(sample)
        rm.center = sum(r["chosen"] + r["rejected"] for r in records) / (2 * len(records))
    _save_model(trainer, rm, cfg)
    result = TrainResult(cfg.output_dir, train_metrics, eval_metrics, _losses(trainer))
    if trainer.accelerator.is_main_process:
        _save_records(trainer, cfg, result)
    return result


def _save_model(trainer, rm: RewardModel, cfg: TrainConfig) -> None:
    """The final model in `output_dir`, loadable by `RewardModel.from_pretrained` (LoRA merged into it). It is
    saved into a temporary folder first and each file renamed into place, so a kill while saving leaves every file
    of the model whole (the old one or the new one), never half-written weights."""
    staging = os.path.join(cfg.output_dir, ".final-model.tmp")
    if trainer.accelerator.is_main_process:
        shutil.rmtree(staging, ignore_errors=True)  # what a killed save left
    if cfg.lora_r > 0:
        merged = trainer.accelerator.unwrap_model(trainer.model).merge_and_unload()
        write_settings(merged, rm)
        if trainer.accelerator.is_main_process:
            merged.save_pretrained(staging)
            rm.tokenizer.save_pretrained(staging)
    elif rm.reads_lm:
        if trainer.accelerator.is_main_process:
            rm.save_pretrained(staging)  # the LM in the folder (an implicit PRM's reference in ref/), its read-out
    else:
        write_settings(trainer.accelerator.unwrap_model(trainer.model), rm)
        trainer.save_model(staging)  # gathers ZeRO-3 shards; saves the tokenizer too
    if trainer.accelerator.is_main_process:
        for name in os.listdir(staging):
            target = os.path.join(cfg.output_dir, name)
            if os.path.isdir(target) and not os.path.islink(target):
                shutil.rmtree(target)  # a folder (an implicit PRM's ref/) cannot be renamed onto an old one
            os.replace(os.path.join(staging, name), target)
        os.rmdir(staging)


def _save_records(trainer, cfg: TrainConfig, result: TrainResult) -> None:
    """metrics.json: final metrics, how the run was launched, the log history (the config it ran with is
    train_config.yaml, written when the run started: `checkpoints.check_output`)."""
    acc = trainer.accelerator
    launch = {"distributed_type": str(acc.distributed_type.value), "num_processes": acc.num_processes}
    if trainer.is_deepspeed_enabled:
        launch["zero_stage"] = acc.state.deepspeed_plugin.zero_stage
    record = {"train": result.train_metrics, "eval": result.eval_metrics, "launch": launch}
    record["log_history"] = trainer.state.log_history
    write_atomic(os.path.join(cfg.output_dir, "metrics.json"), json.dumps(record, indent=2))


def _losses(trainer) -> list[float]:
    return [h["loss"] for h in trainer.state.log_history if "loss" in h]
