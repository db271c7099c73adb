"""The training data: what `prmsearch build` wrote, read and checked before a single step is taken.

Two moments, because the model sits between them:
- `inspect_data` (before any model is loaded, so a mistake costs nothing): the `build.json` beside the data gives
  the tokenizer and the StepFormat the labels were made with, and says what the data was built for. Data built for
  another kind (ORM outcomes fed to a PRM, step labels fed to an ORM, pairs fed to either) would train without a
  word and give a model that scores nonsense, so it is refused here.
- `load_data` (after, since token ids are checked against the model's vocabulary): the rows, validated, and split
  into training and evaluation halves.

Data without a `build.json` (made elsewhere, or by hand) is judged by its columns and, where that is decisive, by
the shape of its labels; when the shape cannot tell, it is accepted as it is. TRL's formats train as they are,
tokenized on the fly (`trl_data`): preference rows (BT, as TRL's reward trainer tokenizes them), stepwise rows (PRM)
and unpaired rows (ORM); `train_data` may also be a `datasets.Dataset` in Python.
"""

from __future__ import annotations

import json
import os
import zlib
from dataclasses import dataclass, field
from typing import Any

from ..errors import InputError, loading
from ..models.heads import HEADS
from ..steps import StepFormat
from .config import TrainConfig, TrainConfigError
from .losses import IGNORE

# What `prmsearch build` target makes the data each kind trains on, and the kind each target's data trains.
BUILD_TARGET = {"prm": "prm", "orm": "orm", "bt": "pairs"}
TRAINS = {"prm": "prm", "orm": "orm", "pairs": "bt"}  # `stepwise` (TRL's format) trains none: it is not tokenized

REQUIRED_COLUMNS = {
    "prm": ("input_ids", "labels"),
    "orm": ("input_ids", "labels"),
    "bt": ("chosen_input_ids", "rejected_input_ids"),
}
NEEDS = {  # said when data of the wrong kind is refused
    "prm": "input_ids + labels columns with one label per step end",
    "orm": "input_ids + labels columns with the outcome on every completion token",
    "bt": "chosen_input_ids + rejected_input_ids columns",
}
ALLOWED_LABELS = {"ce": "0 or 1", "ce3": "-1, 0 or 1", "bce": "in [0, 1]", "mse": "in [0, 1]", "orm": "0 or 1"}
SHAPE_SAMPLE = 1000  # rows looked at to tell ORM-shaped labels from PRM-shaped ones when no build.json says


@dataclass
class DataSpec:
    """What the data's `build.json` fixes for training: the StepFormat and the tokenizer the labels were made with."""

    step_format: StepFormat
    tokenizer: str
    summary: dict[str, Any] = field(default_factory=dict)


# ---- before the model: build.json ---------------------------------------------------------------------------------


def build_summary(path: Any) -> dict[str, Any]:
    """The `build.json` next to built data, or {} for data from elsewhere (a hub dataset, hand-made files, a
    `Dataset` object)."""
    if not isinstance(path, str):
        return {}
    for meta in (os.path.join(path, "build.json"), path + ".build.json"):
        if os.path.isfile(meta):
            with open(meta, encoding="utf-8") as f:
                try:
                    return json.load(f)
                except json.JSONDecodeError as e:
                    raise TrainConfigError(
                        f"{meta}: not valid JSON (line {e.lineno}: {e.msg}); rebuild the data with `prmsearch build`"
                    ) from None
    return {}


def inspect_data(cfg: TrainConfig) -> DataSpec:
    """Read the build.json of the training (and evaluation) data and refuse data that does not fit `cfg`."""
    summary = build_summary(cfg.train_data)
    check_built_for(cfg.kind, summary, cfg.train_data)
    check_label_kind(cfg, summary, cfg.train_data)
    if cfg.eval_data:
        check_built_for(cfg.kind, build_summary(cfg.eval_data), cfg.eval_data)
    fmt = StepFormat(**summary["step_format"]) if "step_format" in summary else StepFormat()
    tokenizer = cfg.tokenizer or summary.get("tokenizer") or cfg.model
    if not tokenizer:
        raise TrainConfigError(f"no tokenizer: set `tokenizer` (no build.json beside {cfg.train_data} names one)")
    return DataSpec(fmt, tokenizer, summary)


def check_built_for(kind: str, summary: dict[str, Any], path: str) -> None:
    """Refuse data whose build.json says it was built for another kind than the one being trained."""
    built = summary.get("target")
    if built is None or built == BUILD_TARGET[kind]:
        return
    raise TrainConfigError(_wrong_kind(path, f"data built for {built} (its build.json)", kind, TRAINS.get(built)))


def check_label_kind(cfg: TrainConfig, summary: dict[str, Any], path: str) -> None:
    """A PRM loss that cannot read the data's labels: 3-class ratings need `ce3`, soft labels a soft loss."""
    label_kind = summary.get("label_kind")
    if cfg.kind != "prm" or label_kind is None:
        return
    if label_kind == "three-class" and cfg.prm_loss != "ce3":
        raise TrainConfigError(f"{path} has 3-class labels (-1/0/+1): train with prm_loss=ce3")
    if label_kind == "soft" and cfg.prm_loss in ("ce", "ce3"):
        raise TrainConfigError(f"{path} has soft labels: train with prm_loss=bce or prm_loss=mse")


def _wrong_kind(path: str, what: str, kind: str, fits: str | None) -> str:
    instead = f" or train {fits}" if fits else ""
    return (
        f"{path}: {what}, training {kind}, which needs {NEEDS[kind]}; "
        f"rebuild with `prmsearch build {BUILD_TARGET[kind]} …`{instead}"
    )


def load_data_tokenizer(spec: DataSpec) -> Any:
    """The tokenizer the data was built with; one without a pad token pads with EOS (the collators pad batches)."""
    from ..models.tokenizers import load_tokenizer

    with loading(spec.tokenizer, "tokenizer"):
        tokenizer = load_tokenizer(spec.tokenizer)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


# ---- after the model: the rows ------------------------------------------------------------------------------------


def load_data(cfg: TrainConfig, spec: DataSpec, vocab_size: int, tokenizer: Any = None) -> tuple[Any, Any | None]:
    """The training set and the evaluation set (or None), checked row by row against the model's vocabulary;
    `tokenizer` tokenizes preference rows."""
    soft = cfg.prm_loss in ("bce", "mse")
    data = load_built(cfg.train_data, cfg.kind, tokenizer, spec.step_format, soft)
    check_rows(data, cfg, _name(cfg.train_data), vocab_size, spec.summary)
    if cfg.eval_data is not None:
        train_set, eval_set = data, load_built(cfg.eval_data, cfg.kind, tokenizer, spec.step_format, soft)
        check_rows(eval_set, cfg, _name(cfg.eval_data), vocab_size, build_summary(cfg.eval_data))
    else:
        train_set, eval_set = split_eval(data, cfg.eval_fraction, cfg.seed)
    if eval_set is not None and cfg.eval_max_examples is not None and len(eval_set) > cfg.eval_max_examples:
        eval_set = eval_set.select(range(cfg.eval_max_examples))
    if len(train_set) == 0:
        raise TrainConfigError(f"{_name(cfg.train_data)}: no training examples")
    return train_set, eval_set


def _name(source: Any) -> str:
    """What an error calls the data: its path, or what a `Dataset` object is."""
    return source if isinstance(source, str) else f"the {type(source).__name__} given as data"


def load_built(source: Any, kind: str, tokenizer: Any = None, fmt: StepFormat | None = None, soft: bool = False) -> Any:
    """A dataset written by `prmsearch build` (folder, .jsonl, .parquet), a hub dataset id or a `Dataset`. Given a
    tokenizer, TRL's formats are tokenized on the fly (`trl_data`): preference rows for BT, stepwise rows for a PRM
    (`soft`: labels as given), unpaired rows for an ORM, through `fmt`."""
    import datasets

    from . import trl_data

    ds, path = (source, _name(source)) if not isinstance(source, str) else (_read(source, kind), source)
    if isinstance(ds, datasets.DatasetDict):
        ds = ds["train"]
    build = next((b for fits, b in trl_data.ROWS[kind] if fits(ds.column_names)), None)
    if tokenizer is not None and build is not None:
        try:
            return build(ds, tokenizer, fmt or StepFormat(), soft, path)
        except TrainConfigError:  # a bad row, named already
            raise
        except ValueError as e:  # a label the loss cannot read, as the builders say it
            raise TrainConfigError(f"{path}: {' '.join(str(e).split())}") from None
    missing = [c for c in REQUIRED_COLUMNS[kind] if c not in ds.column_names]
    if missing:
        raise TrainConfigError(
            f"{path}: a {kind} training set needs columns {list(REQUIRED_COLUMNS[kind])} or TRL's "
            f"{trl_data.NAMES[kind]}, missing {missing} "
            f"(has {ds.column_names}); build it with `prmsearch build {BUILD_TARGET[kind]} --tokenizer …`"
        )
    if kind == "bt":
        ds = ds.rename_columns({"chosen_input_ids": "chosen_ids", "rejected_input_ids": "rejected_ids"})
    return ds


def _read(path: str, kind: str):
    import datasets

    if os.path.isdir(path):
        with loading(path, "dataset", also=(OSError,)):
            ds = datasets.load_from_disk(path)
    elif path.endswith((".jsonl", ".json")):
        ds = datasets.load_dataset("json", data_files=path, split="train")
    elif path.endswith(".parquet"):
        ds = datasets.load_dataset("parquet", data_files=path, split="train")
    elif os.path.exists(path):
        raise TrainConfigError(f"{path}: expected a folder, .jsonl or .parquet written by `prmsearch build`")
    else:
        try:
            ds = datasets.load_dataset(path, split="train")
        except (ConnectionError, FileNotFoundError) as e:  # what `datasets` raises for an unknown or unreachable id
            raise InputError(
                f"{path}: not a local folder or file (from {os.getcwd()}), nor a hub dataset that loads "
                f"({type(e).__name__}); build it with `prmsearch build {BUILD_TARGET[kind]} --output {path}`"
            ) from None
    return ds


def check_rows(ds, cfg: TrainConfig, path: str, vocab_size: int, summary: dict[str, Any]) -> None:
    """Every check of the rows: their labels' shape when no build.json says what they are, then each row."""
    if "target" not in summary and cfg.kind in ("prm", "orm"):
        check_label_shape(ds, cfg.kind, path)
    validate_rows(ds, cfg, path, vocab_size)


def label_shape(all_labels: list[list[float]]) -> str | None:
    """'orm' when every row's labels are one run of supervised tokens to the row's end (the outcome on every
    completion token) and some run is longer than a token; 'prm' when every supervised token stands alone (step
    ends) and some row has several; None when the labels cannot tell."""
    runs = [_runs(labels) for labels in all_labels]
    if not any(runs):
        return None
    whole = all(len(r) == 1 and r[0][1] == len(labels) for r, labels in zip(runs, all_labels, strict=True) if r)
    if whole and any(end - start > 1 for r in runs for start, end in r):
        return "orm"
    if all(end - start == 1 for r in runs for start, end in r) and any(len(r) > 1 for r in runs):
        return "prm"
    return None


def _runs(labels: list[float]) -> list[tuple[int, int]]:
    """The [start, end) spans of consecutive supervised (not IGNORE) positions."""
    spans: list[tuple[int, int]] = []
    for i, value in enumerate(labels):
        if value == IGNORE:
            continue
        if spans and spans[-1][1] == i:
            spans[-1] = (spans[-1][0], i + 1)
        else:
            spans.append((i, i + 1))
    return spans


def check_label_shape(ds, kind: str, path: str) -> None:
    """Data without a build.json: refuse ORM-shaped labels for a PRM and PRM-shaped labels for an ORM."""
    sample = ds.select(range(min(len(ds), SHAPE_SAMPLE)))["labels"]
    shape = label_shape(sample)
    if shape is not None and shape != kind:
        looks = {"orm": "the outcome on every completion token", "prm": "one label per step end"}[shape]
        what = f"labels that look like {shape} data ({looks}; no build.json says otherwise)"
        raise TrainConfigError(_wrong_kind(path, what, kind, shape))


def _label_ok(value: float, rule: str) -> bool:
    if rule == "0 or 1":
        return value in (0, 1)
    if rule == "-1, 0 or 1":
        return value in (-1, 0, 1)
    return 0.0 <= value <= 1.0


def validate_rows(ds, cfg: TrainConfig, path: str, vocab_size: int) -> None:
    """Fail before training, naming the row and field, rather than deep inside a forward pass (an index error in
    the embedding) or, worse, training on labels the loss misreads."""
    if HEADS[cfg.head].reads_lm and "prompt_length" not in ds.column_names:
        raise TrainConfigError(
            f"{path}: {cfg.kind}_head={cfg.head} needs a 'prompt_length' column (where each completion starts); "
            f"this data predates it: build it again with `prmsearch build {cfg.kind}`"
        )
    id_columns = ("chosen_ids", "rejected_ids") if cfg.kind == "bt" else ("input_ids",)
    for column in id_columns:
        for row, ids in enumerate(ds[column]):
            if not ids:
                raise TrainConfigError(f"{path}: row {row}: field '{column}' is empty")
            if max(ids) >= vocab_size or min(ids) < 0:
                raise TrainConfigError(
                    f"{path}: row {row}: field '{column}' has token id {max(ids)} outside the model's vocabulary "
                    f"({vocab_size}): the data was built with a different tokenizer than the model's"
                )
    if cfg.kind == "bt":
        return
    rule = ALLOWED_LABELS["orm" if cfg.kind == "orm" else cfg.prm_loss]
    for row, (ids, labels) in enumerate(zip(ds["input_ids"], ds["labels"], strict=True)):
        if len(labels) != len(ids):
            raise TrainConfigError(f"{path}: row {row}: field 'labels' has {len(labels)} entries for {len(ids)} tokens")
        bad = next((v for v in labels if v != IGNORE and not _label_ok(v, rule)), None)
        if bad is not None:
            raise TrainConfigError(
                f"{path}: row {row}: field 'labels' has {bad!r}; {cfg.kind} training with "
                f"{'prm_loss=' + cfg.prm_loss if cfg.kind == 'prm' else 'BCE'} needs {rule} (or {IGNORE})"
            )


def split_eval(ds, fraction: float, seed: int):
    """Hold out whole prompt groups (hash of group_id), so no prompt is in both halves."""
    if fraction <= 0:
        return ds, None
    groups = ds["group_id"] if "group_id" in ds.column_names else [str(i) for i in range(len(ds))]
    held = [zlib.crc32(f"{seed}:{g}".encode()) % 10_000 < fraction * 10_000 for g in groups]
    train = ds.select([i for i, h in enumerate(held) if not h])
    held_out = ds.select([i for i, h in enumerate(held) if h])
    return train, (held_out if len(held_out) else None)
