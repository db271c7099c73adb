"""The one error type users see.

Every error that bad input can cause (a file, a row, a field, a flag, a model folder) derives from
`PrmsearchError`, and its message is one line that says what is wrong, where (file, row, field, flag) and what to do.
The CLI prints exactly that line and exits non-zero; a library user catches `PrmsearchError`. Errors stay
`ValueError`s too where they were before, so existing `except ValueError` code keeps working.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


class PrmsearchError(ValueError):
    """Bad input or a bad setting, described in one line (what, where, what to do)."""


class InputError(PrmsearchError):
    """A file or folder given as input is missing or unusable."""


class OutputError(PrmsearchError):
    """An output would overwrite an input, or an existing result."""


class FormatError(PrmsearchError):
    """A reward-model checkpoint of no known format, or one that does not follow the format it was named as."""


def looks_like_path(name: str) -> bool:
    """Whether `name` was meant as a local path, not a hub id ("org/name"): it starts with "/", "./", "../" or "~",
    or ends with a file suffix. A hub id never does, so such a name that does not exist is a typo, and saying so
    at once beats a 30-second hub round-trip that ends in a connection error."""
    return name.startswith(("/", "./", "../", "~")) or Path(name).suffix in {
        ".json",
        ".jsonl",
        ".yaml",
        ".yml",
        ".gguf",
        ".safetensors",
        ".parquet",
        ".csv",
        ".txt",
    }


def require_local(name: str, what: str, flag: str) -> None:
    """Refuse at once a `name` that looks like a local path and does not exist (see `looks_like_path`)."""
    if looks_like_path(name) and not Path(name).expanduser().exists():
        raise InputError(f"{flag} {name}: no such {what}; check the path (or give a hub id such as org/name)")


def refuse_overwrite(output: str | Path, *inputs: str | Path | None, flag: str = "--output") -> None:
    """Refuse an output that is one of the command's inputs: no command writes over what it reads."""
    out = Path(output).expanduser().resolve()
    for given in inputs:
        if given is not None and Path(given).expanduser().resolve() == out:
            raise OutputError(f"{flag} {output} is also an input of this command; write to another file")


class LoadError(PrmsearchError):
    """A checkpoint, tokenizer or dataset on disk that cannot be read: a damaged (truncated, empty) file."""


@contextmanager
def loading(path: str | Path, what: str, also: tuple[type[Exception], ...] = ()) -> Iterator[None]:
    """Read `what` from `path` inside this block: the errors a damaged (truncated, empty) file raises deep in the
    libraries become one `LoadError` naming the path. They are safetensors' `SafetensorError`, tokenizers' bare
    `Exception`, a JSON file cut short, pyarrow's, and the types in `also` (an Arrow file cut short is a plain
    OSError); anything else passes through as it is."""
    try:
        yield
    except Exception as e:
        if isinstance(e, (PrmsearchError, FileNotFoundError)) or not (_damaged(e) or isinstance(e, also)):
            raise
        detail = " ".join(str(e).split())[:200] or type(e).__name__
        raise LoadError(
            f"{path}: cannot read the {what} ({type(e).__name__}: {detail}); is a file truncated or empty? "
            "save it again"
        ) from None


def _damaged(e: Exception) -> bool:
    import json

    kind = type(e)
    return (
        kind is Exception  # the tokenizers library's own
        or kind.__name__ == "SafetensorError"
        or isinstance(e, json.JSONDecodeError)
        or kind.__module__.startswith("pyarrow")
    )
