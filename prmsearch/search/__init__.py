"""Reward-guided search: generators (policy), scorers (reward models), strategies (`strategies.STRATEGIES`), the tree,
the runner."""

from __future__ import annotations

from .adapter_scorer import AdapterScorer
from .engine import Scorer, ScorerError, Search, SearchError, SearchParams, SearchSettings, State, TreeScorer
from .generators import Completion, Generator, GeneratorError, HFGenerator, derive_seed
from .load import load_scorer
from .scorer import OutcomeScorer, StepScorer
from .strategies import NEEDS_SCORER, SAMPLES_WHOLE, STRATEGIES, Strategy, run_search
from .tree import Node, Tree

__all__ = [
    "NEEDS_SCORER",
    "SAMPLES_WHOLE",
    "STRATEGIES",
    "AdapterScorer",
    "Completion",
    "Generator",
    "GeneratorError",
    "HFGenerator",
    "Node",
    "OutcomeScorer",
    "ScorerError",
    "Search",
    "SearchError",
    "SearchParams",
    "Scorer",
    "SearchSettings",
    "State",
    "StepScorer",
    "Strategy",
    "Tree",
    "TreeScorer",
    "derive_seed",
    "load_scorer",
    "run_search",
]
