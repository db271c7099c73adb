"""A reward model prmsearch did not train: a one-label sequence classifier, as TRL's `RewardTrainer` saves one (and as
every public Bradley-Terry reward model on the hub is), read exactly as that trainer formats its rows.

TRL's reward trainer tokenizes a conversational row with the tokenizer's chat template (the prompt's messages, then
the completion's, no generation prompt) and a plain row as `prompt + completion` with the EOS token appended; the
reward is the model's own output, `logits[:, 0]`, pooled by the model at its last non-pad token. So a (problem,
solution) pair is scored here as the conversation [user: problem, assistant: solution] when the tokenizer has a chat
template, else as the plain text; the forward pass is the model's own, so the score is the one TRL's trainer and
`pipeline` see (a test checks it to 1e-5). There is no centre: the reward is what the model says.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from ..steps import EncodedSteps, StepFormat


class SequenceRewardModel:
    """A BT / outcome scorer over a `AutoModelForSequenceClassification` with one label: the surface of a BT
    `RewardModel` (`kind`, `score`, `score_batch`, `encode`, `step_format`), for search, rerank, rewards and serve."""

    kind = "bt"

    def __init__(self, model: Any, tokenizer: Any, step_format: StepFormat | None = None) -> None:
        self.model, self.tokenizer = model.eval(), tokenizer
        self.step_format = step_format or StepFormat()  # how search splits and joins a solution's steps
        self.chat = getattr(tokenizer, "chat_template", None) is not None
        if model.config.pad_token_id is None:  # the model pools at the last token that is not padding
            model.config.pad_token_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0

    @classmethod
    def from_pretrained(
        cls, path: str, *, device: str | torch.device | None = None, dtype: Any = None, **kwargs: Any
    ) -> SequenceRewardModel:
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        from ..shipped import resolve

        path = resolve(path)
        model = AutoModelForSequenceClassification.from_pretrained(path, dtype=dtype, **kwargs)
        rm = cls(model, AutoTokenizer.from_pretrained(path))
        if device is not None:
            model.to(device)
        return rm

    def eval(self) -> SequenceRewardModel:
        self.model.eval()
        return self

    def completion(self, completion: str | Sequence[str]) -> str:
        return completion if isinstance(completion, str) else self.step_format.separator.join(completion)

    def encode(self, prompt: str, completion: str | Sequence[str]) -> EncodedSteps:
        """The ids TRL's reward trainer gives the row {prompt, completion}: the chat template's rendering of the
        two turns, or `prompt + completion + eos` tokenized (special tokens added, as the tokenizer does)."""
        text = self.completion(completion)
        if self.chat:
            turns = [{"role": "user", "content": prompt}, {"role": "assistant", "content": text}]
            ids = list(self.tokenizer.apply_chat_template(turns, tokenize=True, return_dict=True)["input_ids"])
        else:
            eos = self.tokenizer.eos_token or ""
            ids = self.tokenizer(prompt + text + ("" if text.endswith(eos) else eos))["input_ids"]
        return EncodedSteps(ids, [1] * len(ids), [len(ids) - 1], [0], 0)

    @torch.no_grad()
    def score_batch(
        self, prompts: Sequence[str], completions: Sequence[str | Sequence[str]], batch_size: int = 16
    ) -> list[float]:
        """The model's reward of each (prompt, completion), `batch_size` rows per forward pass."""
        if len(prompts) != len(completions):
            raise ValueError(f"{len(prompts)} prompts but {len(completions)} completions")
        device = next(self.model.parameters()).device
        out: list[float] = []
        for start in range(0, len(prompts), batch_size):
            chunk = range(start, min(start + batch_size, len(prompts)))
            rows = [self.encode(prompts[i], completions[i]).input_ids for i in chunk]
            width = max(len(r) for r in rows)
            ids = torch.full((len(rows), width), self.model.config.pad_token_id, dtype=torch.long)
            mask = torch.zeros_like(ids)
            for i, r in enumerate(rows):
                ids[i, : len(r)], mask[i, : len(r)] = torch.tensor(r), 1
            logits = self.model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits
            out += logits[:, 0].float().tolist()
        return out

    def score(self, prompt: str, completion: str | Sequence[str]) -> float:
        return self.score_batch([prompt], [completion])[0]
