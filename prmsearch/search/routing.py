"""Compute-optimal routing per problem (Snell et al., 2024, "Scaling LLM Test-Time Compute Optimally can be More
Effective than Scaling Model Parameters"): the best strategy depends on how hard the problem is — search helps hard
problems and can hurt easy ones, where a few samples and a vote are enough — so spend compute where it pays.

Difficulty is estimated cheaply, as Snell et al. do (model-predicted difficulty), from a probe: the first P samples
best-of-P draws (the same seeds), scored by the run's reward model; difficulty = 1 − their mean score (1 when none
finished). A routing table, fitted on a training split by `fit_routing` (`prmsearch route fit`), splits difficulty into
bins at quantiles and gives each bin a (strategy, N), chosen to get the most problems right with a mean cost per
problem within a token budget (exactly: a Pareto frontier of (tokens, right) over the bins). The cost of an option
is what `routed` spends on it: the probe plus the option, except that a whole-sample option (majority, best-of-N,
weighted best-of-N) keeps the probe's P samples as its first P and draws only N − P more.

`--strategy routed --route-table TABLE` (the `routed` function) runs the probe on every problem, looks up its bin
and runs the bin's choice on it, problems with the same choice batched together; each result row says which
strategy and N the problem got (`route`) and its difficulty.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..files import write_atomic
from ..recipes import option
from .engine import Search, SearchError, State
from .report import read_records, result_files

WHOLE_SAMPLE = ("majority", "best_of_n", "weighted_best_of_n")  # judge N whole samples: the probe's are their first


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


def routed(search: Search, states: list[State], run: Callable[[str, Search, list[State]], None]) -> None:
    """Probe every problem, then run its bin's choice (`run(strategy, search, states)` runs a registered strategy
    with `search.params.budget` as N). Each state's `info` gets its difficulty and route."""
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
            if strategy in WHOLE_SAMPLE:
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


# ---- the fit ------------------------------------------------------------------------------------------------------


def fit_routing(
    records: Iterable[dict[str, Any]],
    budget: float,
    *,
    probe: tuple[str, int] = ("best_of_n", 4),
    bins: int = 4,
    options: Sequence[tuple[str, int]] | None = None,
) -> RoutingTable:
    """The table that gets the most training problems right within `budget` mean tokens a problem. `records` are
    the result rows of training-split runs that tried each option on the same problems, the probe's (strategy, N)
    among them, its rows carrying `mean_score` (the mean score of its samples, which `prmsearch search` writes for
    scored whole-sample strategies)."""
    rows, options, problems = _training_rows(records, probe, options)
    if len(problems) < bins:
        raise SearchError(f"{len(problems)} training problems have every option's result; {bins} bins need more")
    difficulty = {pid: _difficulty(rows[probe][pid]) for pid in problems}
    order = sorted(problems, key=lambda pid: (difficulty[pid], pid))
    edges = sorted({difficulty[order[round(i * len(order) / bins)]] for i in range(1, bins)})
    members: list[list[str]] = [[] for _ in range(len(edges) + 1)]
    for pid in problems:
        members[sum(difficulty[pid] >= e for e in edges)].append(pid)
    probe_tokens = {pid: rows[probe][pid]["generated_tokens"] for pid in problems}
    per_bin = [
        {
            o: (
                sum(_cost(o, rows[o][pid], probe[1], probe_tokens[pid]) for pid in pids),
                sum(bool(rows[o][pid]["correct"]) for pid in pids),
            )
            for o in options
        }
        for pids in members
    ]
    picks = _best_within(per_bin, budget * len(problems))
    if picks is None:
        cheapest = sum(min(c for c, _ in b.values()) for b in per_bin) / len(problems)
        raise SearchError(f"no routing fits {budget:g} tokens a problem: the cheapest costs {cheapest:.1f}")
    plain = {o: sum(rows[o][pid]["generated_tokens"] for pid in problems) / len(problems) for o in options}
    fitted = _fit_record(per_bin, picks, members, probe, plain)
    return RoutingTable(probe[1], edges, list(picks), budget, fitted)


def _training_rows(
    records: Iterable[dict[str, Any]], probe: tuple[str, int], options: Sequence[tuple[str, int]] | None
) -> tuple[dict[tuple[str, int], dict[str, dict[str, Any]]], list[tuple[str, int]], list[str]]:
    """The result rows by option and problem, the options to choose from (default: every one the runs hold) and
    the problems every option and the probe have a result for."""
    rows: dict[tuple[str, int], dict[str, dict[str, Any]]] = {}
    for r in records:
        rows.setdefault((r["strategy"], int(r["n"])), {})[r["problem_id"]] = r
    if probe not in rows:
        raise SearchError(f"no {probe[0]}@{probe[1]} results to estimate difficulty from: run it on the training split")
    if any(r.get("mean_score") is None and r.get("candidates") for r in rows[probe].values()):
        raise SearchError(f"the {probe[0]}@{probe[1]} results have no mean_score: rerun them with this prmsearch")
    chosen = [(str(s), int(n)) for s, n in options] if options else sorted(k for k in rows if k[0] != "routed")
    missing = [o for o in chosen if o not in rows]
    if missing:
        raise SearchError(f"no training results for {', '.join(f'{s}@{n}' for s, n in missing)}")
    problems = sorted(set.intersection(*(set(rows[o]) for o in [probe, *chosen])))
    return rows, chosen, problems


def _fit_record(
    per_bin: list[dict[tuple[str, int], tuple[float, int]]],
    picks: list[tuple[str, int]],
    members: list[list[str]],
    probe: tuple[str, int],
    plain: dict[tuple[str, int], float],
) -> dict[str, Any]:
    """What the fit saw: its accuracy and tokens (the probe's included) on the training problems, each bin's choice,
    and each option's own accuracy and mean tokens, run alone on every problem."""
    count = sum(len(m) for m in members)
    return {
        "problems": count,
        "probe": f"{probe[0]}@{probe[1]}",
        "accuracy": round(sum(per_bin[i][o][1] for i, o in enumerate(picks)) / count, 4),
        "tokens": round(sum(per_bin[i][o][0] for i, o in enumerate(picks)) / count, 1),
        "bins": [
            {"problems": len(pids), "choice": f"{o[0]}@{o[1]}", "right": per_bin[i][o][1]}
            for i, (pids, o) in enumerate(zip(members, picks, strict=True))
        ],
        "single_options": {
            f"{o[0]}@{o[1]}": {"accuracy": round(sum(b[o][1] for b in per_bin) / count, 4), "tokens": round(t, 1)}
            for o, t in plain.items()
        },
    }


def _difficulty(row: dict[str, Any]) -> float:
    score = row.get("mean_score")
    return 1.0 if score is None else round(1.0 - score, 6)


def _cost(option: tuple[str, int], row: dict[str, Any], probe_n: int, probe_tokens: float) -> float:
    """Tokens `routed` spends on a problem with this option: a whole-sample option reuses the probe's samples
    (N ≤ P: the probe alone; N > P: about the option's own N samples), anything else adds the probe to its own."""
    if option[0] in WHOLE_SAMPLE:
        return probe_tokens if option[1] <= probe_n else row["generated_tokens"]
    return probe_tokens + row["generated_tokens"]


def _best_within(per_bin: list[dict[tuple[str, int], tuple[float, int]]], total: float) -> list | None:
    """The choice per bin with the most right answers at a total cost within `total` (ties: the cheaper): a
    Pareto frontier of (cost, right, picks) grown bin by bin, exact."""
    frontier: list[tuple[float, int, list]] = [(0.0, 0, [])]
    for options in per_bin:
        grown = [(c + oc, r + orr, [*picks, o]) for c, r, picks in frontier for o, (oc, orr) in options.items()]
        grown = [g for g in grown if g[0] <= total + 1e-9]
        grown.sort(key=lambda g: (g[0], -g[1]))
        frontier = []
        for g in grown:  # keep only points that get more right than every cheaper one
            if not frontier or g[1] > frontier[-1][1]:
                frontier.append(g)
        if not frontier:
            return None
    return max(frontier, key=lambda g: (g[1], -g[0]))[2]


# ---- `prmsearch route fit` ---------------------------------------------------------------------------------------


@dataclass
class RouteFitConfig:
    """`prmsearch route fit`: every flag is a field."""

    runs: list[str] = option([], "training-split run folders that ran every option on the same problems")
    budget: float = option(0.0, "mean generated tokens a problem the routing may spend, its probe included")
    probe: str = option("best_of_n@4", "STRATEGY@P: the scored whole-sample run whose P samples give the difficulty")
    bins: int = option(4, "difficulty bins, cut at quantiles of the training problems' difficulty")
    options: list[str] = option([], "STRATEGY@N choices (default: every one the runs hold)")
    output: str = option("route.json", "where the routing table is written (JSON)")

    def __post_init__(self) -> None:
        for name in ("runs", "options"):
            value = getattr(self, name)
            if isinstance(value, str):
                setattr(self, name, [v.strip() for v in value.split(",") if v.strip()])
        if not self.runs:
            raise SearchError("--runs: give the training-split run folders to fit on")
        if self.budget <= 0:
            raise SearchError("--budget: give the mean generated tokens a problem may cost (above 0)")
        if self.bins < 1:
            raise SearchError("--bins must be at least 1")
        for value in (self.probe, *self.options):
            parse_option(value)
        if Path(self.output).resolve() in {Path(r).resolve() for r in self.runs}:
            raise SearchError(f"--output {self.output} is one of the runs: choose a new file")


def parse_option(text: str) -> tuple[str, int]:
    """STRATEGY@N -> (strategy, N)."""
    strategy, at, n = text.rpartition("@")
    if not at or not strategy or not n.isdigit() or int(n) < 1:
        raise SearchError(f"{text!r} is not STRATEGY@N (e.g. best_of_n@16)")
    return strategy, int(n)


def fit_runs(cfg: RouteFitConfig) -> RoutingTable:
    """`fit` on the results of `cfg.runs`, saved to `cfg.output`."""
    records = [r for run in cfg.runs for f in result_files(run, required=True) for r in read_records(f)]
    options = [parse_option(o) for o in cfg.options] or None
    table = fit_routing(records, cfg.budget, probe=parse_option(cfg.probe), bins=cfg.bins, options=options)
    table.save(cfg.output)
    return table


def format_fit(table: RoutingTable) -> str:
    """The fitted table as text: each bin's difficulty range and choice, and the fit against each single option."""
    fit = table.fit
    lines = [f"routing table on {fit['problems']} training problems (difficulty: 1 - mean score of {fit['probe']})"]
    for i, b in enumerate(fit["bins"]):
        low = f"{table.edges[i - 1]:.3f} <= " if i else ""
        high = f" < {table.edges[i]:.3f}" if i < len(table.edges) else ""
        lines.append(f"  {low}difficulty{high}: {b['choice']} ({b['right']}/{b['problems']} right)")
    lines.append(
        f"routed: accuracy {fit['accuracy']:.3f} at {fit['tokens']:.1f} tokens a problem (budget {table.budget:g})"
    )
    within = {k: v for k, v in fit["single_options"].items() if v["tokens"] <= (table.budget or 0)}
    if within:
        name, best = max(within.items(), key=lambda kv: (kv[1]["accuracy"], -kv[1]["tokens"]))
        lines.append(
            f"best single option within the budget: {name}, accuracy {best['accuracy']:.3f} at {best['tokens']:.1f}"
        )
    return "\n".join(lines)
