"""The strategies, in one registry: what each one runs, what it needs from a reward model, and where the score of
the answer it picks comes from. The runner, the CLI and the checks all read this table, not lists of names."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from ..records import Problem
from .beam import beam, dvts
from .best_of_n import best_of_n, greedy, majority, weighted_best_of_n
from .engine import Generator, Scorer, Search, SearchError, SearchParams, State
from .mcts import mcts


@dataclass(frozen=True)
class Strategy:
    run: Callable[[Search, list[State]], None]
    help: str
    scorer: str | None = None  # None: no reward model; "solutions": any scorer, on whole solutions; "steps": a PRM
    samples_whole: bool = False  # judges N whole samples, so N=4 takes the first 4 of N=16's (an N sweep shares them)
    whole_beams: bool = False  # N must be a multiple of the width: N/M beams or subtrees
    path_score: bool = False  # the answer's score is `agg` over its path's step scores, not the candidate's own


STRATEGIES: dict[str, Strategy] = {
    "greedy": Strategy(greedy, "one solution at temperature 0"),
    "majority": Strategy(majority, "the most common answer of N samples", samples_whole=True),
    "best_of_n": Strategy(best_of_n, "the best-scored of N samples", "solutions", samples_whole=True),
    "weighted_best_of_n": Strategy(
        weighted_best_of_n, "the answer whose N samples' scores sum highest", "solutions", samples_whole=True
    ),
    "beam": Strategy(beam, "step-level beam search: N/M beams, M next steps each", "steps", False, True, True),
    "dvts": Strategy(dvts, "N/M independent subtrees, each a beam of width M", "steps", False, True, True),
    "mcts": Strategy(mcts, "Monte Carlo tree search, N simulations, PRM values", "steps", path_score=True),
}
NEEDS_SCORER = tuple(name for name, s in STRATEGIES.items() if s.scorer)
SAMPLES_WHOLE = tuple(name for name, s in STRATEGIES.items() if s.samples_whole)


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
    if strategy not in STRATEGIES:
        raise SearchError(f"unknown strategy {strategy!r}; choose one of {', '.join(STRATEGIES)}")
    if STRATEGIES[strategy].scorer and scorer is None:
        raise SearchError(f"strategy {strategy!r} needs a scorer (a reward model)")
    search = Search(generator, scorer, params or SearchParams(), **options)
    states = search.start(problems)
    try:
        STRATEGIES[strategy].run(search, states)
    finally:
        search.finish(states)
    return states
