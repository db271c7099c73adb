"""The embedded default: a tiny policy, PRM and ORM for the bundled chained-arithmetic task (`tasks.chains`),
trained by prmsearch's own commands (`prmsearch quickstart --retrain` rebuilds them) and shipped in the package, so
the main job runs on a fresh machine with no model hub.

They load by name wherever a model path is accepted: `embedded:policy`, `embedded:prm`, `embedded:orm` (e.g.
`prmsearch search --policy embedded:policy --scorer embedded:prm --dataset chains`); `prmsearch.shipped` maps the
names to the folders that hold the checkpoints.
"""

from ..shipped import HOME, MODELS, PREFIX, is_embedded, resolve

__all__ = ["HOME", "MODELS", "PREFIX", "is_embedded", "resolve"]
