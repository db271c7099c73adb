"""Reward-guided search: generators (policy), scorers (reward models), strategies (`strategies.STRATEGIES`), the tree,
the runner, run folders and their reports.

Names are imported on first use (PEP 562), as in `prmsearch/__init__.py`: `prmsearch report` and the CLI's parser
reach `search.report` and `search.results` without loading torch, which the scorers and generators need.
"""

from __future__ import annotations

from ..lazy import lazy_names

# module -> the names it defines (or re-exports)
_MODULES = {
    "prmsearch.scoring": ("Scorer", "ScorerError", "TreeScorer"),
    "prmsearch.search.adapter_scorer": ("AdapterScorer",),
    "prmsearch.search.engine": ("Search", "SearchError", "SearchParams", "SearchSettings", "State"),
    "prmsearch.search.generators": ("Completion", "Generator", "GeneratorError", "HFGenerator", "derive_seed"),
    "prmsearch.search.load": ("load_scorer",),
    "prmsearch.search.scorer": ("OutcomeScorer", "StepScorer"),
    "prmsearch.search.strategies": ("STRATEGIES", "Strategy", "run_search"),
    "prmsearch.search.tree": ("Node", "Tree"),
}
_LAZY = {name: module for module, names in _MODULES.items() for name in names}

__all__ = sorted(_LAZY)


__getattr__, __dir__ = lazy_names(__name__, _LAZY, globals())
