"""What the resumable commands (`prmsearch search`, `prmsearch label`) share about their output: a finished output is
never overwritten without `--resume`, and a resume must run with the settings the output was written with (the
ones that change what it holds). Each command keeps its own files (search: a run folder of shards and trees;
label: one JSONL file with its sidecar), appends its chunks with `files.append_rows` and reads back what is done
with `files.read_rows(repair=True)`, which cuts a torn last line. One run writes an output at a time (`exclusive`).
"""

from __future__ import annotations

import os
from collections.abc import Collection, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .errors import OutputError, PrmsearchError


def refuse_restart(path: Path, holds: str, error: type[PrmsearchError] = OutputError) -> None:
    """Refuse an output that already holds something (`holds`: "results", "labels") unless the run resumes it."""
    if path.exists() and path.stat().st_size:
        raise error(f"{path} already holds {holds}: pass --resume to continue it, or choose a new --output")


def check_settings(
    out: Path,
    before: Mapping[str, Any],
    now: Mapping[str, Any],
    *,
    verb: str,
    free: Collection[str] = (),
    new_keys_free: bool = False,
    error: type[PrmsearchError] = OutputError,
) -> None:
    """Refuse a resume whose settings differ from those `out` was written with (`verb`: "run", "labelled"), naming
    every change. `free`: settings a resume may change (speed, not results); `new_keys_free`: settings the stored
    record lacks (an output written before they existed) are not compared."""
    keys = [k for k in now if k in before] if new_keys_free else sorted(set(before) | set(now))
    changed = sorted(k for k in keys if k not in free and before.get(k) != now.get(k))
    if changed:
        diff = ", ".join(f"{k}: {before.get(k)!r} -> {now.get(k)!r}" for k in changed)
        raise error(f"{out} was {verb} with other settings ({diff}); resume it with the same ones")


def read_record(path: Path, error: type[PrmsearchError] = OutputError) -> dict[str, Any]:
    """The settings an output was written with (a YAML file, or JSON for a `.json` sidecar), as a mapping; a file
    that cannot be read or is not a mapping is one line naming it, since a resume cannot be checked without it."""
    import json

    import yaml

    try:
        text = path.read_text(encoding="utf-8")
        record = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (OSError, UnicodeDecodeError, ValueError, yaml.YAMLError) as e:
        raise error(
            f"{path}: cannot read it ({' '.join(str(e).split())[:120]}); restore it, or write a new output"
        ) from None
    if record is None:
        return {}
    if not isinstance(record, dict):
        raise error(f"{path}: not a record of settings (a mapping); restore it, or write a new output")
    return record


def lock_path(output: Path) -> Path:
    """The lock file of an output (a file, or a run folder's part file): hidden, beside it."""
    return output.with_name(f".{output.name}.lock")


@contextmanager
def exclusive(output: Path, error: type[PrmsearchError] = OutputError) -> Iterator[None]:
    """Hold `output` for this process alone while the block runs: a second run writing the same output at once
    (which would append every row twice) is refused in one line. The lock is the kernel's (`flock`), so a killed
    run leaves none behind; the lock file keeps the holder's pid, for the message."""
    import fcntl

    lock = lock_path(output)
    lock.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            raise error(
                f"{output} is being written by another run (pid {holder}): wait for it to end, or choose another "
                "--output"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        yield
    finally:
        os.close(fd)
