"""Files that survive a kill: append-only JSON lines (search results, label rollouts) and whole files replaced
atomically (summaries, run settings).

A batch of rows goes to the file in one `write` call, flushed and synced, so a killed command leaves whole batches
and at most one torn last line, never a gap; `read_rows(repair=True)` cuts that torn line off before a resume
appends after it. Readers that must not modify (reports) skip the torn line instead. A file written whole goes under
a temporary name first and is renamed over the old one, so no reader ever sees half of it.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .errors import PrmsearchError


class JsonlError(PrmsearchError):
    """A line of a JSON-lines file that is not JSON (not a torn last line: one in the middle)."""


class WriteError(PrmsearchError):
    """A batch of rows could not be written whole (the disk is full, a quota): the file is as it was before it."""


def append_rows(path: str | Path, rows: list[dict]) -> None:
    """All rows in one write, flushed and synced: a kill leaves whole batches or a torn last line, never a gap.
    A write the disk cannot take whole (`os.write` may write part of it and say so, or raise ENOSPC) is undone: the
    file is cut back to its size before, and `WriteError` says so, so a resume redoes the batch."""
    data = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        size = os.fstat(fd).st_size
        try:
            written = 0
            while written < len(data):
                written += os.write(fd, data[written:])
            os.fsync(fd)
        except OSError as e:
            os.ftruncate(fd, size)
            raise WriteError(
                f"cannot write {path}: {e.strerror or e}; the {len(rows)} rows of this batch were not kept (the file "
                "is as it was): free space and run again with --resume"
            ) from None
    finally:
        os.close(fd)


def read_rows(path: str | Path, *, repair: bool = False) -> list[dict[str, Any]]:
    """The rows of a file ([] when it does not exist). A last piece without its newline is a torn write: skipped,
    and with `repair` cut off the file."""
    path = Path(path)
    if not path.exists():
        return []
    text = path.read_text(encoding="utf-8")
    if repair and text and not text.endswith("\n"):
        with open(path, "r+", encoding="utf-8") as f:
            f.truncate(len(text[: text.rfind("\n") + 1].encode()))
    rows = []
    for number, line in enumerate(text.split("\n")[:-1], 1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as e:
            raise JsonlError(f"{path}: line {number}: not JSON ({e})") from e
    return rows


def whole_lines(path: str | Path) -> list[str]:
    """The file's non-empty lines, the torn last one (no newline) left out."""
    text = Path(path).read_text(encoding="utf-8")
    return [ln for ln in text.split("\n")[:-1] if ln.strip()]


def write_atomic(path: str | Path, text: str) -> None:
    """Write `text` under a temporary name and rename it over `path`: a reader (or a kill) sees the old file or
    the whole new one. Several processes may write the same path at once (the ranks of a sharded search)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


@contextmanager
def replacing(path: str | Path) -> Iterator[Path]:
    """A temporary path beside `path` to write a whole output (a file or a folder) into; when the block ends without
    error it takes `path`'s place, and on an error it is removed. So a killed or failed command leaves the old
    output or the whole new one. A folder cannot be renamed over a folder: the old one is moved aside first and
    removed after, so a kill between the two renames leaves it under `.NAME.old`."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    _remove(tmp)
    try:
        yield tmp
    except BaseException:
        _remove(tmp)
        raise
    if tmp.is_dir() and path.is_dir():
        old = path.with_name(f".{path.name}.old")
        _remove(old)
        os.replace(path, old)
        os.replace(tmp, path)
        _remove(old)
    else:
        os.replace(tmp, path)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()
