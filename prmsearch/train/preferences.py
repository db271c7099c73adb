"""Preference rows as TRL's reward trainer takes them, tokenized as it tokenizes them, so `prmsearch train bt` reads
an ordinary preference set (a JSONL / parquet file, a `save_to_disk` folder or a `datasets.Dataset`) as it is.

A row has `chosen` and `rejected`, and `prompt` unless the prompt is inside both (TRL's implicit prompt); each is
plain text or a conversation (a list of {"role", "content"} messages). As TRL 1.16's `RewardTrainer` does: the prompt
is put in front of each completion; a conversation is rendered and tokenized by the tokenizer's chat template; plain
text gets the EOS token at its end (unless it has it) and is tokenized with the tokenizer's special tokens. A
`margin` column is kept. Each row's prompt (or its index, without one) is its group, so the held-out half never
shares a prompt with the training half and `group_by_prompt` batches a prompt's pairs together.
"""

from __future__ import annotations

import json
from typing import Any

COLUMNS = ("chosen", "rejected")


def is_preference(columns: list[str]) -> bool:
    """Whether a dataset's columns are TRL preference rows (and not pairs `prmsearch build` already tokenized)."""
    return all(c in columns for c in COLUMNS) and "chosen_input_ids" not in columns


def token_ids(tokenizer: Any, text: str | list[dict[str, Any]]) -> list[int]:
    """One side of a pair as TRL's reward trainer tokenizes it: a conversation through the chat template, plain
    text with EOS appended."""
    if isinstance(text, list):
        return list(tokenizer.apply_chat_template(text, tokenize=True, return_dict=True)["input_ids"])
    eos = tokenizer.eos_token or ""
    return list(tokenizer(text if text.endswith(eos) else text + eos)["input_ids"])


def tokenize_preferences(ds: Any, tokenizer: Any) -> Any:
    """`chosen_ids`, `rejected_ids`, `group_id` (and `margin` where given) for every preference row of `ds`."""

    def row(example: dict[str, Any], index: int) -> dict[str, Any]:
        prompt = example.get("prompt")
        chosen, rejected = example["chosen"], example["rejected"]
        if prompt is not None:
            chosen, rejected = prompt + chosen, prompt + rejected
        group = json.dumps(prompt, sort_keys=True) if prompt is not None else f"row{index}"
        return {
            "chosen_ids": token_ids(tokenizer, chosen),
            "rejected_ids": token_ids(tokenizer, rejected),
            "group_id": group,
        }

    keep = [c for c in ds.column_names if c == "margin"]
    return ds.map(row, with_indices=True, remove_columns=[c for c in ds.column_names if c not in keep])
