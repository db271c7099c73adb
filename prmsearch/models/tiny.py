"""Tiny random-weight models for tests, benchmarks and CPU dry runs of the search pipeline.

A random language model samples near-uniformly from a vocabulary of ~50k tokens, so it never writes a step
separator or an end of text, and search over it would only ever see cut-off steps. `tiny_policy` keeps the random
transformer but gives its output layer a bias that allows only digits, a few operators, the step separator and EOS,
so it writes short "3 + 41 = 7"-shaped steps and ends its solutions: the shape of real reasoning traces, with none
of the skill. `tiny_prm` is a random process reward model on the same tokenizer.
"""

from __future__ import annotations

from typing import Any

from ..steps import StepFormat

# head_dim 32: the smallest head size vLLM's CPU attention runs, so the same tiny policy serves both backends.
SIZES = {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 2}
_WORDS = [str(d) for d in range(10)] + [f" {d}" for d in range(10)] + [" +", " -", " *", " =", " x"]


def tiny_policy(
    tokenizer: Any,
    *,
    separator: str = "\n\n",
    tokens_per_step: float = 8.0,
    steps_per_solution: float = 4.0,
    seed: int = 0,
    **config: Any,
) -> Any:
    """A random `PhiForCausalLM` (its output layer has a bias) that writes steps of about `tokens_per_step`
    tokens, ended by `separator`, and solutions of about `steps_per_solution` steps."""
    import math

    import torch
    from transformers import PhiConfig, PhiForCausalLM

    torch.manual_seed(seed)
    values = {**SIZES, "vocab_size": len(tokenizer), "max_position_embeddings": 4096, **config}
    values.setdefault("pad_token_id", tokenizer.pad_token_id)
    values.setdefault("eos_token_id", tokenizer.eos_token_id)
    model = PhiForCausalLM(PhiConfig(**values))
    allowed = {i for w in _WORDS for i in tokenizer(w, add_special_tokens=False)["input_ids"]}
    sep = tokenizer(separator, add_special_tokens=False)["input_ids"]
    if len(sep) != 1:
        raise ValueError(f"separator {separator!r} is {len(sep)} tokens for this tokenizer; tiny_policy needs one")
    allowed -= {sep[0], tokenizer.eos_token_id}
    # Probabilities per token: a step ends with chance 1/tokens_per_step, a solution after ~steps_per_solution steps.
    p_sep = 1.0 / tokens_per_step
    p_eos = p_sep / steps_per_solution
    word = (1.0 - p_sep - p_eos) / len(allowed)
    with torch.no_grad():
        bias = torch.full((len(tokenizer),), -40.0)
        bias[list(allowed)] = math.log(word)
        bias[sep[0]] = math.log(p_sep)
        bias[tokenizer.eos_token_id] = math.log(p_eos)
        model.lm_head.bias.copy_(bias)
        model.lm_head.weight.mul_(0.5)  # context still moves the choice, but the bias sets the shape
    return model.eval()


def tiny_prm(tokenizer: Any, step_format: StepFormat | None = None, *, seed: int = 0, **config: Any) -> Any:
    """A random Qwen2 process reward model (`RewardModel`, kind "prm") over `tokenizer`."""
    import torch
    from transformers import Qwen2Config

    from .reward_model import RewardModel

    torch.manual_seed(seed)
    values = {**SIZES, "num_key_value_heads": 1, "vocab_size": len(tokenizer), "max_position_embeddings": 4096}
    values.update(config)
    values.setdefault("pad_token_id", tokenizer.pad_token_id)
    cfg = Qwen2Config(**values, attn_implementation="sdpa")
    return RewardModel.from_backbone(cfg, tokenizer, "prm", step_format or StepFormat()).eval()


def main(argv: list[str] | None = None) -> None:
    """`python -m prmsearch.models.tiny policy|prm FOLDER [--tokenizer smollm2]`: save a tiny random model (and its
    tokenizer) where `prmsearch search --policy/--scorer` can load it."""
    import argparse

    from .tokenizers import load_tokenizer

    parser = argparse.ArgumentParser(prog="python -m prmsearch.models.tiny", description=main.__doc__)
    parser.add_argument("kind", choices=("policy", "prm"))
    parser.add_argument("folder")
    parser.add_argument("--tokenizer", default="smollm2")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    tokenizer = load_tokenizer(args.tokenizer)
    model = (tiny_policy if args.kind == "policy" else tiny_prm)(tokenizer, seed=args.seed)
    model.save_pretrained(args.folder)
    tokenizer.save_pretrained(args.folder)
    print(f"wrote {args.folder}")


if __name__ == "__main__":
    main()
