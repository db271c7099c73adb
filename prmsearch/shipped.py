"""Names of the models shipped in the package: `embedded:policy`, `embedded:prm` and `embedded:orm` resolve to the
folders under `prmsearch/embedded/models`, so they work wherever a model path or hub id does (`--policy`,
`--scorer`, `RewardModel.from_pretrained`, `HFGenerator.from_pretrained`, `load_tokenizer`, a training recipe's
`model=`). On the ground floor, because every loader needs it and none should import the embedded default's
commands (quickstart, retrain); torch-free: it only maps names to folders.
"""

from __future__ import annotations

import os
from pathlib import Path

PREFIX = "embedded:"
MODELS = ("policy", "prm", "orm")
HOME = Path(__file__).parent / "embedded" / "models"


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
