"""The embedded models' tokenizer, trained on the bundled task's text.

A general tokenizer (SmolLM2's has 49k tokens) would spend most of a tiny model's parameters on an embedding table
it never uses, and its BPE merges multi-digit numbers into tokens whose arithmetic a tiny model cannot see inside.
This one is a byte-level BPE trained on the task's prompts and worked solutions with every digit its own token,
so a number is read and written digit by digit, and "\\n\\n" (the step separator) is one token.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

EOS, PAD = "<|endoftext|>", "<|pad|>"


def train_tokenizer(texts: Iterable[str], *, vocab_size: int = 384) -> Any:
    """A `PreTrainedTokenizerFast` (EOS and PAD special tokens, no BOS) trained on `texts`."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split("\n\n", behavior="isolated"),
            pre_tokenizers.Digits(individual_digits=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[EOS, PAD],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=EOS, pad_token=PAD, model_max_length=512)
