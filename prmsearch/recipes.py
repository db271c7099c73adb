"""YAML recipes: the one reader behind `BuildConfig`, `TrainConfig` and `SearchConfig.from_yaml`, so every stage
refuses a misspelt key the same way, naming the file."""

from __future__ import annotations

import dataclasses
from typing import Any


def read_recipe(path: str, config: type | None = None, error: type[Exception] = ValueError) -> dict[str, Any]:
    """The mapping a recipe file holds; with `config` (a dataclass), keys that are not its fields are refused."""
    import yaml

    with open(path, encoding="utf-8") as f:
        values = yaml.safe_load(f) or {}
    if not isinstance(values, dict):
        raise error(f"{path}: a recipe is a mapping of keys to values")
    if config is not None:
        known = {f.name for f in dataclasses.fields(config)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise error(f"{path}: unknown keys {unknown}; known: {sorted(known)}")
    return values


def option(default: Any, help: str) -> Any:
    """A config field with its one-line help, which `prmsearch <command> --help` shows next to the flag."""
    if isinstance(default, (list, dict)):
        return dataclasses.field(default_factory=lambda: type(default)(default), metadata={"help": help})
    return dataclasses.field(default=default, metadata={"help": help})
