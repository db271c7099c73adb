"""`train(config)`: built data → reward model → trainer → checkpoints → final evaluation → a saved `RewardModel`.

The data's `build.json` (written by `prmsearch build`) supplies the tokenizer and the StepFormat the labels were
made with, so the saved model scores with the same step boundaries it was trained on.
"""

from __future__ import annotations

import json
import os
import zlib
from dataclasses import dataclass
from typing import Any

import torch

from ..models.reward_model import RewardModel
from ..steps import StepFormat
from .config import TrainConfig, TrainConfigError
from .losses import IGNORE

REQUIRED_COLUMNS = {
    "prm": ("input_ids", "labels"),
    "orm": ("input_ids", "labels"),
    "bt": ("chosen_input_ids", "rejected_input_ids"),
}


CENTRE_SAMPLE = 512  # training pairs whose mean reward becomes a BT model's centre


@dataclass
class TrainResult:
    output_dir: str
    train_metrics: dict[str, float]
    eval_metrics: dict[str, float]
    losses: list[float]  # the logged training losses, in order


def build_summary(path: str) -> dict[str, Any]:
    """The `build.json` next to built data, or {} for data from elsewhere (a hub dataset, hand-made files)."""
    for meta in (os.path.join(path, "build.json"), path + ".build.json"):
        if os.path.isfile(meta):
            with open(meta, encoding="utf-8") as f:
                return json.load(f)
    return {}


def load_built(path: str, kind: str):
    """A dataset written by `prmsearch build` (folder, .jsonl, .parquet), or a hub dataset id."""
    import datasets

    if os.path.isdir(path):
        ds = datasets.load_from_disk(path)
    elif path.endswith((".jsonl", ".json")):
        ds = datasets.load_dataset("json", data_files=path, split="train")
    elif path.endswith(".parquet"):
        ds = datasets.load_dataset("parquet", data_files=path, split="train")
    elif os.path.exists(path):
        raise TrainConfigError(f"{path}: expected a folder, .jsonl or .parquet written by `prmsearch build`")
    else:
        ds = datasets.load_dataset(path, split="train")
    if isinstance(ds, datasets.DatasetDict):
        ds = ds["train"]
    missing = [c for c in REQUIRED_COLUMNS[kind] if c not in ds.column_names]
    if missing:
        raise TrainConfigError(
            f"{path}: a {kind} training set needs columns {list(REQUIRED_COLUMNS[kind])}, missing {missing} "
            f"(has {ds.column_names}); build it with "
            f"`prmsearch build {'pairs' if kind == 'bt' else kind} --tokenizer …`"
        )
    if kind == "bt":
        ds = ds.rename_columns({"chosen_input_ids": "chosen_ids", "rejected_input_ids": "rejected_ids"})
    return ds


ALLOWED_LABELS = {"ce": "0 or 1", "ce3": "-1, 0 or 1", "bce": "in [0, 1]", "mse": "in [0, 1]", "orm": "0 or 1"}


def _label_ok(value: float, rule: str) -> bool:
    if rule == "0 or 1":
        return value in (0, 1)
    if rule == "-1, 0 or 1":
        return value in (-1, 0, 1)
    return 0.0 <= value <= 1.0


def validate_rows(ds, cfg: TrainConfig, path: str, vocab_size: int) -> None:
    """Fail before training, naming the row and field, rather than deep inside a forward pass (an index error in
    the embedding) or, worse, training on labels the loss misreads."""
    id_columns = ("chosen_ids", "rejected_ids") if cfg.kind == "bt" else ("input_ids",)
    for column in id_columns:
        for row, ids in enumerate(ds[column]):
            if not ids:
                raise TrainConfigError(f"{path}: row {row}: field '{column}' is empty")
            if max(ids) >= vocab_size or min(ids) < 0:
                raise TrainConfigError(
                    f"{path}: row {row}: field '{column}' has token id {max(ids)} outside the model's vocabulary "
                    f"({vocab_size}): the data was built with a different tokenizer than the model's"
                )
    if cfg.kind == "bt":
        return
    rule = ALLOWED_LABELS["orm" if cfg.kind == "orm" else cfg.prm_loss]
    for row, (ids, labels) in enumerate(zip(ds["input_ids"], ds["labels"], strict=True)):
        if len(labels) != len(ids):
            raise TrainConfigError(f"{path}: row {row}: field 'labels' has {len(labels)} entries for {len(ids)} tokens")
        bad = next((v for v in labels if v != IGNORE and not _label_ok(v, rule)), None)
        if bad is not None:
            raise TrainConfigError(
                f"{path}: row {row}: field 'labels' has {bad!r}; {cfg.kind} training with "
                f"{'prm_loss=' + cfg.prm_loss if cfg.kind == 'prm' else 'BCE'} needs {rule} (or {IGNORE})"
            )


def split_eval(ds, fraction: float, seed: int):
    """Hold out whole prompt groups (hash of group_id), so no prompt is in both halves."""
    if fraction <= 0:
        return ds, None
    groups = ds["group_id"] if "group_id" in ds.column_names else [str(i) for i in range(len(ds))]
    held = [zlib.crc32(f"{seed}:{g}".encode()) % 10_000 < fraction * 10_000 for g in groups]
    train = ds.select([i for i, h in enumerate(held) if not h])
    held_out = ds.select([i for i, h in enumerate(held) if h])
    return train, (held_out if len(held_out) else None)


def _check_labels(cfg: TrainConfig, summary: dict[str, Any], path: str) -> None:
    label_kind = summary.get("label_kind")
    if cfg.kind != "prm" or label_kind is None:
        return
    if label_kind == "three-class" and cfg.prm_loss != "ce3":
        raise TrainConfigError(f"{path} has 3-class labels (-1/0/+1): train with prm_loss=ce3")
    if label_kind == "soft" and cfg.prm_loss in ("ce", "ce3"):
        raise TrainConfigError(f"{path} has soft labels: train with prm_loss=bce or prm_loss=mse")


def build_reward_model(cfg: TrainConfig, tokenizer: Any, fmt: StepFormat) -> RewardModel:
    kwargs: dict[str, Any] = {}
    if cfg.attn_implementation:
        kwargs["attn_implementation"] = cfg.attn_implementation
    if cfg.model_config is not None:
        from transformers import AutoConfig

        values = dict(cfg.model_config)
        values.setdefault("vocab_size", len(tokenizer))
        backbone = AutoConfig.for_model(values.pop("model_type"), **values)
        torch.manual_seed(cfg.seed)  # random init is part of the run: same seed, same weights
    else:
        backbone = cfg.model
    return RewardModel.from_backbone(
        backbone, tokenizer, cfg.kind, fmt, prm_loss=cfg.prm_loss, aggregation=cfg.aggregation, **kwargs
    )


def _training_args(cfg: TrainConfig):
    from transformers import TrainingArguments
    from trl import RewardConfig

    common = {
        "output_dir": cfg.output_dir,
        "per_device_train_batch_size": cfg.per_device_batch_size,
        "per_device_eval_batch_size": cfg.per_device_batch_size,
        "gradient_accumulation_steps": cfg.gradient_accumulation_steps,
        "learning_rate": cfg.learning_rate,
        "weight_decay": cfg.weight_decay,
        "warmup_steps": cfg.warmup_ratio,
        "lr_scheduler_type": cfg.lr_scheduler_type,
        "num_train_epochs": cfg.num_train_epochs,
        "max_steps": cfg.max_steps,
        "max_grad_norm": cfg.max_grad_norm,
        "seed": cfg.seed,
        "bf16": cfg.bf16,
        "activation_checkpointing": cfg.gradient_checkpointing,
        "deepspeed": cfg.deepspeed,
        "logging_steps": cfg.logging_steps,
        "logging_first_step": True,
        "save_strategy": "steps",
        "save_steps": cfg.save_steps,
        "save_total_limit": cfg.save_total_limit,
        "eval_strategy": "steps" if cfg.eval_steps else "no",
        "eval_steps": cfg.eval_steps,
        "report_to": cfg.report_to,
        "dataloader_num_workers": cfg.dataloader_num_workers,
        "remove_unused_columns": False,
        "average_tokens_across_devices": True,
        # Without an accelerator the Trainer only joins a multi-process (gloo) group when told it is on CPU.
        "use_cpu": not _has_accelerator(),
    }
    if cfg.kind == "bt":
        return RewardConfig(
            **common,
            center_rewards_coefficient=cfg.center_rewards_coefficient,
            max_length=None,
            disable_dropout=True,
        )
    return TrainingArguments(**common)


def _has_accelerator() -> bool:
    return torch.cuda.is_available() or (hasattr(torch, "xpu") and torch.xpu.is_available())


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


def train(
    cfg: TrainConfig, *, resume: str | bool | None = None, callbacks: list[Any] | None = None, progress: bool = True
) -> TrainResult:
    """Train, evaluate and save; `resume` is a checkpoint folder, or True for the latest one in `output_dir`."""
    from transformers import set_seed
    from transformers.trainer_utils import get_last_checkpoint

    from ..models.tokenizers import load_tokenizer
    from .trainers import PairRMTrainer, TokenRMTrainer, make_collator

    check_launch()
    set_seed(cfg.seed)
    summary = build_summary(cfg.train_data)
    _check_labels(cfg, summary, cfg.train_data)
    fmt = StepFormat(**summary["step_format"]) if "step_format" in summary else StepFormat()
    tokenizer_name = cfg.tokenizer or summary.get("tokenizer") or cfg.model
    if not tokenizer_name:
        raise TrainConfigError("no tokenizer: set `tokenizer` (the data's build.json names none)")
    tokenizer = load_tokenizer(tokenizer_name)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token

    rm = build_reward_model(cfg, tokenizer, fmt)
    vocab = rm.model.get_input_embeddings().num_embeddings
    data = load_built(cfg.train_data, cfg.kind)
    validate_rows(data, cfg, cfg.train_data, vocab)
    if cfg.eval_data:
        train_set, eval_set = data, load_built(cfg.eval_data, cfg.kind)
        validate_rows(eval_set, cfg, cfg.eval_data, vocab)
    else:
        train_set, eval_set = split_eval(data, cfg.eval_fraction, cfg.seed)
    if eval_set is not None and cfg.eval_max_examples is not None and len(eval_set) > cfg.eval_max_examples:
        eval_set = eval_set.select(range(cfg.eval_max_examples))
    if len(train_set) == 0:
        raise TrainConfigError(f"{cfg.train_data}: no training examples")

    if cfg.attn_implementation in (None, "sdpa", "prmsearch_varlen") and (cfg.kind == "bt" or cfg.packing):
        # Packed rows need per-example attention; right-padded pair batches get the same causal kernel without a
        # padding mask (exact for the real tokens, which precede the padding).
        from . import packed_attention

        rm.model.set_attn_implementation(packed_attention.register())
    rm.model.config.prmsearch = rm.settings()  # so every checkpoint loads with RewardModel.from_pretrained
    model = _with_lora(cfg, rm.model) if cfg.lora_r > 0 else rm.model
    args = _training_args(cfg)
    if not progress:
        args.disable_tqdm = True
    trainer_cls = PairRMTrainer if cfg.kind == "bt" else TokenRMTrainer
    trainer = trainer_cls(
        model=model,
        args=args,
        data_collator=make_collator(cfg.kind, tokenizer.pad_token_id, cfg),
        train_dataset=train_set,
        eval_dataset=eval_set,
        processing_class=tokenizer,
        callbacks=callbacks,
        rm=rm,
        cfg=cfg,
    )
    if resume is True:
        resume = get_last_checkpoint(cfg.output_dir)
        if resume is None:
            raise TrainConfigError(f"--resume: no checkpoint-* folder in {cfg.output_dir}")
    output = trainer.train(resume_from_checkpoint=resume or None)
    if trainer.control.should_training_stop and trainer.state.global_step < trainer.state.max_steps:
        # stopped early by a callback (an interruption): keep the checkpoints, do not write a final model
        return TrainResult(cfg.output_dir, output.metrics, [], _losses(trainer))

    eval_metrics = trainer.evaluate() if eval_set is not None else {}
    if cfg.kind == "bt":  # the training-time reward centre, subtracted at scoring time
        sample = train_set.select(range(min(len(train_set), CENTRE_SAMPLE)))
        records = trainer.collect(sample)
        rm.center = sum(r["chosen"] + r["rejected"] for r in records) / (2 * len(records))
    _save(trainer, rm, cfg)
    result = TrainResult(cfg.output_dir, output.metrics, eval_metrics, _losses(trainer))
    if trainer.accelerator.is_main_process:
        with open(os.path.join(cfg.output_dir, "metrics.json"), "w", encoding="utf-8") as f:
            acc = trainer.accelerator
            launch = {"distributed_type": str(acc.distributed_type.value), "num_processes": acc.num_processes}
            if trainer.is_deepspeed_enabled:
                launch["zero_stage"] = acc.state.deepspeed_plugin.zero_stage
            record = {"train": result.train_metrics, "eval": eval_metrics, "launch": launch}
            json.dump({**record, "log_history": trainer.state.log_history}, f, indent=2)
        import yaml

        with open(os.path.join(cfg.output_dir, "train_config.yaml"), "w", encoding="utf-8") as f:
            yaml.safe_dump(cfg.to_dict(), f, sort_keys=False)
    return result


def _losses(trainer) -> list[float]:
    return [h["loss"] for h in trainer.state.log_history if "loss" in h]


def _save(trainer, rm: RewardModel, cfg: TrainConfig) -> None:
    """The final model in `output_dir`, loadable by `RewardModel.from_pretrained` (LoRA merged into it)."""
    settings = rm.settings()
    if cfg.lora_r > 0:
        merged = trainer.accelerator.unwrap_model(trainer.model).merge_and_unload()
        merged.config.prmsearch = settings
        if trainer.accelerator.is_main_process:
            merged.save_pretrained(cfg.output_dir)
            rm.tokenizer.save_pretrained(cfg.output_dir)
        return
    trainer.accelerator.unwrap_model(trainer.model).config.prmsearch = settings
    trainer.save_model(cfg.output_dir)  # gathers ZeRO-3 shards; saves the tokenizer too
