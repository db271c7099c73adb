"""Reward-guided search: generators (policy), scorers (reward models), strategies (`strategies.STRATEGIES`), the tree,
the runner, run folders and their reports.

Names are imported on first use (PEP 562), as in `prmsearch/__init__.py`: `prmsearch report` and the CLI's parser
reach `search.report` and `search.results` without loading torch, which the scorers and generators need.
"""

from __future__ import annotations

from ..lazy import lazy_names

# name -> the module that defines (or re-exports) it
_LAZY = {
    "Scorer": "prmsearch.scoring",
    "ScorerError": "prmsearch.scoring",
    "TreeScorer": "prmsearch.scoring",
    "AdapterScorer": "prmsearch.search.adapter_scorer",
    "Search": "prmsearch.search.engine",
    "SearchError": "prmsearch.search.engine",
    "SearchParams": "prmsearch.search.engine",
    "SearchSettings": "prmsearch.search.engine",
    "State": "prmsearch.search.engine",
    "Completion": "prmsearch.search.generators",
    "Generator": "prmsearch.search.generators",
    "GeneratorError": "prmsearch.search.generators",
    "HFGenerator": "prmsearch.search.generators",
    "derive_seed": "prmsearch.search.generators",
    "load_scorer": "prmsearch.search.load",
    "OutcomeScorer": "prmsearch.search.scorer",
    "StepScorer": "prmsearch.search.scorer",
    "STRATEGIES": "prmsearch.search.strategies",
    "Strategy": "prmsearch.search.strategies",
    "run_search": "prmsearch.search.strategies",
    "Node": "prmsearch.search.tree",
    "Tree": "prmsearch.search.tree",
}

__all__ = sorted(_LAZY)


__getattr__, __dir__ = lazy_names(__name__, _LAZY, globals())
