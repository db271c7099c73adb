"""`prmsearch report`: accuracy against compute for a `prmsearch search` run folder, finished or partial.

One row per (strategy, N): problems, accuracy with its 95% Wilson score interval, mean generated and scored tokens
per problem, and wall time. Written next to the run (or to `--output`) as
- `summary.json`: a list of rows `{"strategy", "n", "problems", "accuracy", "accuracy_low", "accuracy_high",
  "generated_tokens", "scored_tokens", "seconds"}` (accuracy in [0, 1]; null when nothing was graded);
- `summary.md`: the same rows as a markdown table;
- `accuracy.png`: accuracy against N and against mean generated tokens, one line per strategy.

The inputs (`results.jsonl`, and the `results.shard-I-of-K.jsonl` parts of a run split over processes, read as one)
are only read, never written: a torn last line (a run killed mid-write) is skipped here and left in the file, for
`prmsearch search --resume` to deal with. The summary files are replaced whole (written under a temporary name,
then renamed), so the parts of a split run can write them at the same time.

This module imports nothing from `prmsearch.search` (the runner imports it to write a run's summary), and
matplotlib only inside `plot`.
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
from .strategies import STRATEGIES

RESULTS = "results.jsonl"
RESULT_PARTS = "results.shard-*-of-*.jsonl"  # the parts of a run split over processes (search/shard.py)
SUMMARY_JSON, SUMMARY_MD, PLOT = "summary.json", "summary.md", "accuracy.png"
Z95 = 1.959963984540054  # the standard normal's 97.5% quantile
FIELDS = (
    "strategy",
    "n",
    "problems",
    "accuracy",
    "accuracy_low",
    "accuracy_high",
    "generated_tokens",
    "scored_tokens",
    "seconds",
)


def wilson_interval(successes: int, total: int, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval for a binomial proportion (95% by default); (0, 0) ... (1, 1) never collapse to a
    point the way the normal approximation does at 0% or 100%."""
    if total <= 0:
        raise ValueError("the Wilson interval needs at least one trial")
    if not 0 <= successes <= total:
        raise ValueError(f"successes must be in [0, {total}], got {successes}")
    p = successes / total
    z2 = z * z
    center = (p + z2 / (2 * total)) / (1 + z2 / total)
    half = z * math.sqrt(p * (1 - p) / total + z2 / (4 * total * total)) / (1 + z2 / total)
    low = 0.0 if successes == 0 else max(0.0, center - half)
    high = 1.0 if successes == total else min(1.0, center + half)
    return low, high


def read_records(path: str | Path) -> list[dict[str, Any]]:
    """The records of a results file, read only. A last line without its newline is a torn write when it is not a
    whole JSON object, and is skipped; any other line that is not a JSON object is an error naming its line."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist")
    text = path.read_text(encoding="utf-8")
    lines = text.split("\n")
    last = lines.pop()  # "" when the file ends with a newline
    records = []
    for number, line in enumerate(lines, 1):
        if line.strip():
            records.append(_record(path, number, line))
    if last.strip():
        try:
            records.append(_record(path, len(lines) + 1, last))
        except ValueError:
            pass  # torn by a kill mid-write
    return records


def joined_records(run_dirs: Sequence[str | Path]) -> list[dict[str, Any]]:
    """The records of several run folders (or results files) for one table. Where two folders hold the same
    (strategy, N) — best-of-N of an ORM and of a BT model, say — their records get `run`, the folder's name, so
    each keeps its own row instead of being pooled into one."""
    found = [(Path(d), [r for f in result_files(d, required=True) for r in read_records(f)]) for d in run_dirs]
    held: Counter[tuple[str, int]] = Counter()
    for _, records in found:
        held.update({(r["strategy"], int(r["n"])) for r in records})
    out = []
    for path, records in found:
        name = (path if path.is_dir() else path.parent).name
        out += [{**r, "run": name} if held[r["strategy"], int(r["n"])] > 1 else r for r in records]
    return out


def label(row: dict[str, Any]) -> str:
    """A row's name in tables and plots: its strategy, and its run folder where several runs hold that strategy."""
    return f"{row['strategy']} ({row['run']})" if row.get("run") else row["strategy"]


def _record(path: Path, number: int, line: str) -> dict[str, Any]:
    try:
        row = json.loads(line)
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: line {number}: not JSON ({e})") from e
    if not isinstance(row, dict):
        raise ValueError(f"{path}: line {number}: not a JSON object")
    missing = [k for k in ("strategy", "n", "correct") if k not in row]
    if missing:
        raise ValueError(f"{path}: line {number}: not a search result (no {', '.join(missing)})")
    return row


def summarize(records: Iterable[dict[str, Any]], settings: Sequence[tuple[str, int]] = ()) -> list[dict[str, Any]]:
    """One row per (strategy, N) found in `records` (plus any in `settings`, empty when it has none) and per `run`
    where records carry one (`joined_records`), greedy first then by strategy and N. Accuracy is over the graded
    records (`correct` not null); token means are per problem."""
    groups: dict[tuple[str, int, str], list[dict]] = {(s, int(n), ""): [] for s, n in settings}
    for r in records:
        groups.setdefault((r["strategy"], int(r["n"]), r.get("run") or ""), []).append(r)
    rows = []
    for strategy, n, run in sorted(groups, key=_order):
        rs = groups[(strategy, n, run)]
        graded = [r for r in rs if r["correct"] is not None]
        right = sum(bool(r["correct"]) for r in graded)
        low, high = wilson_interval(right, len(graded)) if graded else (None, None)
        rows.append(
            {
                "strategy": strategy,
                "n": n,
                "problems": len(rs),
                "accuracy": _round(right / len(graded), 4) if graded else None,
                "accuracy_low": _round(low, 4),
                "accuracy_high": _round(high, 4),
                "generated_tokens": _mean(rs, "generated_tokens"),
                "scored_tokens": _mean(rs, "scored_tokens"),
                "seconds": round(sum(r.get("seconds") or 0.0 for r in rs), 3),
            }
        )
        if run:
            rows[-1]["run"] = run
        routes = Counter(r["route"] for r in rs if r.get("route"))
        if routes:  # a routed run: which strategy and N its problems got
            rows[-1]["routes"] = dict(sorted(routes.items(), key=lambda kv: (-kv[1], kv[0])))
    return rows


def _order(key: tuple[str, int, str]) -> tuple[int, str, str, int]:
    """Rows and plot lines come in the registry's order; strategies it does not know follow, by name."""
    strategy, n, run = key
    names = list(STRATEGIES)
    rank = names.index(strategy) if strategy in names else len(names)
    return rank, strategy, run, n


def _round(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)


def _mean(rows: list[dict], key: str) -> float | None:
    values = [r[key] for r in rows if r.get(key) is not None]
    return round(sum(values) / len(values), 1) if values else None


def format_table(rows: Sequence[dict[str, Any]]) -> str:
    """The rows as a markdown table; accuracy reads "n/a" where nothing was graded (no gold answers), with a note
    under the table saying so."""
    lines = [
        "| strategy | N | problems | accuracy | 95% interval | mean generated tokens | mean scored tokens | wall s |",
        "|---|---:|---:|---:|---|---:|---:|---:|",
    ]
    for r in rows:
        if r["accuracy"] is None:
            acc, interval = "n/a", "-"
        else:
            acc, interval = f"{r['accuracy']:.3f}", f"[{r['accuracy_low']:.3f}, {r['accuracy_high']:.3f}]"
        tokens = ["-" if r[k] is None else f"{r[k]:g}" for k in ("generated_tokens", "scored_tokens")]
        lines.append(
            f"| {label(r)} | {r['n']} | {r['problems']} | {acc} | {interval} | {tokens[0]} | {tokens[1]} | "
            f"{r['seconds']:g} |"
        )
    if any(r["accuracy"] is None for r in rows):
        lines.append("\nn/a: no answer was graded (the problems have no gold answers), so accuracy is not available")
    for r in rows:
        if r.get("routes"):
            got = ", ".join(f"{route} for {count}" for route, count in r["routes"].items())
            lines.append(f"\n{label(r)}: {got} problems")
    return "\n".join(lines)


def plot(rows: Sequence[dict[str, Any]], path: str | Path, *, title: str | None = None) -> Path:
    """Two panels, accuracy against N (log2) and against mean generated tokens per problem (log), one line per
    strategy with 95% error bars; greedy is a dashed reference line (and a point on the token panel). Drawn on a
    private Agg canvas, so no global matplotlib state (a notebook's backend) is touched."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    path = Path(path)
    fig = Figure(figsize=(12, 4.8), layout="constrained")
    FigureCanvasAgg(fig)
    by_n, by_tokens = fig.subplots(1, 2)
    graded = [r for r in rows if r["accuracy"] is not None]
    strategies = list(dict.fromkeys(label(r) for r in graded))
    colors = {s: f"C{i % 10}" for i, s in enumerate(strategies)}
    ns: set[int] = set()
    curves = [s for s in strategies if s != "greedy"]
    for strategy in strategies:
        rs = sorted((r for r in graded if label(r) == strategy), key=lambda r: r["n"])
        acc = [r["accuracy"] for r in rs]
        low = [a - r["accuracy_low"] for a, r in zip(acc, rs, strict=True)]
        high = [r["accuracy_high"] - a for a, r in zip(acc, rs, strict=True)]
        err = [low, high]
        style = {"color": colors[strategy], "capsize": 3, "label": strategy}
        if strategy == "greedy":
            by_n.axhline(acc[0], color=colors[strategy], linestyle="--", label="greedy")
            by_n.axhspan(rs[0]["accuracy_low"], rs[0]["accuracy_high"], color=colors[strategy], alpha=0.08)
        else:
            ns.update(r["n"] for r in rs)
            # lines at the same N are nudged apart a little, so their error bars do not hide each other
            dodge = 2 ** (0.04 * (curves.index(strategy) - (len(curves) - 1) / 2))
            by_n.errorbar([r["n"] * dodge for r in rs], acc, yerr=err, marker="o", **style)
        tok = [(r["generated_tokens"], a, lo, hi) for r, a, lo, hi in zip(rs, acc, err[0], err[1], strict=True)]
        tok = [t for t in tok if t[0] is not None and t[0] > 0]  # a log axis has no place for 0
        if tok:
            by_tokens.errorbar(
                [t[0] for t in tok],
                [t[1] for t in tok],
                yerr=[[t[2] for t in tok], [t[3] for t in tok]],
                marker="s" if strategy == "greedy" else "o",
                linestyle="none" if strategy == "greedy" else "-",
                **style,
            )
    _label_axes(by_n, by_tokens, ns)
    if title:
        fig.suptitle(title)
    if not strategies:
        by_n.text(0.5, 0.5, "no graded results", ha="center", va="center", transform=by_n.transAxes)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    return path


def _label_axes(by_n: Any, by_tokens: Any, ns: set[int]) -> None:
    """Scales, ticks, labels, limits and legends of the two panels of `plot`."""
    from matplotlib.ticker import LogFormatter

    by_n.set_xscale("log", base=2)
    if ns:
        by_n.set_xticks(sorted(ns), [str(n) for n in sorted(ns)])
    by_n.set(xlabel="N (samples / beams per problem)", ylabel="accuracy", title="Accuracy against N")
    by_tokens.set_xscale("log")
    by_tokens.xaxis.set_major_formatter(LogFormatter(labelOnlyBase=False))
    by_tokens.xaxis.set_minor_formatter(LogFormatter(labelOnlyBase=False, minor_thresholds=(1.5, 0.5)))
    by_tokens.set(
        xlabel="mean generated tokens per problem", ylabel="accuracy", title="Accuracy against generated tokens"
    )
    for ax in (by_n, by_tokens):
        ax.set_ylim(-0.02, 1.02)
        ax.grid(True, alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize="small")


def write(
    rows: Sequence[dict[str, Any]], output: str | Path, *, with_plot: bool = True, title: str | None = None
) -> None:
    """summary.json, summary.md and (with_plot) accuracy.png into `output`."""
    output = Path(output)
    if output.exists() and not output.is_dir():
        raise ValueError(f"{output} is a file: the output must be a folder")
    output.mkdir(parents=True, exist_ok=True)
    write_atomic(output / SUMMARY_JSON, json.dumps(list(rows), indent=1) + "\n")
    write_atomic(output / SUMMARY_MD, format_table(rows) + "\n")
    if with_plot:
        drawn = plot(rows, output / f".{PLOT}.{os.getpid()}.png", title=title)
        os.replace(drawn, output / PLOT)


def report(
    run_dir: str | Path | Sequence[str | Path],
    output: str | Path | None = None,
    *,
    settings: Sequence[tuple[str, int]] = (),
    need_plot: bool = True,
) -> list[dict[str, Any]]:
    """Summarize the run in `run_dir` (a `prmsearch search` output folder, or its results.jsonl) into `output`
    (default: the run folder); returns the rows. Several runs (a list: one per reward model, as the quickstart
    makes) go into one table; `output` is then required. The inputs are left untouched. `need_plot=False` skips the
    plot when matplotlib is not installed instead of failing."""
    dirs = [Path(run_dir)] if isinstance(run_dir, (str, Path)) else [Path(d) for d in run_dir]
    if not dirs or (len(dirs) > 1 and output is None):
        raise ValueError("give one run folder, or several with an output folder for their joint summary")
    records = joined_records(dirs)
    dirs = [d if d.is_dir() else d.parent for d in dirs]
    run_dir = dirs[0]
    rows = summarize(records, settings)
    if not rows:
        raise ValueError(f"{', '.join(map(str, dirs))} holds no results yet")
    with_plot = True
    if not need_plot:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            with_plot = False
    name = (run_dir if len(dirs) == 1 else Path(output)).resolve().name  # type: ignore[arg-type]
    title = f"{name}: accuracy against compute (95% Wilson intervals)"
    write(rows, run_dir if output is None else output, with_plot=with_plot, title=title)
    return rows


def result_files(run_dir: str | Path, *, required: bool = False) -> list[Path]:
    """The results files of a run: `run_dir` itself when it is a file, else the folder's results.jsonl and the
    parts of a run split over several processes (results.shard-I-of-K.jsonl), in name order. `required`: a folder
    with none is an error."""
    run_dir = Path(run_dir)
    if run_dir.is_file():
        return [run_dir]
    if not run_dir.is_dir():
        if required:
            raise FileNotFoundError(f"{run_dir} does not exist")
        return []
    files = [f for f in (run_dir / RESULTS, *sorted(run_dir.glob(RESULT_PARTS))) if f.is_file()]
    if required and not files:
        raise FileNotFoundError(f"{run_dir} has no {RESULTS}: is it the --output folder of `prmsearch search`?")
    return files
