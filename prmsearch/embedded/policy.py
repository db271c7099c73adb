"""The embedded policy: a tiny causal LM trained on the bundled task's worked solutions with TRL's `SFTTrainer`.

It is meant to be imperfect: small and briefly trained, it has learnt the shape of a solution (which numbers each
step combines, when to stop) but not all of arithmetic, so sampled solutions make real, step-local slips (a wrong
carry, a digit off) at a rate a reward model can be shown to catch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..records import Problem
from ..tasks.chains import SEPARATOR


@dataclass
class PolicySpec:
    """Size and training of the tiny policy."""

    hidden_size: int = 128  # width; head_dim 32 (hidden / heads) is the smallest vLLM's CPU attention runs
    num_hidden_layers: int = 4  # depth
    num_attention_heads: int = 4  # heads
    intermediate_size: int = 384  # MLP width
    steps: int = 500  # optimizer steps
    batch_size: int = 64  # examples per step
    learning_rate: float = 3e-3  # peak learning rate (cosine decay, 5% warm-up)
    seed: int = 2  # weights and data order
    # torch threads of the SFT, fixed so the policy is the same bits on any core count (a CPU sums in another
    # order with more threads, and this policy's strength swings with tiny differences: greedy 0.41 / 0.73 on the
    # same data with seeds 1 / 2); a second thread barely speeds up a model this small
    threads: int = 1


def sft_rows(problems: list[Problem], eos: str) -> list[dict[str, str]]:
    """Prompt-completion rows in the layout search uses ("plain" prompt template): the problem, a blank line, the
    steps joined by the separator, then EOS."""
    return [{"prompt": p.prompt + SEPARATOR, "completion": SEPARATOR.join(p.meta["steps"]) + eos} for p in problems]


def train_policy(problems: list[Problem], tokenizer: Any, output_dir: str, spec: PolicySpec | None = None) -> Any:
    """Train a `LlamaForCausalLM` from scratch on `problems`' worked solutions (loss on the completion only) and
    save it with `tokenizer` to `output_dir`. Returns the model."""
    import torch
    from datasets import Dataset
    from transformers import LlamaConfig, LlamaForCausalLM
    from trl import SFTConfig, SFTTrainer

    spec = spec or PolicySpec()
    torch.manual_seed(spec.seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=spec.hidden_size,
        num_hidden_layers=spec.num_hidden_layers,
        num_attention_heads=spec.num_attention_heads,
        num_key_value_heads=spec.num_attention_heads,
        intermediate_size=spec.intermediate_size,
        max_position_embeddings=512,
        tie_word_embeddings=True,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=None,
    )
    model = LlamaForCausalLM(config)
    data = Dataset.from_list(sft_rows(problems, ""))
    args = SFTConfig(
        output_dir=output_dir,
        max_steps=spec.steps,
        per_device_train_batch_size=spec.batch_size,
        learning_rate=spec.learning_rate,
        lr_scheduler_type="cosine",
        warmup_steps=max(1, spec.steps // 20),
        weight_decay=0.0,
        logging_steps=max(1, spec.steps // 20),
        save_strategy="no",
        report_to=[],
        seed=spec.seed,
        data_seed=spec.seed,
        completion_only_loss=True,
        max_length=256,
        use_cpu=not torch.cuda.is_available(),
        bf16=False,  # TRL's default; on a CPU without bf16 units autocast makes every matmul ~10x slower
        gradient_checkpointing=False,  # TRL's default; a tiny model has no activation memory to save
        disable_tqdm=False,
    )
    trainer = SFTTrainer(model=model, args=args, train_dataset=data, processing_class=tokenizer)
    threads = torch.get_num_threads()
    torch.set_num_threads(spec.threads)
    try:
        trainer.train()
    finally:
        torch.set_num_threads(threads)
    model.save_pretrained(output_dir)
    tokenizer.save_pretrained(output_dir)
    return model
