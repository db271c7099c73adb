"""TRL's dataset formats, read as they are (a JSONL / parquet file, a `save_to_disk` folder or a `datasets.Dataset`):
preference rows train BT, stepwise rows a PRM, unpaired rows (a completion and its bool label) an ORM, each
tokenized on the fly; `prmsearch build` stays for large sets and for the richer sources.

Preference rows are tokenized as TRL's reward trainer tokenizes them. A row has `chosen` and `rejected`, and
`prompt` unless the prompt is inside both (TRL's implicit prompt); each is plain text or a conversation (a list of
{"role", "content"} messages). As TRL 1.16's `RewardTrainer` does: the prompt is put in front of each completion; a
conversation is rendered and tokenized by the tokenizer's chat template; plain text gets the EOS token at its end
(unless it has it) and is tokenized with the tokenizer's special tokens. A `margin` column is kept. Each row's
prompt (or its index, without one) is its group, so the held-out half never shares a prompt with the training half
and `group_by_prompt` batches a prompt's pairs together.

Stepwise rows (`prompt`, `completions`, `labels`: TRL's stepwise supervision) and unpaired rows (`prompt`,
`completion`, `label`) become traces and are tokenized through the StepFormat exactly as `prmsearch build prm` /
`build orm` would build them (a step's label at its end; the outcome on every completion token). An ORM also trains
on stepwise rows with an `outcome` (what `prmsearch label` writes), so one labelling run feeds both reward models.
"""

from __future__ import annotations

import json
from typing import Any

from ..records import Trace
from ..rows import RowError, get, stable_id
from ..steps import StepFormat

COLUMNS = ("chosen", "rejected")


def is_preference(columns: list[str]) -> bool:
    """Whether a dataset's columns are TRL preference rows (and not pairs `prmsearch build` already tokenized)."""
    return all(c in columns for c in COLUMNS) and "chosen_input_ids" not in columns


def is_stepwise(columns: list[str]) -> bool:
    return all(c in columns for c in ("prompt", "completions", "labels")) and "input_ids" not in columns


def is_unpaired(columns: list[str]) -> bool:
    return all(c in columns for c in ("prompt", "completion", "label")) and "input_ids" not in columns


def is_graded_stepwise(columns: list[str]) -> bool:
    """Stepwise rows that also carry each solution's `outcome`, as `prmsearch label` writes them."""
    return is_stepwise(columns) and "outcome" in columns


def token_ids(tokenizer: Any, text: str | list[dict[str, Any]]) -> list[int]:
    """One side of a pair as TRL's reward trainer tokenizes it: a conversation through the chat template, plain
    text with EOS appended."""
    if isinstance(text, list):
        return list(tokenizer.apply_chat_template(text, tokenize=True, return_dict=True)["input_ids"])
    eos = tokenizer.eos_token or ""
    return list(tokenizer(text if text.endswith(eos) else text + eos)["input_ids"])


def tokenize_preferences(
    ds: Any, tokenizer: Any, fmt: StepFormat | None = None, soft: bool = False, name: str = ""
) -> Any:
    """`chosen_ids`, `rejected_ids`, `group_id` (and `margin` where given) for every preference row of `ds`."""

    def row(example: dict[str, Any], index: int) -> dict[str, Any]:
        prompt = example.get("prompt")
        chosen, rejected = example["chosen"], example["rejected"]
        _check_side(example, index, name)
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


def _traces(ds: Any, parse: Any, name: str) -> list[Trace]:
    from .config import TrainConfigError

    out = []
    for i, row in enumerate(ds):
        try:
            out += parse(row)
        except RowError as e:
            raise TrainConfigError(f"{name}: row {i}: field {e.field!r}: {e.message}") from None
    return out


def _check_side(example: dict[str, Any], index: int, name: str) -> None:
    """Each side text or chat messages, the prompt of the same kind: else one line naming the row and field."""
    from .config import TrainConfigError

    kinds = {key: _kind(example.get(key)) for key in ("prompt", "chosen", "rejected") if example.get(key) is not None}
    for key, kind in kinds.items():
        if kind is None:
            raise TrainConfigError(
                f"{name}: row {index}: field {key!r} must be text or a list of chat messages, got {example[key]!r}"
            )
    if len(set(kinds.values())) > 1:
        raise TrainConfigError(f"{name}: row {index}: mixes text and chat messages ({kinds}); use one or the other")


def _kind(value: Any) -> str | None:
    if isinstance(value, str):
        return "text"
    if isinstance(value, list) and all(isinstance(m, dict) and "content" in m for m in value):
        return "messages"
    return None


def build_stepwise_rows(ds: Any, tokenizer: Any, fmt: StepFormat, soft: bool, name: str) -> Any:
    """PRM examples of TRL stepwise rows (`soft`: labels kept as given, for a soft loss)."""
    from ..data_builders.labels import build_prm
    from ..data_builders.stepwise import stepwise_traces

    traces = _traces(ds, stepwise_traces, name)
    return build_prm(traces, tokenizer, fmt, label_kind="soft" if soft else "hard", progress=False)


def build_unpaired_rows(ds: Any, tokenizer: Any, fmt: StepFormat, soft: bool, name: str) -> Any:
    """ORM examples of unpaired rows: the completion split into steps by `fmt`, its bool label the outcome."""
    from ..data_builders.labels import build_orm

    def parse(row: dict[str, Any]) -> list[Trace]:
        prompt, completion, label = get(row, "prompt", str), get(row, "completion", str), get(row, "label", bool)
        return [Trace(prompt, fmt.split(completion), None, label, stable_id(prompt))]

    return build_orm(_traces(ds, parse, name), tokenizer, fmt, progress=False)


def build_graded_rows(ds: Any, tokenizer: Any, fmt: StepFormat, soft: bool, name: str) -> Any:
    """ORM examples of graded stepwise rows (`prmsearch label`'s output): each whole sampled solution (`steps`
    where a row has them, past a first error) with its `outcome`; rows without one (null) are left out, as
    `prmsearch build orm --source stepwise` leaves them."""
    from ..data_builders.labels import build_orm
    from ..data_builders.stepwise import stepwise_traces

    return build_orm(_traces(ds, stepwise_traces, name), tokenizer, fmt, progress=False)


# The rows each kind trains on as they are: (whether a dataset's columns are in that format, how its rows become
# examples: (ds, tokenizer, fmt, soft, name) -> Dataset), the first that fits.
ROWS = {
    "bt": [(is_preference, tokenize_preferences)],
    "prm": [(is_stepwise, build_stepwise_rows)],
    "orm": [(is_unpaired, build_unpaired_rows), (is_graded_stepwise, build_graded_rows)],
}
NAMES = {
    "bt": "chosen / rejected",
    "prm": "prompt / completions / labels",
    "orm": "prompt / completion / label, or prompt / completions / labels / outcome (`prmsearch label`'s output)",
}
