"""grade_many vs math-verify called directly in one process, on the same pairs: MATH-500 reference solutions
against their answers (../shared/data/math500_test.jsonl).

    python benchmarks/grade_speed.py [--data PATH] [--workers N]

Timings from one run. One-time process setup is timed apart and left out of both sides' ratios: importing
math-verify (direct) and starting the worker pool (grade_many; it imports math-verify in its supervisor and then
lives as long as the process). Caches are cold on both sides: the workers are fresh forks, and grade_many's own
caches are emptied before each row.
- direct: `verify(parse(answer), parse(solution))` in this process, one pair after another (math-verify's own
  extraction; its SIGALRM timeouts on, as a user calling it from the main thread would have them);
- grade_many: what a user gets (answers extracted and compared in process where that is sure to give
  math-verify's result, the rest through sympy in worker processes; the note says how many went there);
- grade_many fast=False: every comparison through sympy in the workers (extraction as above).
Writes benchmarks/results/grade_speed.md and .json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from collections import Counter
from pathlib import Path

from prmsearch.verifiers import answers as extraction
from prmsearch.verifiers import math as mv
from prmsearch.verifiers.workers import default_workers

HERE = Path(__file__).resolve().parent


def measure(solutions: list[str], golds: list[str], workers: int) -> dict:
    """Both sides on the same pairs, one after the other; setup times apart."""
    start = time.perf_counter()
    from math_verify import parse, verify

    import_s = time.perf_counter() - start
    start = time.perf_counter()
    direct = [bool(verify(parse(f"${a}$"), parse(s))) for s, a in zip(solutions, golds, strict=True)]
    direct_s = time.perf_counter() - start

    rows, startups = [], []
    for name, fast in (("grade_many", True), ("grade_many fast=False", False)):
        mv.shutdown()
        mv.clear_cache()
        start = time.perf_counter()
        mv.start_workers(workers)
        startups.append(time.perf_counter() - start)
        start = time.perf_counter()
        grades = mv.grade_many(solutions, golds, workers=workers, progress=False, fast=fast)
        seconds = time.perf_counter() - start
        reasons = dict(Counter(g.reason for g in grades).most_common())
        rows.append({"name": name, "seconds": seconds, "correct": sum(g.correct for g in grades), "reasons": reasons})
    mv.shutdown()
    first = rows[0]
    return {
        "pairs": len(solutions),
        "workers": workers,
        "direct_s": direct_s,
        "direct_correct": sum(direct),
        "grade_many_s": first["seconds"],
        "speedup": direct_s / first["seconds"],
        "rows": rows,
        "import_s": import_s,
        "startup_s": max(startups),
        "extractions_in_workers": sum(not extraction.in_process(s)[0] for s in solutions),
        "comparisons_in_workers": sum(n for r, n in first["reasons"].items() if r not in ("identical", "no answer")),
    }


def report(d: dict) -> str:
    n, direct_s = d["pairs"], d["direct_s"]
    lines = [
        f"# grade_many vs math-verify directly: {n} MATH-500 reference solutions",
        "",
        f"Machine: {os.cpu_count()} cores, {platform.python_implementation()} {platform.python_version()}; "
        f"grade_many with {d['workers']} workers. Once per process, not in the table: importing math-verify "
        f"{d['import_s']:.2f} s (direct); starting the worker pool {d['startup_s']:.2f} s (grade_many).",
        "",
        "| method | correct | reasons | seconds | speed-up vs direct |",
        "|---|---|---|---|---|",
        f"| math-verify direct, 1 process | {d['direct_correct']}/{n} | | {direct_s:.2f} | 1.00x |",
    ]
    for r in d["rows"]:
        reasons = ", ".join(f"{k} {v}" for k, v in r["reasons"].items())
        lines.append(f"| {r['name']} | {r['correct']}/{n} | {reasons} | {r['seconds']:.2f} | "
                     f"{direct_s / r['seconds']:.2f}x |")  # fmt: skip
    slow = d["rows"][1]["seconds"]
    setup_direct, setup_ours = d["import_s"] + direct_s, d["startup_s"] + slow
    return "\n".join([
        *lines,
        "",
        f"grade_many sent {d['extractions_in_workers']} of {n} extractions and {d['comparisons_in_workers']} "
        "comparisons to the workers (the rest were decided in process, each rule checked against the worker path "
        "by tests/test_grading_paths.py).",
        "",
        f"With the one-time setup counted on both sides (a fresh process grading one batch): direct "
        f"{setup_direct:.2f} s, grade_many fast=False {setup_ours:.2f} s, {setup_direct / setup_ours:.2f}x.",
    ]) + "\n"  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(HERE.parent.parent / "shared" / "data" / "math500_test.jsonl"))
    parser.add_argument("--workers", type=int, default=default_workers())
    args = parser.parse_args()
    rows = [json.loads(line) for line in open(args.data)]
    result = measure([r["solution"] for r in rows], [r["answer"] for r in rows], args.workers)
    text = report(result)
    print(text)
    out = HERE / "results" / "grade_speed.md"
    out.parent.mkdir(exist_ok=True)
    out.write_text(text)
    out.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out} and {out.with_suffix('.json').name}")


if __name__ == "__main__":
    main()
