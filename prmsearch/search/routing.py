"""Compute-optimal routing per problem (Snell et al., 2024, "Scaling LLM Test-Time Compute Optimally can be More
Effective than Scaling Model Parameters"): the best strategy depends on how hard the problem is — search helps hard
problems and can hurt easy ones, where a few samples and a vote are enough — so spend compute where it pays.

Difficulty is estimated cheaply, as Snell et al. do (model-predicted difficulty), from a probe: the first P samples
best-of-P draws (the same seeds), scored by the run's reward model; difficulty = 1 − their mean score (1 when none
finished). A routing table, fitted on a training split (`route_fit.py`, `prmsearch route fit`), splits difficulty
into bins at quantiles and gives each bin a (strategy, N), chosen to get the most problems right with a mean cost
per problem within a token budget (exactly: a Pareto frontier of (tokens, right) over the bins). The cost of an option
is what `routed` spends on it: the probe plus the option, except that a whole-sample option (majority, best-of-N,
weighted best-of-N) keeps the probe's P samples as its first P and draws only N − P more.

`--strategy routed --route-table TABLE` (the `routed` function) runs the probe on every problem, looks up its bin
and runs the bin's choice on it, problems with the same choice batched together; each result row says which
strategy and N the problem got (`route`) and its difficulty.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..files import write_atomic
from .engine import Search, SearchError, State


@dataclass
class RoutingTable:
    """Difficulty bins and the (strategy, N) each bin gets; `fit` holds what the fit saw, for the record."""

    probe: int  # P: samples the difficulty is estimated from
    edges: list[float]  # bin i holds difficulties in [edges[i-1], edges[i]); len(choices) - 1 of them
    choices: list[tuple[str, int]]
    budget: float | None = None  # the mean tokens per problem it was fitted to
    fit: dict[str, Any] = field(default_factory=dict)

    def choose(self, difficulty: float) -> tuple[str, int]:
        return self.choices[sum(difficulty >= e for e in self.edges)]

    def save(self, path: str | Path) -> Path:
        data = dataclasses.asdict(self)
        data["choices"] = [{"strategy": s, "n": n} for s, n in self.choices]
        write_atomic(Path(path), json.dumps(data, indent=1) + "\n")
        return Path(path)

    @classmethod
    def load(cls, path: str | Path) -> RoutingTable:
        try:
            data = json.loads(Path(path).read_text())
            table = cls(
                int(data["probe"]),
                [float(e) for e in data["edges"]],
                [(c["strategy"], int(c["n"])) for c in data["choices"]],
                data.get("budget"),
                data.get("fit", {}),
            )
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise SearchError(f"route table {path}: cannot be read ({e}); make one with `prmsearch route fit`") from e
        if len(table.edges) != len(table.choices) - 1 or table.probe < 1:
            raise SearchError(f"route table {path}: {len(table.choices)} choices need {len(table.choices) - 1} edges")
        return table


# ---- the strategy ------------------------------------------------------------------------------------------------


def routed(
    search: Search,
    states: list[State],
    run: Callable[[str, Search, list[State]], None],
    whole_sample: Callable[[str], bool],
) -> None:
    """Probe every problem, then run its bin's choice (`run(strategy, search, states)` runs a registered strategy
    with `search.params.budget` as N; a choice that `whole_sample` judges N whole samples keeps the probe's as its
    first). Each state's `info` gets its difficulty and route."""
    p = search.params
    if not p.route_table:
        raise SearchError("strategy 'routed' needs a routing table: --route-table (made by `prmsearch route fit`)")
    if search.scorer is None:
        raise SearchError("strategy 'routed' needs a reward model: the probe's difficulty is its score")
    table = RoutingTable.load(p.route_table)
    probes = search.expand([(st, st.tree.root, table.probe) for st in states], whole=True, probe=True)
    search.score_solutions([(st, n) for st, nodes in zip(states, probes, strict=True) for n in nodes])
    groups: dict[tuple[str, int], list[tuple[State, list]]] = {}
    for st, nodes in zip(states, probes, strict=True):
        scores = [n.score for n in nodes if n.complete and n.score is not None]
        difficulty = 1.0 - sum(scores) / len(scores) if scores else 1.0
        choice = table.choose(difficulty)
        st.info.update(difficulty=round(difficulty, 4), route=f"{choice[0]}@{choice[1]}")
        groups.setdefault(choice, []).append((st, nodes))
    for (strategy, n), members in groups.items():
        group = [st for st, _ in members]
        old = search.params
        search.params = dataclasses.replace(old, budget=n)
        try:
            if whole_sample(strategy):
                _from_probe(search, members, strategy, n)
            else:
                run(strategy, search, group)
        finally:
            search.params = old


def _from_probe(search: Search, members: list[tuple[State, list]], strategy: str, n: int) -> None:
    """A whole-sample choice: the probe's samples are its first min(N, P); the other N − P are drawn under their own
    seeds (salt "route"), scored, and the answer picked among all N as the strategy picks it."""
    more = [(st, st.tree.root, n - len(probe)) for st, probe in members if n > len(probe)]
    extra = dict(zip((st.uid for st, _, _ in more), search.expand(more, whole=True, salt="route"), strict=True))
    new = []
    for st, probe in members:
        drawn = extra.get(st.uid, [])
        st.candidates = [c for c in [*probe[:n], *drawn] if c.complete]
        new += [(st, c) for c in drawn]
    if strategy != "majority":
        search.score_solutions([(st, c) for st, c in new if c.complete])
    search.select_answer([st for st, _ in members], strategy, scores="own")
