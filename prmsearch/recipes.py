"""YAML recipes: the one reader behind `BuildConfig`, `TrainConfig` and `SearchConfig.from_yaml`, so every stage
refuses a misspelt key, a missing file and a YAML syntax error the same way, in one line naming the file."""

from __future__ import annotations

import dataclasses
from typing import Any

from .errors import InputError, PrmsearchError


def read_recipe(path: str, config: type | None = None, error: type[Exception] = PrmsearchError) -> dict[str, Any]:
    """The mapping a recipe file holds; with `config` (a dataclass), keys that are not its fields are refused.

    A missing file is an `InputError`; a syntax error is an `error` at PATH:LINE:COLUMN, which is where an editor
    jumps to, instead of PyYAML's traceback with the position on its fourth line."""
    import yaml

    try:
        with open(path, encoding="utf-8") as f:
            values = yaml.safe_load(f) or {}
    except FileNotFoundError:
        raise InputError(f"{path}: no such recipe file") from None
    except IsADirectoryError:
        raise InputError(f"{path}: is a folder; a recipe is a YAML file") from None
    except yaml.YAMLError as e:
        raise error(f"{yaml_where(path, e)}: not valid YAML: {yaml_problem(e)}") from None
    if not isinstance(values, dict):
        raise error(f"{path}: a recipe is a mapping of keys to values")
    if config is not None:
        known = {f.name for f in dataclasses.fields(config)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise error(f"{path}: unknown keys {unknown}; known: {sorted(known)}")
    return values


def yaml_where(path: str, e: Exception) -> str:
    """PATH:LINE:COLUMN of a YAML syntax error (1-based, as editors count), or PATH when PyYAML gives no position."""
    mark = getattr(e, "problem_mark", None)
    return f"{path}:{mark.line + 1}:{mark.column + 1}" if mark is not None else path


def yaml_problem(e: Exception) -> str:
    """What a YAML syntax error says, on one line. The context's own position is kept: an unclosed "[" is found
    lines later, so "while parsing a flow sequence started at 3:12" is what points at the typo."""
    context, mark = getattr(e, "context", None), getattr(e, "context_mark", None)
    if context and mark is not None and mark is not getattr(e, "problem_mark", None):
        context += f" started at {mark.line + 1}:{mark.column + 1}"
    parts = [context, getattr(e, "problem", None)]
    return " ".join((": ".join(p for p in parts if p) or str(e)).split())


def option(default: Any, help: str) -> Any:
    """A config field with its one-line help, which `prmsearch <command> --help` shows next to the flag."""
    if isinstance(default, (list, dict)):
        return dataclasses.field(default_factory=lambda: type(default)(default), metadata={"help": help})
    return dataclasses.field(default=default, metadata={"help": help})
