"""Reward-guided search: generators (policy), scorers (reward models), strategies, the tree, the runner."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from ..records import Problem
from .adapter_scorer import AdapterScorer
from .beam import beam, dvts
from .engine import Scorer, Search, SearchError, SearchParams, SearchSettings, State
from .generators import Completion, Generator, GeneratorError, HFGenerator, derive_seed
from .mcts import mcts
from .sampling import best_of_n, greedy, majority, weighted_best_of_n
from .scorer import OutcomeScorer, ScorerError, StepScorer, load_scorer
from .tree import Node, Tree

STRATEGIES: dict[str, Callable[[Search, list[State]], None]] = {
    "greedy": greedy,
    "majority": majority,
    "best_of_n": best_of_n,
    "weighted_best_of_n": weighted_best_of_n,
    "beam": beam,
    "dvts": dvts,
    "mcts": mcts,
}
NEEDS_SCORER = ("best_of_n", "weighted_best_of_n", "beam", "dvts", "mcts")
# Strategies that judge N whole samples of a problem: at one seed, N=4 judges the first 4 of N=16's samples.
SAMPLES_WHOLE = ("majority", "best_of_n", "weighted_best_of_n")


def run_search(
    problems: Sequence[Problem],
    generator: Generator,
    scorer: Scorer | None = None,
    strategy: str = "beam",
    params: SearchParams | None = None,
    **options,
) -> list[State]:
    """Search every problem in one batched pass of `strategy`; each returned State holds the tree, the candidates,
    the chosen node and the compute counts. `options` go to `Search` (step_format, prompt_template, ...)."""
    if strategy not in STRATEGIES:
        raise SearchError(f"unknown strategy {strategy!r}; choose one of {', '.join(STRATEGIES)}")
    if strategy in NEEDS_SCORER and scorer is None:
        raise SearchError(f"strategy {strategy!r} needs a scorer (a reward model)")
    search = Search(generator, scorer, params or SearchParams(), **options)
    states = search.start(problems)
    try:
        STRATEGIES[strategy](search, states)
    finally:
        search.finish(states)
    return states


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
    "SearchSettings",
    "State",
    "StepScorer",
    "Tree",
    "derive_seed",
    "load_scorer",
    "run_search",
]
