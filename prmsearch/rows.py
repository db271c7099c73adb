"""Row loading shared by every reader: local JSONL/JSON/parquet/CSV, a `save_to_disk` folder, or a hub id.

Readers never see files: they get `(line, row)` pairs and raise `RowError(field, why)` on a bad row. This module
turns that into a `BadRowError` naming file, line and field, or, with `skip_bad`, counts it and goes on, so one
bad row in a million never loses the work already done.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

from .errors import PrmsearchError, loading
from .records import Trace

T = TypeVar("T")


class RowError(PrmsearchError):
    """Raised by a reader's row parser; `field` is a dotted path such as `label.steps[2].rating`."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field
        self.message = message


class BadRowError(PrmsearchError):
    """A malformed input row; the message names file, line (1-based) and field so it can be fixed."""

    def __init__(self, path: str, line: int, field: str, message: str):
        super().__init__(f"{path}:{line}: field '{field}': {message}")
        self.path, self.line, self.field, self.message = path, line, field, message


@dataclass
class ReadReport:
    """What a read did: rows read, traces produced, bad rows skipped (with the first few reasons)."""

    rows: int = 0
    traces: int = 0
    bad_rows: int = 0
    bad_examples: list[str] = field(default_factory=list)
    bad_fields: Counter = field(default_factory=Counter)

    def add_bad(self, err: BadRowError) -> None:
        self.bad_rows += 1
        self.bad_fields[err.field] += 1
        if len(self.bad_examples) < 5:
            self.bad_examples.append(str(err))


_LOCAL_DATASET_SUFFIXES = {".parquet": "parquet", ".csv": "csv", ".arrow": "arrow"}


def iter_rows(source: str, split: str = "train") -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield `(line, row)`: JSONL lines are numbered as in the file; other formats by 1-based row index.

    A `.json` file may hold a JSON list of rows or be JSON Lines. Anything that is not a local file or a
    `save_to_disk` folder is handed to `datasets.load_dataset` (a hub id, or a local folder of data files).
    """
    if os.path.isfile(source) and source.endswith((".jsonl", ".json")):
        yield from _iter_json(source)
        return
    import datasets

    saved = ("dataset_info.json", "dataset_dict.json")  # what save_to_disk leaves in a folder
    if os.path.isdir(source) and any(os.path.exists(os.path.join(source, name)) for name in saved):
        with loading(source, "dataset", also=(OSError,)):
            ds = datasets.load_from_disk(source)
        if isinstance(ds, datasets.DatasetDict):
            ds = ds[split]
    elif os.path.isfile(source):
        ext = os.path.splitext(source)[1]
        if ext not in _LOCAL_DATASET_SUFFIXES:
            raise ValueError(f"{source}: unknown file type '{ext}' (expected .jsonl, .json, .parquet, .csv)")
        ds = datasets.load_dataset(_LOCAL_DATASET_SUFFIXES[ext], data_files=source, split=split)
    else:
        ds = datasets.load_dataset(source, split=split)
    with loading(
        source, "dataset", also=(OSError,)
    ):  # Arrow files are read as the rows are: a truncated one fails here
        yield from enumerate(ds, start=1)


def _iter_json(path: str) -> Iterator[tuple[int, dict[str, Any]]]:
    """Rows of a JSON list or JSON Lines file. Lines are decoded one by one, so a byte that is not UTF-8 is a bad
    row naming its line (skippable like any other), not an error about the whole file."""
    with open(path, "rb") as f:
        head = f.read(64).lstrip(b"\xef\xbb\xbf \t\r\n")  # a BOM (Windows editors) is not part of the data
        f.seek(0)
        if head.startswith(b"["):
            yield from enumerate(_json_list(path, f.read()), start=1)
            return
        for lineno, raw in enumerate(f, start=1):
            try:
                line = raw.decode("utf-8-sig" if lineno == 1 else "utf-8")
            except UnicodeDecodeError as e:
                yield lineno, _InvalidJSON(f"not UTF-8 text (byte 0x{raw[e.start]:02x} at column {e.start + 1})")
                continue
            if not line.strip():
                continue
            try:
                yield lineno, json.loads(line)
            except json.JSONDecodeError as e:
                yield lineno, _InvalidJSON(f"invalid JSON: {e.msg}")


def _json_list(path: str, data: bytes) -> list[Any]:
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        raise BadRowError(path, line, "<json>", f"not UTF-8 text (byte 0x{data[e.start]:02x})") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise BadRowError(path, e.lineno, "<json>", f"invalid JSON: {e.msg}") from None


class _InvalidJSON(dict):
    """Stands in for a line that is not JSON, so the error is raised (or skipped) like any bad row."""

    def __init__(self, msg: str):
        super().__init__()
        self.msg = msg


def parse_rows(
    source: str,
    parse: Callable[[dict[str, Any]], T],
    *,
    skip_bad: bool = False,
    report: ReadReport | None = None,
    split: str = "train",
) -> Iterator[tuple[int, dict[str, Any], T]]:
    """`(line, row, parse(row))` for every row of `source`; a row that is not a JSON object, or whose `parse` raises
    `RowError`, becomes a `BadRowError` naming file, line and field (or, with `skip_bad`, is counted and skipped)."""
    report = report if report is not None else ReadReport()
    for line, row in iter_rows(source, split=split):
        report.rows += 1
        try:
            if isinstance(row, _InvalidJSON):
                raise RowError("<json>", row.msg)
            if not isinstance(row, dict):
                raise RowError("<row>", f"expected a JSON object, got {type(row).__name__}")
            parsed = parse(row)
        except RowError as e:
            err = BadRowError(source, line, e.field, e.message)
            if not skip_bad:
                raise err from None
            report.add_bad(err)
            continue
        yield line, row, parsed


def read_traces(
    source: str,
    parse: Callable[[dict[str, Any]], Iterable[Trace]],
    *,
    skip_bad: bool = False,
    report: ReadReport | None = None,
    split: str = "train",
) -> Iterator[Trace]:
    """Run a reader's `parse(row)` over every row of `source`, turning `RowError`s into `BadRowError`s."""
    report = report if report is not None else ReadReport()
    rows = parse_rows(source, lambda row: list(parse(row)), skip_bad=skip_bad, report=report, split=split)
    for line, _row, traces in rows:
        for t in traces:
            if not t.source:
                t.source = f"{os.path.basename(source)}:{line}"
            report.traces += 1
            yield t


def get(row: dict[str, Any], path: str, kind: type | tuple[type, ...], *, optional: bool = False, at: str = "") -> Any:
    """Fetch a dotted field (`question.problem`) and check its type, raising `RowError` that names the field.

    `at` is where `row` sits inside the whole row (`label.steps[2]`), so a field of a nested object is still
    reported by its full path (`label.steps[2].rating`).
    """
    name = f"{at}.{path}" if at else path
    value: Any = row
    for part in path.split("."):
        if not isinstance(value, dict) or part not in value:
            if optional:
                return None
            raise RowError(name, "missing")
        value = value[part]
    if value is None and optional:
        return None
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, kind) or (kind in (int, float) and isinstance(value, bool)):
        names = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise RowError(name, f"expected {names}, got {type(value).__name__} {str(value)[:40]!r}")
    return value


def get_strings(row: dict[str, Any], path: str, *, at: str = "") -> list[str]:
    """A list-of-strings field (steps), naming the first bad item (`steps[3]`); returns a copy the caller may cut."""
    items = get(row, path, list, at=at)
    for i, item in enumerate(items):
        if not isinstance(item, str):
            name = f"{at}.{path}" if at else path
            raise RowError(f"{name}[{i}]", f"expected str, got {type(item).__name__} {str(item)[:40]!r}")
    return list(items)


def stable_id(text: str) -> str:
    """A short id that is the same in every run and on every machine (unlike `hash`), to group one problem's traces."""
    return hashlib.sha1(text.encode("utf-8")).hexdigest()[:16]
