"""grade_many vs math-verify called directly in one process, on the same pairs: MATH-500 reference solutions
against their answers (../shared/data/math500_test.jsonl).

    python benchmarks/grade_speed.py [--data PATH] [--workers N]

Timings from one run. One-time process setup is timed apart and left out of both sides' ratios: importing
math-verify (direct) and starting the worker pool (grade_many; it imports math-verify in its supervisor and then
lives as long as the process). Caches are cold on both sides: the workers are fresh forks, and grade_many's own
verdict cache is emptied before each row.
- direct: `verify(parse(answer), parse(solution))` in this process, one pair after another (math-verify's own
  extraction; its SIGALRM timeouts on, as a user calling it from the main thread would have them);
- grade_many: what a user gets (exact in-process checks, then sympy in worker processes);
- grade_many fast=False: every pair through sympy in the workers, i.e. the speed of the parallel path alone.
Writes benchmarks/results/grade_speed.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from collections import Counter
from pathlib import Path

from prmsearch.verifiers import math as mv
from prmsearch.verifiers.workers import default_workers

HERE = Path(__file__).resolve().parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(HERE.parent.parent / "shared" / "data" / "math500_test.jsonl"))
    parser.add_argument("--workers", type=int, default=default_workers())
    args = parser.parse_args()
    rows = [json.loads(line) for line in open(args.data)]
    solutions, answers = [r["solution"] for r in rows], [r["answer"] for r in rows]

    start = time.perf_counter()
    from math_verify import parse, verify

    t_import = time.perf_counter() - start
    start = time.perf_counter()
    direct = [bool(verify(parse(f"${a}$"), parse(s))) for s, a in zip(solutions, answers, strict=True)]
    t_direct = time.perf_counter() - start

    timings = {}
    startups = []
    for name, fast in (("grade_many", True), ("grade_many fast=False", False)):
        mv.shutdown()
        mv.clear_cache()
        start = time.perf_counter()
        mv.start_workers(args.workers)
        startups.append(time.perf_counter() - start)
        start = time.perf_counter()
        grades = mv.grade_many(solutions, answers, workers=args.workers, progress=False, fast=fast)
        timings[name] = (time.perf_counter() - start, grades)
    mv.shutdown()

    lines = [
        f"# grade_many vs math-verify directly: {len(rows)} MATH-500 reference solutions",
        "",
        f"Machine: {os.cpu_count()} cores, {platform.python_implementation()} {platform.python_version()}; "
        f"grade_many with {args.workers} workers. Once per process, not in the table: importing math-verify "
        f"{t_import:.2f} s (direct); starting the worker pool {max(startups):.2f} s (grade_many).",
        "",
        "| method | correct | reasons | seconds | speed-up vs direct |",
        "|---|---|---|---|---|",
        f"| math-verify direct, 1 process | {sum(direct)}/{len(rows)} | | {t_direct:.2f} | 1.00x |",
    ]
    for name, (seconds, grades) in timings.items():
        reasons = ", ".join(f"{k} {v}" for k, v in Counter(g.reason for g in grades).most_common())
        correct = sum(g.correct for g in grades)
        lines.append(f"| {name} | {correct}/{len(rows)} | {reasons} | {seconds:.2f} | {t_direct / seconds:.2f}x |")
    slow = timings["grade_many fast=False"][0]
    lines += [
        "",
        f"With the one-time setup counted on both sides (a fresh process grading one batch): direct "
        f"{t_import + t_direct:.2f} s, grade_many fast=False {max(startups) + slow:.2f} s, "
        f"{(t_import + t_direct) / (max(startups) + slow):.2f}x.",
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    out = HERE / "results" / "grade_speed.md"
    out.parent.mkdir(exist_ok=True)
    out.write_text(text)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
