"""The embedded default: a tiny policy, PRM and ORM for the bundled chained-arithmetic task (`bench.chains`),
trained by prmsearch's own commands (`prmsearch quickstart --retrain` rebuilds them) and shipped in the package, so
the main job runs on a fresh machine with no model hub.

They load by name wherever a model path is accepted: `embedded:policy`, `embedded:prm`, `embedded:orm` (e.g.
`prmsearch search --policy embedded:policy --scorer embedded:prm --dataset chains`). This module stays free of
torch: it only maps names to the folders that hold the checkpoints.
"""

from __future__ import annotations

import os
from pathlib import Path

PREFIX = "embedded:"
MODELS = ("policy", "prm", "orm")
HOME = Path(__file__).parent / "models"


def is_embedded(name: object) -> bool:
    return isinstance(name, str) and name.startswith(PREFIX)


def resolve(name: str) -> str:
    """The folder of an embedded model (`embedded:prm` → .../prmsearch/embedded/models/prm); any other name or
    path is returned as it is, for the loader to read from disk or the hub."""
    if not is_embedded(name):
        return name
    which = name[len(PREFIX) :]
    if which not in MODELS:
        raise FileNotFoundError(f"unknown embedded model {name!r}; choose from {', '.join(PREFIX + m for m in MODELS)}")
    folder = HOME / which
    if not (folder / "config.json").exists():
        raise FileNotFoundError(
            f"{name}: {folder} holds no checkpoint; rebuild the embedded models with `prmsearch quickstart --retrain`"
        )
    return os.fspath(folder)
