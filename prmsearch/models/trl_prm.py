"""A process reward model in TRL's stepwise convention: a two-label `AutoModelForTokenClassification` as TRL's PRM
trainer (trl 1.13 `trl.experimental.prm.PRMTrainer`, the trainer of search-and-learn's Qwen2.5-Math-*-PRM-0.2)
makes one, read where that trainer puts each step's label.

The trainer's row layout (its `tokenize_row`): the BOS token when the tokenizer has one, the prompt's tokens, then
every step tokenized on its own followed by the step separator's tokens (`step_separator`, "\\n" by default), with
nothing between the prompt and the first step and no special tokens anywhere else; a step's label sits on the last
token of its step + separator piece. A step's score here is P(label 1) = softmax of the two logits there. The
saved model does not record the separator, so it is "\\n" unless given (`separator=`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from ..steps import EncodedSteps, StepFormat
from .adapters import PRMAdapter


class StepwisePRM(PRMAdapter):
    """TRL's stepwise-supervision PRM as a step scorer (search re-reads each path whole, as for the public PRMs)."""

    name = "trl-prm"
    step_format = StepFormat(separator="\n", marker="", prompt_separator="")

    @classmethod
    def load_model(cls, path: str, **kwargs: Any) -> Any:
        from transformers import AutoModelForTokenClassification

        return AutoModelForTokenClassification.from_pretrained(path, **kwargs)

    def encode(self, prompt: str, completion: str | Sequence[str]) -> EncodedSteps:
        tok, separator = self.tokenizer, self.step_format.separator
        ids = ([tok.bos_token_id] if tok.bos_token_id is not None else []) + _plain(tok, prompt)
        prompt_length, step_ends, kept = len(ids), [], []
        sep = _plain(tok, separator)
        for i, step in enumerate(self.steps(completion)):
            if not step:
                continue
            ids += _plain(tok, step) + sep
            step_ends.append(len(ids) - 1)
            kept.append(i)
        return EncodedSteps(ids, [1] * len(ids), step_ends, kept, prompt_length)

    def hidden_states(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """The classifier's two logits at every position (the model's own forward: its head and any dropout
        module in eval mode), which `read` turns into probabilities."""
        return self.model(input_ids=input_ids, attention_mask=attention_mask).logits

    def read(self, hidden: torch.Tensor) -> torch.Tensor:
        return hidden.float().softmax(-1)[..., 1]


def _plain(tokenizer: Any, text: str) -> list[int]:
    return tokenizer(text, add_special_tokens=False)["input_ids"]
