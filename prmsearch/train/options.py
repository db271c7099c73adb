"""The keys of a training recipe that are prmsearch's own, or the Trainer's with a reward model's default: the fields
and the one-line help of `TrainConfig` (`config.py`), which adds them to transformers' `TrainingArguments`. Apart,
because they import nothing heavy: `prmsearch train --help` lists them without loading torch."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..recipes import option


@dataclass
class TrainOptions:
    """The reward model's keys, and the Trainer keys whose defaults suit reward models differently."""

    kind: str = option("prm", "bt (pairs, sequence head), orm (outcome on every completion token), prm (step ends)")
    # the backbone: a hub id or folder with weights, or `model_config` (a transformers config as a dict, with
    # `model_type`) for a randomly initialised model: tiny recipes and tests
    model: str | None = option(None, "the backbone with its weights: a hub id, a local folder or embedded:policy")
    model_config: dict[str, Any] | None = option(
        None, "instead of model: a transformers config (a dict with model_type) for a randomly initialised backbone"
    )
    tokenizer: str | None = option(None, "default: the one the data was built with (its build.json), else model")
    train_data: Any = option(
        "",
        "what `prmsearch build` wrote, or TRL's rows (bt: chosen / rejected, optional prompt, plain or chat; prm: "
        "prompt / completions / labels; orm: prompt / completion / label): a folder, a .jsonl or .parquet file, a hub "
        "id, or in Python a datasets.Dataset",
    )
    eval_data: Any = option(None, "held-out data in the same form (default: eval_fraction of train_data)")
    eval_fraction: float = option(0.05, "share of train_data held out, by prompt group, when eval_data is not given")
    eval_max_examples: int | None = option(2000, "evaluate on at most this many examples (None: all)")
    # heads and losses
    prm_loss: str = option("ce", "prm: ce (0/1), ce3 (-1/0/+1, PRM800K), bce (soft labels), mse (sigmoid regression)")
    aggregation: str = option("mean", "orm: how token scores become a solution's score (mean, min, prod), kept with it")
    step_aggregation: str = option(
        "min",
        "prm: how step scores become a solution's score where it is used (search, rerank, serve, rewards) "
        "unless they are told otherwise: last, min, prod, mean; stored with the model",
    )
    prm_head: str = option(
        "linear",
        "prm: linear (a head read at step ends), implicit (the LM's log-likelihood ratio to its start) or "
        "likelihood (the log-probability of each step's least likely token, under the LM being trained)",
    )
    orm_head: str = option(
        "linear",
        "orm: linear (a head on every completion token) or likelihood (the log-probability of the completion's least "
        "likely token, under the LM being trained)",
    )
    implicit_beta: float = option(1.0, "prm_head=implicit: the scale beta of the summed log-likelihood ratio")
    bt_loss: str = option("bt", "bt: bt (pairwise) or plackett_luce (a ranking of each prompt's completions)")
    group_by_prompt: bool = option(False, "bt: all pairs of a prompt in one batch, each prompt weighted once")
    center_rewards_coefficient: float | None = option(None, "bt: weight of TRL's penalty that centres rewards on 0")
    # batching
    packing: bool = option(True, "orm, prm: one packed row per micro-batch, no padding")
    max_tokens_per_batch: int = option(8192, "packed row length cap, in tokens")
    warmup_ratio: float = option(0.0, "share of the steps over which the learning rate warms up from 0")
    # the backbone's memory
    attn_implementation: str | None = option(
        None, "the backbone's attention: eager, sdpa, flash_attention_2 (packed rows never attend across examples)"
    )
    lora_r: int = option(0, "> 0: train LoRA adapters of this rank (peft) plus the head, merged into the saved model")
    lora_alpha: int = option(16, "LoRA scaling")
    lora_dropout: float = option(0.0, "LoRA dropout")
    lora_target_modules: list[str] = option(["q_proj", "k_proj", "v_proj", "o_proj"], "modules given LoRA adapters")
    # TrainingArguments' keys, with a reward model's defaults
    output_dir: str | None = option("runs/rm", "checkpoints, the final model, metrics.json and train_config.yaml")
    per_device_train_batch_size: int = option(8, "examples (bt: pairs) per micro-batch on each device")
    per_device_eval_batch_size: int | None = option(None, "evaluation micro-batch (default: the training one)")
    learning_rate: float = option(1e-5, "peak learning rate")
    num_train_epochs: float = option(1.0, "passes over train_data (max_steps > 0 wins)")
    logging_steps: float = option(10, "log the loss every N optimiser steps")
    logging_first_step: bool = option(True, "log the loss of the first step too")
    save_total_limit: int | None = option(2, "checkpoints kept, the oldest deleted first (None: all)")
    remove_unused_columns: bool = option(False, "keep the built columns: the collators read them all")
