"""The strategies, in one registry: what each one runs, what it needs from a reward model, and where the score of
the answer it picks comes from. The runner, the CLI and the checks all read this table, not lists of names."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from ..records import Problem
from .beam import beam, dvts
from .engine import Generator, Scorer, Search, SearchError, SearchParams, State
from .mcts import mcts
from .particles import particle_filter, particle_gibbs
from .routing import routed
from .sampling import best_sample, greedy, majority_vote, weighted_vote


@dataclass(frozen=True)
class Strategy:
    run: Callable[[Search, list[State]], None]
    help: str
    scorer: str | None = None  # None: no reward model; "solutions": any scorer, on whole solutions; "steps": a PRM
    samples_whole: bool = False  # judges N whole samples, so N=4 takes the first 4 of N=16's (an N sweep shares them)
    whole_beams: bool = False  # N must be a multiple of the width: N/M beams or subtrees
    path_score: bool = False  # the answer's score is `agg` over its path's step scores, not the candidate's own
    sweeps_n: bool = True  # False: N means nothing to it (greedy, routed), so it runs once, as N=1


STRATEGIES: dict[str, Strategy] = {
    "greedy": Strategy(greedy, "one solution at temperature 0", sweeps_n=False),
    "majority": Strategy(majority_vote, "the most common answer of N samples", samples_whole=True),
    "best_of_n": Strategy(best_sample, "the best-scored of N samples", "solutions", samples_whole=True),
    "weighted_best_of_n": Strategy(
        weighted_vote, "the answer whose N samples' scores sum highest", "solutions", samples_whole=True
    ),
    "beam": Strategy(beam, "step-level beam search: N/M beams, M next steps each", "steps", False, True, True),
    "dvts": Strategy(dvts, "N/M independent subtrees, each a beam of width M", "steps", False, True, True),
    "mcts": Strategy(mcts, "Monte Carlo tree search, N simulations, PRM values", "steps", path_score=True),
    "particle_filter": Strategy(
        particle_filter,
        "N particles redrawn after every step in proportion to their PRM scores",
        "steps",
        path_score=True,
    ),
    "particle_gibbs": Strategy(
        particle_gibbs,
        "particle filtering --iterations times, each pass beside one reference particle",
        "steps",
        path_score=True,
    ),
    "routed": Strategy(
        lambda search, states: routed(search, states, _run_registered, lambda s: STRATEGIES[s].samples_whole),
        "each problem's strategy and N from --route-table by its difficulty (a probe's reward-model scores)",
        "solutions",
        sweeps_n=False,
    ),
}


def _run_registered(strategy: str, search: Search, states: list[State]) -> None:
    """What `routed` runs a bin's choice with: the registry's strategy, its scorer checked."""
    if strategy not in STRATEGIES or strategy == "routed":
        raise SearchError(f"the routing table names strategy {strategy!r}, which cannot be routed to")
    if STRATEGIES[strategy].scorer == "steps":
        search.needs_step_scorer(strategy)
    STRATEGIES[strategy].run(search, states)


def run_search(
    problems: Sequence[Problem],
    generator: Generator,
    scorer: Scorer | None = None,
    strategy: str = "beam",
    params: SearchParams | None = None,
    **options,
) -> list[State]:
    """Search every problem in one batched pass of `strategy`; each returned State holds the tree, the candidates,
    the chosen node and the compute counts. `options` go to `Search` (step_format, prompt_template, timeout, ...)."""
    return run_strategy(Search(generator, scorer, params or SearchParams(), **options), problems, strategy)


def run_strategy(search: Search, problems: Sequence[Problem], strategy: str) -> list[State]:
    """`run_search` with a `Search` already built (a run keeps one per chunk, and grades with it afterwards)."""
    if strategy not in STRATEGIES:
        raise SearchError(f"unknown strategy {strategy!r}; choose one of {', '.join(STRATEGIES)}")
    if STRATEGIES[strategy].scorer and search.scorer is None:
        raise SearchError(f"strategy {strategy!r} needs a scorer (a reward model)")
    states = search.start(problems)
    try:
        STRATEGIES[strategy].run(search, states)
    finally:
        search.finish(states)
    return states
