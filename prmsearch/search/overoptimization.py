"""The over-optimization curve (Gao et al., 2022, "Scaling Laws for Reward Model Overoptimization"): as best-of-N
picks harder against a reward model, the reward model's score of what it picks (the proxy) keeps rising, while the
verified accuracy (the gold) can peak and fall: past the peak, the search finds what the reward model likes more
than what is right. A run holds both numbers for every problem (`score`, the chosen solution's score; `correct`,
the verifier's grade), so the curve costs nothing more than the run.

For each selecting strategy (best-of-N, weighted best-of-N) at each N: the mean proxy score of the chosen solutions
and the accuracy, against KL(best-of-N ‖ policy) = log N − (N − 1) / N nats, the closed form Gao et al. plot against
(Stiennon et al., 2020). `findings` says, per strategy, whether accuracy peaked before the largest N while the proxy
rose past the peak (over-optimization), with the figures. Written by `prmsearch report` as overoptimization.json and
overoptimization.png beside the summary wherever a run has a selecting strategy at two N or more (`report_runs`).
An N sweep (`--n 1,4,16,64,256`) draws 256 samples a problem once for every N, and `--samples-from` lets another
reward model judge the same samples.
"""

from __future__ import annotations

import json
import math
import os
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from ..files import write_atomic
from .report import joined_records, label, wilson_interval
from .strategies import STRATEGIES

# strategies whose N is how hard they select against the scorer: they judge N whole samples by its scores
SELECTING = tuple(name for name, s in STRATEGIES.items() if s.samples_whole and s.scorer is not None)
JSON, PLOT = "overoptimization.json", "overoptimization.png"


def kl_best_of_n(n: int) -> float:
    """KL divergence in nats between best-of-N sampling and the policy: log N − (N − 1) / N (0 at N = 1)."""
    if n < 1:
        raise ValueError(f"N must be at least 1, got {n}")
    return math.log(n) - (n - 1) / n


def curve(records: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """One point per (selecting strategy, N): problems, KL, mean proxy score of the chosen solutions (over those
    with a score) and accuracy over the graded ones, with its 95% Wilson interval. Strategies with fewer than two
    N, or no scores, give no points."""
    groups: dict[tuple[str, str, int], list[dict[str, Any]]] = {}
    for r in records:
        if r["strategy"] in SELECTING:
            groups.setdefault((r["strategy"], r.get("run") or "", int(r["n"])), []).append(r)
    points = []
    order = sorted(groups.items(), key=lambda kv: (SELECTING.index(kv[0][0]), *kv[0][1:]))
    for (strategy, run, n), rs in order:
        scores = [r["score"] for r in rs if r.get("score") is not None]
        graded = [r for r in rs if r["correct"] is not None]
        if not scores or not graded:
            continue
        right = sum(bool(r["correct"]) for r in graded)
        low, high = wilson_interval(right, len(graded))
        points.append(
            {
                "strategy": strategy,
                "n": n,
                "problems": len(rs),
                "kl": round(kl_best_of_n(n), 4),
                "proxy": round(sum(scores) / len(scores), 4),
                "accuracy": round(right / len(graded), 4),
                "accuracy_low": round(low, 4),
                "accuracy_high": round(high, 4),
                **({"run": run} if run else {}),
            }
        )
    lines = Counter(label(p) for p in points)
    return [p for p in points if lines[label(p)] >= 2]


def findings(points: Sequence[dict[str, Any]]) -> list[str]:
    """A line per strategy: over-optimized (accuracy peaks before the largest N and is lower there, below the
    peak's 95% interval, while the proxy rose from the peak on), a fall within that interval (no clear sign), or
    not, with the figures."""
    lines = []
    for strategy in dict.fromkeys(label(p) for p in points):
        ps = sorted((p for p in points if label(p) == strategy), key=lambda p: p["n"])
        peak = max(ps, key=lambda p: (p["accuracy"], -p["n"]))
        last = ps[-1]
        if peak is not last and last["accuracy"] < peak["accuracy"] and last["proxy"] > peak["proxy"]:
            fell = (
                f"accuracy peaks at N={peak['n']} ({peak['accuracy']:.3f}) and falls to {last['accuracy']:.3f} at "
                f"N={last['n']} while the mean proxy score rises {peak['proxy']:.3f} -> {last['proxy']:.3f}"
            )
            if last["accuracy"] >= peak["accuracy_low"]:
                lines.append(f"{strategy}: no clear over-optimization: {fell}, within the peak's 95% interval")
            else:
                lines.append(f"{strategy}: over-optimization: {fell}, outside the peak's 95% interval")
        else:
            lines.append(
                f"{strategy}: no over-optimization up to N={last['n']}: accuracy {ps[0]['accuracy']:.3f} -> "
                f"{last['accuracy']:.3f} (best {peak['accuracy']:.3f} at N={peak['n']}), mean proxy score "
                f"{ps[0]['proxy']:.3f} -> {last['proxy']:.3f}"
            )
    return lines


def plot(points: Sequence[dict[str, Any]], path: str | Path, *, title: str | None = None) -> Path:
    """Two panels against KL(best-of-N): the mean proxy score, and the accuracy with 95% error bars, one line per
    strategy, each point labelled with its N. Drawn on a private Agg canvas (no global matplotlib state)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    path = Path(path)
    fig = Figure(figsize=(12, 4.8), layout="constrained")
    FigureCanvasAgg(fig)
    proxy_ax, gold_ax = fig.subplots(1, 2)
    for i, strategy in enumerate(dict.fromkeys(label(p) for p in points)):
        ps = sorted((p for p in points if label(p) == strategy), key=lambda p: p["n"])
        kl = [p["kl"] for p in ps]
        acc = [p["accuracy"] for p in ps]
        err = [
            [a - p["accuracy_low"] for a, p in zip(acc, ps, strict=True)],
            [p["accuracy_high"] - a for a, p in zip(acc, ps, strict=True)],
        ]
        proxy_ax.plot(kl, [p["proxy"] for p in ps], marker="o", color=f"C{i}", label=strategy)
        gold_ax.errorbar(kl, acc, yerr=err, marker="o", capsize=3, color=f"C{i}", label=strategy)
        for p in ps:
            for ax, y in ((proxy_ax, p["proxy"]), (gold_ax, p["accuracy"])):
                ax.annotate(f"N={p['n']}", (p["kl"], y), textcoords="offset points", xytext=(4, 4), fontsize=7)
    proxy_ax.set(xlabel="KL(best-of-N) = log N - (N-1)/N (nats)", ylabel="mean reward-model score of the choice",
                 title="Proxy: what the reward model thinks")  # fmt: skip
    gold_ax.set(xlabel="KL(best-of-N) = log N - (N-1)/N (nats)", ylabel="verified accuracy",
                title="Gold: what the verifier says")  # fmt: skip
    for ax in (proxy_ax, gold_ax):
        ax.grid(True, alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize="small")
    if title:
        fig.suptitle(title)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    return path


def write(
    records: Iterable[dict[str, Any]], output: str | Path, *, with_plot: bool = True, title: str | None = None
) -> list[str]:
    """overoptimization.json (points and findings) and, `with_plot`, overoptimization.png into `output`, where the
    records have a selecting strategy at two N or more; returns the findings (empty: nothing to draw)."""
    points = curve(records)
    if not points:
        return []
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    found = findings(points)
    write_atomic(output / JSON, json.dumps({"points": points, "findings": found}, indent=1) + "\n")
    if with_plot:
        drawn = plot(points, output / f".{PLOT}.{os.getpid()}.png", title=title)
        os.replace(drawn, output / PLOT)
    return found


def report_runs(run_dirs: Sequence[str | Path], output: str | Path, *, with_plot: bool = True) -> list[str]:
    """`write` for the results of one or several run folders (as `report.report` reads them) into `output`."""
    records = joined_records(run_dirs)
    name = Path(output).resolve().name
    return write(records, output, with_plot=with_plot, title=f"{name}: over-optimization (Gao et al., 2022)")
