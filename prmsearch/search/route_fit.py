"""Fitting a routing table (`search/routing.py` follows one): per difficulty bin of the training problems, the
(strategy, N) that gets the most of them right within a mean token budget, chosen exactly over a Pareto frontier of
(tokens, right). `prmsearch route fit` runs it on training-split result folders."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..recipes import option
from .engine import SearchError
from .report import read_records, result_files
from .routing import RoutingTable
from .strategies import STRATEGIES

# ---- the fit ------------------------------------------------------------------------------------------------------


def fit_routing(
    records: Iterable[dict[str, Any]],
    budget: float,
    *,
    probe: tuple[str, int] = ("best_of_n", 1),
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
    known = STRATEGIES.get(option[0])
    if known is not None and known.samples_whole:
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
    probe: str = option("best_of_n@1", "STRATEGY@P: the scored whole-sample run whose P samples give the difficulty")
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
