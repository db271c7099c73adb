"""The trainers: `TokenRMTrainer` (ORM / PRM, a `transformers.Trainer`) and `PairRMTrainer` (BT, TRL's
`RewardTrainer`), sharing batching, the global loss reduction and an evaluation that computes the kind's metrics.

Why the losses are reduced by hand: data-parallel training averages gradients over processes, so a shard with 3
supervised steps would weigh as much as one with 300. Token losses are divided by the number of supervised labels
of the whole optimizer step (all micro-batches, all processes; the Trainer counts them as `num_items_in_batch`), and
pair losses by the global number (or weight) of pairs, via `losses.global_mean`.
"""

from __future__ import annotations

import math
import os
from typing import Any

import torch
from torch.utils.data import DataLoader
from transformers import Trainer
from trl import RewardTrainer

from ..models.heads import HEADS
from ..models.reward_model import aggregate_tokens
from . import metrics as M
from .collators import GroupBatchSampler, PairCollator, TokenBudgetSampler, TokenCollator, sequences
from .losses import (
    IGNORE,
    bt_losses,
    centering_penalties,
    global_mean,
    group_pair_weights,
    orm_losses,
    plackett_luce_losses,
    prm_losses,
)


class _RMTrainerMixin:
    """Batch samplers for training and a metric-computing evaluation, for both trainers. `self.rm` is the
    `RewardModel` around the trained transformers model: its read-out turns head outputs into probabilities
    exactly as it will at scoring time."""

    rm: Any
    cfg: Any

    def _batch_sampler(self, dataset, shuffle: bool) -> TokenBudgetSampler:
        raise NotImplementedError

    def get_train_dataloader(self) -> DataLoader:
        loader = DataLoader(
            self.train_dataset,
            batch_sampler=self._batch_sampler(self.train_dataset, shuffle=True),
            collate_fn=self.data_collator,
            num_workers=self.args.dataloader_num_workers,
        )
        return self.accelerator.prepare(loader)

    # ---- evaluation ---------------------------------------------------------------------------------------------

    def _eval_model(self) -> torch.nn.Module:
        """The model as training runs it (the DeepSpeed engine under ZeRO-3 holds the gathered parameters)."""
        if self.is_deepspeed_enabled and self.model_wrapped is not self.model:
            return self.model_wrapped
        return self.model

    @torch.no_grad()
    def collect(self, dataset) -> list[dict[str, Any]]:
        """Per-example read-outs on this process's shard, gathered from all processes in dataset order.

        Every process runs the same number of forward passes (a shard is padded with repeats, then dropped): under
        ZeRO-3 each forward pass is a collective."""
        world, rank = self.accelerator.num_processes, self.accelerator.process_index
        per_process = math.ceil(len(dataset) / world)
        mine = [min(rank + k * world, len(dataset) - 1) for k in range(per_process)]
        real = [rank + k * world < len(dataset) for k in range(per_process)]
        model = self._eval_model()
        was_training = model.training
        model.eval()
        records: list[dict[str, Any]] = []
        size = self.args.per_device_eval_batch_size
        for start in range(0, per_process, size):
            idx = mine[start : start + size]
            batch = self.data_collator([dataset[i] for i in idx])
            batch = {k: v.to(self.args.device) if torch.is_tensor(v) else v for k, v in batch.items()}
            for rec, i, keep in zip(self._read_out(model, batch), idx, real[start : start + size], strict=True):
                if keep:
                    records.append({**rec, "index": i})
        model.train(was_training)
        if world > 1:
            from accelerate.utils import gather_object

            records = gather_object(records)
        return sorted(records, key=lambda r: r["index"])

    def evaluate(self, eval_dataset=None, ignore_keys=None, metric_key_prefix: str = "eval") -> dict[str, float]:
        dataset = eval_dataset if eval_dataset is not None else self.eval_dataset
        if dataset is None or len(dataset) == 0:
            return {}
        metrics = {f"{metric_key_prefix}_{k}": v for k, v in self.metrics(self.collect(dataset)).items()}
        self.log(metrics)
        self.control = self.callback_handler.on_evaluate(self.args, self.state, self.control, metrics)
        return metrics


class TokenRMTrainer(_RMTrainerMixin, Trainer):
    """ORM and PRM: a token head trained with our per-position losses on packed or padded batches."""

    def __init__(self, *args: Any, rm: Any, cfg: Any, **kwargs: Any) -> None:
        self.rm, self.cfg = rm, cfg
        super().__init__(*args, **kwargs)
        self.model_accepts_loss_kwargs = True  # so the Trainer counts supervised labels (num_items_in_batch)
        self.can_return_loss = True

    def _batch_sampler(self, dataset, shuffle: bool) -> TokenBudgetSampler:
        lengths = [len(x) for x in dataset["input_ids"]]
        return TokenBudgetSampler(
            lengths,
            batch_size=self.cfg.per_device_train_batch_size,
            max_tokens=self.cfg.max_tokens_per_batch if self.cfg.packing else None,
            shuffle=shuffle,
            seed=self.args.seed,
        )

    def _logits(self, model, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        inputs = {k: v for k, v in batch.items() if k != "labels"}
        return model(**inputs, use_cache=False).logits

    def _save(self, output_dir: str | None = None, state_dict: dict | None = None) -> None:
        """A checkpoint of an implicit or likelihood PRM (no transformers model) is its whole state dict, which the
        Trainer's resume loads back; safetensors' `save_model` stores a tied embedding once, where `save_file`
        refuses."""
        if not self.rm.reads_lm:
            return super()._save(output_dir, state_dict)
        from safetensors.torch import save_model
        from transformers.utils import SAFE_WEIGHTS_NAME

        output_dir = output_dir or self.args.output_dir
        os.makedirs(output_dir, exist_ok=True)
        save_model(self.accelerator.unwrap_model(self.model), os.path.join(output_dir, SAFE_WEIGHTS_NAME))
        self.rm.tokenizer.save_pretrained(output_dir)

    def _item_losses(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        if self.rm.kind == "orm":
            return orm_losses(logits, labels)
        return prm_losses(logits, labels, self.rm.prm_loss)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        logits = self._logits(model, inputs)
        values = self._item_losses(logits, inputs["labels"])
        loss = global_mean(values, accelerator=self.accelerator, total=num_items_in_batch)
        return (loss, {"logits": logits}) if return_outputs else loss

    def _read_out(self, model, batch: dict[str, torch.Tensor]) -> list[dict[str, Any]]:
        logits = self._logits(model, batch)
        probs = self.rm.probabilities(logits)
        out = []
        for row, a, b in sequences(batch):
            labels = batch["labels"][row, a:b]
            keep = labels != IGNORE
            losses = self._item_losses(logits[row, a:b][keep], labels[keep])
            out.append(
                {"probs": probs[row, a:b][keep].tolist(), "labels": labels[keep].tolist(), "loss": losses.sum().item()}
            )
        return out

    def metrics(self, records: list[dict[str, Any]]) -> dict[str, float]:
        n = sum(len(r["labels"]) for r in records)
        result = {"loss": sum(r["loss"] for r in records) / max(n, 1), "examples": float(len(records))}
        if self.rm.kind == "orm":
            how = self.rm.aggregation
            scores = torch.tensor(
                [aggregate_tokens(torch.tensor(r["probs"], dtype=torch.float64), how) for r in records]
            )
            outcome = torch.tensor([r["labels"][0] if r["labels"] else 0.0 for r in records])
            result.update(
                accuracy=M.binary_accuracy(scores, outcome),
                auroc=M.auroc(scores, outcome),
                ece=M.expected_calibration_error(scores, outcome),
            )
            return result
        probs = torch.tensor([p for r in records for p in r["probs"]])
        labels = torch.tensor([v for r in records for v in r["labels"]])
        if self.rm.prm_loss == "ce3":
            labels = (labels >= 0).float()  # 3-class ratings: an error is -1; neutral (0) counts as correct
        result.update(M.step_metrics(probs, labels))
        three = self.rm.prm_loss == "ce3"
        gold = [M.first_error([float(v >= 0 if three else v) for v in r["labels"]]) for r in records]
        predicted = [M.first_error(r["probs"]) for r in records]
        result.update(M.processbench_f1(predicted, gold))
        result["ece"] = M.expected_calibration_error(probs, labels)
        return result


class PairRMTrainer(_RMTrainerMixin, RewardTrainer):
    """BT on TRL's `RewardTrainer` (its dataset handling, margins and `center_rewards_coefficient`), with what TRL
    lacks: prompt-grouped batches that run each completion once and weight every prompt equally, a Plackett-Luce
    loss over each prompt's completions, and a loss reduced over the global batch."""

    def __init__(self, *args: Any, rm: Any, cfg: Any, **kwargs: Any) -> None:
        self.rm, self.cfg = rm, cfg
        super().__init__(*args, **kwargs)

    def _set_signature_columns_if_needed(self):
        if self._signature_columns is None:
            self._signature_columns = ["chosen_ids", "rejected_ids", "margin", "group_id"]

    def _batch_sampler(self, dataset, shuffle: bool) -> TokenBudgetSampler:
        if self.cfg.group_by_prompt:
            return GroupBatchSampler(
                dataset["group_id"],
                batch_size=self.cfg.per_device_train_batch_size,
                shuffle=shuffle,
                seed=self.args.seed,
            )
        return TokenBudgetSampler(
            [1] * len(dataset), batch_size=self.cfg.per_device_train_batch_size, shuffle=shuffle, seed=self.args.seed
        )

    def _rewards(self, model, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], use_cache=False)
        return out.logits.squeeze(-1).float()

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        rewards = self._rewards(model, inputs)
        chosen, rejected = rewards[inputs["chosen_index"]], rewards[inputs["rejected_index"]]
        if self.cfg.bt_loss == "plackett_luce":
            index = inputs["ranking_index"]
            values = plackett_luce_losses(rewards[index.clamp(min=0)], index >= 0, inputs["ranking_levels"])
            weights = None
        else:
            values = bt_losses(chosen, rejected, inputs.get("margin"))
            weights = group_pair_weights(inputs["pair_group"].tolist()) if self.cfg.group_by_prompt else None
        loss = global_mean(values, weights, self.accelerator)
        if self.args.center_rewards_coefficient:
            penalty = global_mean(centering_penalties(chosen, rejected), weights, self.accelerator)
            loss = loss + self.args.center_rewards_coefficient * penalty
        mode = "train" if model.training else "eval"
        with torch.no_grad():
            gathered = self.accelerator.gather_for_metrics(torch.stack([chosen.detach(), rejected.detach()], 1))
            self._metrics[mode]["accuracy"].append(M.pair_accuracy(gathered[:, 0], gathered[:, 1]))
            self._metrics[mode]["margin"].append(M.mean_margin(gathered[:, 0], gathered[:, 1]))
        return (loss, {"rewards": rewards}) if return_outputs else loss

    def _read_out(self, model, batch: dict[str, torch.Tensor]) -> list[dict[str, Any]]:
        rewards = self._rewards(model, batch)
        chosen, rejected = rewards[batch["chosen_index"]], rewards[batch["rejected_index"]]
        margin = batch.get("margin")
        losses = bt_losses(chosen, rejected, margin)
        return [
            {"chosen": c, "rejected": r, "loss": v}
            for c, r, v in zip(chosen.tolist(), rejected.tolist(), losses.tolist(), strict=True)
        ]

    def metrics(self, records: list[dict[str, Any]]) -> dict[str, float]:
        chosen = torch.tensor([r["chosen"] for r in records])
        rejected = torch.tensor([r["rejected"] for r in records])
        return {
            "loss": sum(r["loss"] for r in records) / max(len(records), 1),
            "examples": float(len(records)),
            "accuracy": M.pair_accuracy(chosen, rejected),
            "margin": M.mean_margin(chosen, rejected),
            "mean_reward": torch.cat([chosen, rejected]).mean().item() if records else 0.0,
        }


def make_collator(kind: str, pad_token_id: int, cfg: Any):
    if kind == "bt":
        return PairCollator(pad_token_id, rankings=cfg.bt_loss == "plackett_luce")
    return TokenCollator(pad_token_id, packing=cfg.packing, prompt_length=HEADS[cfg.head].reads_lm)
