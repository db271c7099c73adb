"""The TRL side of the PRM-training throughput benchmark: trl 1.13.0's `trl.experimental.prm.PRMTrainer`.

Standalone on purpose (stdlib + torch + transformers + trl + datasets, no `prmsearch` import): it runs in its own
venv pinned to trl 1.13.0, e.g.

    python3 -m venv /tmp/venv_trl113
    /tmp/venv_trl113/bin/pip install torch==2.13.0      # the local CPU wheel; never an unpinned torch
    /tmp/venv_trl113/bin/pip install trl==1.13.0        # resolved: transformers 5.23.0, accelerate 1.15.0,
                                                        #           datasets 5.2.0
    /tmp/venv_trl113/bin/python benchmarks/trl_prm_side.py --data stepwise.jsonl --tokenizer tok/ \
        --model-config tiny_qwen2.json --max-examples 512 --batch-size 8 --threads 2 --output trl.json

Input: `prmsearch build stepwise` JSONL (TRL's stepwise-supervision format: `prompt` str, `completions` list of
str, `labels` list of bool; other columns are dropped), a saved HF tokenizer folder, and a transformers config
JSON (with `model_type`) from which a randomly initialised `AutoModelForTokenClassification` (num_labels=2) is
built: `torch.manual_seed(seed)` right before `from_config`, `vocab_size` defaulting to `len(tokenizer)`,
`pad_token_id` to the tokenizer's, `classifier_dropout` 0 -- the same recipe as prmsearch's
`build_reward_model`, so both sides start from the same weights (`init_param_sha256` in the output lets the other
side check that). An `attn_implementation` key in the JSON is passed to `from_config` rather than kept in the config.

What trl 1.13.0 PRMTrainer does with a row (`PRMTrainer.tokenize_row`, applied with `Dataset.map` inside
`PRMTrainer.__init__` when the dataset has no `input_ids` column):

  * prompt_ids = tokenizer(prompt, add_special_tokens=False); each step is tokenized ON ITS OWN with
    add_special_tokens=False, and `tokenizer.encode(step_separator, add_special_tokens=False)` is appended to every
    step, including the last one. Token boundaries are therefore those of the pieces, not of the joined string.
  * NOTHING is put between the prompt and the first step: "...market?" + "Janet eats..." are adjacent tokens.
    (prmsearch's build.json says prompt_separator "\\n\\n"; TRL ignores that -- the stepwise rows don't carry it.)
  * Label placement: each step+separator piece gets -100 on every token but its LAST, which carries int(label)
    (True -> 1, False -> 0). With a one-token separator ("\\n" is id 198 for SmolLM2) the label sits on the
    separator token ending the step. train_on_last_step_only=False (set here) labels every step.
  * If `tokenizer.bos_token_id is not None`, [bos] is prepended to the prompt (for the SmolLM2 tokenizer that is
    <|im_start|>, id 1). No EOS is appended. The prompt (and BOS) tokens are all labelled -100.
  * Truncation, in this order: completion tokens cut to max_completion_length (None here, so not at all); then
    the whole prompt+completion sequence is cut to `max_length` (PRMConfig default 1024) by keeping the FIRST
    max_length tokens (right truncation); labels of steps whose last token falls beyond it are lost. Nothing
    else is cut or dropped; no example is filtered out.
  * Batching: transformers' DataCollatorForTokenClassification: `tokenizer.pad(padding=True)` to the longest
    example of the batch (no pad_to_multiple_of), on `tokenizer.padding_side` (right for SmolLM2), pad id
    `tokenizer.pad_token_id` (<|im_end|>, id 2 for SmolLM2), an attention_mask built by pad, labels padded with
    -100 on the same side. No packing, no position_ids.
  * Loss: the model's own token-classification loss: 2-way cross-entropy over the non-(-100) positions, mean over
    the labelled tokens of the micro-batch.

Trainer settings used here (PRMConfig is a TrainingArguments): report_to none, save_strategy no, eval_strategy no,
dataloader_num_workers 0, use_cpu, logging_steps 1, disable_tqdm, train_on_last_step_only False, the given
step_separator and max_length, seed/data_seed = --seed, lr scheduler linear with --warmup-ratio (passed as
warmup_steps=<float in [0,1)>: transformers 5 has no warmup_ratio), weight decay 0, max_grad_norm 1,
optimizer = TrainingArguments' default (adamw_torch_fused in transformers 5.23). NB PRMConfig's own defaults are
bf16=True and gradient_checkpointing=True (and lr 1e-5); this script turns both OFF unless --bf16 /
--gradient-checkpointing are given, to match prmsearch's defaults (fp32, no checkpointing); the JSON
records what was used.

Measurement: `train_seconds` is wall time around `trainer.train()` only. `prep_seconds` is reading the JSONL plus
`PRMTrainer(...)` construction, which is where the tokenization happens (`tokenize_seconds` is not separable from
the trainer's own setup, so it is reported together as prep). Token counts come from a thin wrapper around the
trainer's collator that records, per batch, sum of attention_mask (non-pad tokens), the padded tensor size, and
the labelled positions; only the first (steps x grad-accum) batches are counted because accelerate's dataloader
fetches one batch ahead. tokens_per_s = non-pad tokens of the examples trained on / train_seconds. The machine
may be shared: `loadavg_1min_before_after` and `train_cpu_seconds` / `tokens_per_cpu_s` say how much that mattered.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import statistics
import sys
import tempfile
import time


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", required=True, help="stepwise JSONL (prompt, completions, labels)")
    p.add_argument("--tokenizer", required=True, help="saved HF tokenizer folder")
    p.add_argument("--model-config", required=True, help="JSON transformers config with model_type")
    p.add_argument("--max-examples", type=int, default=None, help="use the first N rows of --data (default: all)")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--batch-size", type=int, default=8, help="per-device train batch size")
    p.add_argument("--gradient-accumulation-steps", type=int, default=1)
    p.add_argument("--max-steps", type=int, default=-1, help="optimizer steps; -1: use --epochs")
    p.add_argument("--epochs", type=float, default=1.0)
    p.add_argument("--learning-rate", type=float, default=1e-3)
    p.add_argument("--warmup-ratio", type=float, default=0.0)
    p.add_argument("--max-length", type=int, default=1024, help="PRMConfig.max_length (0: no truncation)")
    p.add_argument("--step-separator", default="\n")
    p.add_argument("--threads", type=int, default=2, help="torch intra-op threads (and OMP/MKL env)")
    p.add_argument("--bf16", action="store_true", help="CPU bf16 autocast (PRMConfig's own default; off here)")
    p.add_argument("--gradient-checkpointing", action="store_true", help="(PRMConfig's own default; off here)")
    p.add_argument("--output", required=True, help="JSON result path")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    if not 0 <= args.warmup_ratio < 1:
        raise SystemExit("--warmup-ratio must be in [0, 1)")
    # before torch is imported: thread pools and no hub traffic (TRL's trainer sends telemetry otherwise)
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(args.threads)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

    import accelerate
    import datasets
    import torch
    import transformers
    import trl
    from datasets import Dataset
    from transformers import AutoConfig, AutoModelForTokenClassification, AutoTokenizer, TrainerCallback
    from trl.experimental.prm import PRMConfig, PRMTrainer

    torch.set_num_threads(args.threads)
    transformers.set_seed(args.seed)

    # ---- model (not timed) ----
    tokenizer = AutoTokenizer.from_pretrained(args.tokenizer)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    with open(args.model_config, encoding="utf-8") as f:
        values = dict(json.load(f))
    model_kwargs = {}
    attn = values.pop("attn_implementation", None) or values.pop("_attn_implementation", None)
    if attn:
        model_kwargs["attn_implementation"] = attn
    values.setdefault("vocab_size", len(tokenizer))
    config = AutoConfig.for_model(values.pop("model_type"), **values)
    config.num_labels = 2
    config.classifier_dropout = 0.0
    if config.pad_token_id is None:
        config.pad_token_id = tokenizer.pad_token_id
    torch.manual_seed(args.seed)
    model = AutoModelForTokenClassification.from_config(config, **model_kwargs)
    sha = hashlib.sha256()
    for name, param in sorted(model.state_dict().items()):
        sha.update(name.encode())
        sha.update(param.detach().float().cpu().numpy().tobytes())
    init_param_sha256 = sha.hexdigest()
    n_params = sum(p.numel() for p in model.parameters())

    # ---- data + trainer construction (timed as prep) ----
    t0 = time.perf_counter()
    rows = []
    with open(args.data, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                r = json.loads(line)
                rows.append({"prompt": r["prompt"], "completions": r["completions"], "labels": r["labels"]})
            if args.max_examples is not None and len(rows) >= args.max_examples:
                break
    dataset = Dataset.from_list(rows)  # in memory: no datasets cache, so repeated runs re-tokenize

    out_dir = tempfile.mkdtemp(prefix="trl_prm_side_")
    prm_args = PRMConfig(
        output_dir=out_dir,
        report_to="none",
        save_strategy="no",
        eval_strategy="no",
        dataloader_num_workers=0,
        use_cpu=True,
        logging_steps=1,
        logging_first_step=True,
        disable_tqdm=True,
        train_on_last_step_only=False,
        step_separator=args.step_separator,
        max_length=args.max_length or None,
        per_device_train_batch_size=args.batch_size,
        gradient_accumulation_steps=args.gradient_accumulation_steps,
        max_steps=args.max_steps,
        num_train_epochs=args.epochs,
        learning_rate=args.learning_rate,
        warmup_steps=args.warmup_ratio,  # transformers 5 dropped warmup_ratio: a float in [0, 1) is a ratio
        lr_scheduler_type="linear",
        weight_decay=0.0,
        max_grad_norm=1.0,
        seed=args.seed,
        data_seed=args.seed,
        bf16=args.bf16,
        # the new name: passing only the deprecated `gradient_checkpointing` works too but warns
        activation_checkpointing=args.gradient_checkpointing,
    )

    class Losses(TrainerCallback):
        def __init__(self):
            self.losses: list[float] = []
            self.step_seconds: list[float] = []
            self._t = 0.0

        def on_step_begin(self, _args, state, control, **kw):
            self._t = time.perf_counter()

        def on_step_end(self, _args, state, control, **kw):
            self.step_seconds.append(time.perf_counter() - self._t)

        def on_log(self, _args, state, control, logs=None, **kw):
            if logs and "loss" in logs:
                self.losses.append(float(logs["loss"]))

    losses_cb = Losses()
    trainer = PRMTrainer(
        model=model, args=prm_args, train_dataset=dataset, processing_class=tokenizer, callbacks=[losses_cb]
    )
    prep_seconds = time.perf_counter() - t0

    # count what each batch holds (the collator runs in this process: dataloader_num_workers=0)
    inner_collator = trainer.data_collator
    batch_stats: list[tuple[int, int, int, int, int]] = []  # (examples, non-pad, padded, labelled, positive)

    def counting_collator(features):
        batch = inner_collator(features)
        lab = batch["labels"]
        batch_stats.append(
            (
                len(features),
                int(batch["attention_mask"].sum()),
                int(batch["input_ids"].numel()),
                int((lab != -100).sum()),
                int((lab == 1).sum()),
            )
        )
        return batch

    trainer.data_collator = counting_collator

    # truncation stats over the dataset (not timed): the same tokenize_row without max_length
    kw = dict(
        tokenizer=tokenizer,
        step_separator=args.step_separator,
        max_completion_length=None,
        train_on_last_step_only=False,
        is_eval=False,
    )
    full = [PRMTrainer.tokenize_row(r, max_length=None, **kw) for r in rows]
    cut = trainer.train_dataset
    truncated = sum(len(f["input_ids"]) > len(c) for f, c in zip(full, cut["input_ids"], strict=True))
    labels_lost = sum(
        sum(x != -100 for x in f["labels"]) - sum(x != -100 for x in c)
        for f, c in zip(full, cut["labels"], strict=True)
    )
    lengths = [len(x) for x in cut["input_ids"]]

    # ---- training (timed) ----
    load_before = os.getloadavg()
    c1 = time.process_time()
    t1 = time.perf_counter()
    result = trainer.train()
    train_seconds = time.perf_counter() - t1
    train_cpu_seconds = time.process_time() - c1
    load_after = os.getloadavg()

    steps = int(trainer.state.global_step)
    used = batch_stats[: steps * args.gradient_accumulation_steps]
    examples = sum(b[0] for b in used)
    tokens = sum(b[1] for b in used)
    padded = sum(b[2] for b in used)
    losses = losses_cb.losses
    out = {
        "trainer": f"trl {trl.__version__} PRMTrainer",
        "versions": {
            "trl": trl.__version__,
            "transformers": transformers.__version__,
            "accelerate": accelerate.__version__,
            "datasets": datasets.__version__,
            "torch": torch.__version__,
            "python": platform.python_version(),
        },
        "settings": {
            "data": os.path.abspath(args.data),
            "dataset_examples": len(rows),
            "batch_size": args.batch_size,
            "gradient_accumulation_steps": args.gradient_accumulation_steps,
            "max_steps": args.max_steps,
            "epochs": args.epochs,
            "learning_rate": args.learning_rate,
            "warmup_ratio": args.warmup_ratio,
            "max_length": args.max_length or None,
            "step_separator": args.step_separator,
            "threads": torch.get_num_threads(),
            "bf16": bool(prm_args.bf16),
            "gradient_checkpointing": bool(prm_args.activation_checkpointing),
            "model_gradient_checkpointing": bool(getattr(trainer.model, "is_activation_checkpointing", False)),
            "optim": str(getattr(prm_args.optim, "value", prm_args.optim)),
            "seed": args.seed,
            "attn_implementation": model.config._attn_implementation,
            "model_dtype": str(next(model.parameters()).dtype),
            "n_params": n_params,
            "init_param_sha256": init_param_sha256,
            "padding_side": tokenizer.padding_side,
            "bos_token_id": tokenizer.bos_token_id,
            "pad_token_id": tokenizer.pad_token_id,
            "separator_ids": tokenizer.encode(args.step_separator, add_special_tokens=False),
        },
        "dataset_stats": {
            "mean_length": statistics.mean(lengths),
            "max_length": max(lengths),
            "truncated_examples": truncated,
            "labels_lost_to_truncation": labels_lost,
        },
        "examples": examples,
        "steps": steps,
        "tokens": tokens,
        "padded_tokens": padded,
        "padded_over_nonpad": padded / tokens if tokens else None,
        "labelled_tokens": sum(b[3] for b in used),
        "positive_labels": sum(b[4] for b in used),
        "train_seconds": train_seconds,
        "train_cpu_seconds": train_cpu_seconds,  # process CPU time, all threads: steadier than wall on a busy box
        "tokens_per_cpu_s": tokens / train_cpu_seconds,
        "prep_seconds": prep_seconds,
        "tokens_per_s": tokens / train_seconds,
        "padded_tokens_per_s": padded / train_seconds,
        "examples_per_s": examples / train_seconds,
        "loadavg_1min_before_after": [load_before[0], load_after[0]],  # other work on the machine skews timings
        "cpu_count": os.cpu_count(),
        "trainer_train_runtime": result.metrics.get("train_runtime"),
        "first_loss": losses[0] if losses else None,
        "final_loss": statistics.mean(losses[-10:]) if losses else None,  # mean of the last 10 logged losses
        "final_loss_last": losses[-1] if losses else None,
        "trainer_train_loss": result.training_loss,
        "losses": losses,
        "step_seconds": losses_cb.step_seconds,  # on_step_begin..on_step_end (excludes data loading)
    }
    os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
    with open(args.output, "w", encoding="utf-8") as f:
        json.dump(out, f, indent=2)
    summary = {k: out[k] for k in ("examples", "steps", "tokens", "padded_tokens", "train_seconds", "tokens_per_s")}
    print(json.dumps(summary), file=sys.stderr)
    return out


if __name__ == "__main__":
    main()
