"""Wall time of `prmsearch label --workers N` against one process, on the retrain's own labelling run.

    python benchmarks/label_workers.py [--problems 200] [--workers 1,2] [--keep DIR]

The first PROBLEMS of the problems `make retrain` labels (the bundled task's training split, seed 1), labelled with
`prmsearch/embedded/recipes/label.yaml` and the embedded policy exactly as the retrain runs it (`--seed 0`), once per
worker count, each in a fresh process, side by side in one run. The labels must not depend on the split: every run's
output and dropped file are compared byte for byte with the one-process run's (a difference fails the benchmark).
The goal (issue 31): 2 workers on 2 cores cut the retrain's 29 minutes of labelling about in half.
Writes benchmarks/results/label_workers.md and .json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
RECIPE = HERE.parent / "prmsearch" / "embedded" / "recipes" / "label.yaml"


def write_problems(path: Path, count: int) -> None:
    """The first `count` of the problems the retrain labels (the same draw, cut: `embedded.retrain.retrain`)."""
    from prmsearch.embedded.retrain import RetrainSpec
    from prmsearch.tasks.chains import generate, write_problems

    spec = RetrainSpec()
    write_problems(generate("train", spec.label_problems, seed=spec.seed + 1)[:count], str(path))


def label(problems: Path, out: Path, workers: int) -> float:
    """One `prmsearch label` run in a fresh process; its wall time in seconds."""
    cmd = [sys.executable, "-m", "prmsearch", "label", "--config", str(RECIPE), "--problems", str(problems)]
    cmd += ["--policy", "embedded:policy", "--seed", "0", "--output", str(out), "--quiet"]
    start = time.perf_counter()
    done = subprocess.run([*cmd, "--workers", str(workers)], capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"label --workers {workers} failed: {done.stderr.strip()[-2000:]}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--problems", type=int, default=200, help="problems to label (the retrain labels 2500)")
    parser.add_argument("--workers", default="1,2", help="worker counts, comma-separated; the first is the baseline")
    parser.add_argument("--keep", help="write the problems and labels here and keep them (default: a temporary folder)")
    args = parser.parse_args()
    counts = [int(w) for w in args.workers.split(",") if w]
    rows = []
    with tempfile.TemporaryDirectory(prefix="label_workers.") as tmp:
        root = Path(args.keep or tmp)
        root.mkdir(parents=True, exist_ok=True)
        problems = root / "problems.jsonl"
        write_problems(problems, args.problems)
        for workers in counts:
            out = root / f"labels_w{workers}.jsonl"
            for stale in (out, Path(f"{out}.dropped.jsonl"), Path(f"{out}.label.json")):
                stale.unlink(missing_ok=True)
            seconds = label(problems, out, workers)
            summary = json.loads(Path(f"{out}.label.json").read_text())
            rows.append({"workers": workers, "seconds": seconds, "traces": summary["traces"], "out": str(out)})
            print(f"workers {workers}: {seconds:.1f} s, {summary['traces']} traces kept", flush=True)
        base = Path(rows[0]["out"])
        for r in rows:
            r["same_bytes"] = all(
                Path(f"{r['out']}{tail}").read_bytes() == Path(f"{base}{tail}").read_bytes()
                for tail in ("", ".dropped.jsonl")
            )
            r["speedup"] = rows[0]["seconds"] / r["seconds"]
            r.pop("out")
    write_results(rows, args.problems)
    if not all(r["same_bytes"] for r in rows):
        raise SystemExit("the labels differ with the number of workers")


def write_results(rows: list[dict], problems: int) -> None:
    machine = f"{os.cpu_count()} cores, CPython {platform.python_version()}, load {os.getloadavg()[0]:.1f} at the end"
    lines = [
        "# `prmsearch label --workers N` against one process (the retrain's labelling run)",
        "",
        f"Machine: {machine}; the first {problems} of the retrain's label problems, recipe "
        "prmsearch/embedded/recipes/label.yaml, embedded policy, seed 0; one fresh process per run (start-up and "
        "model loading included).",
        "",
        "| workers | seconds | speed-up | traces kept | same bytes as 1 worker |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        same = "yes" if r["same_bytes"] else "NO"
        lines.append(f"| {r['workers']} | {r['seconds']:.1f} | {r['speedup']:.2f}x | {r['traces']} | {same} |")
    text = "\n".join(lines) + "\n"
    print(text)
    results = HERE / "results"
    results.mkdir(exist_ok=True)
    (results / "label_workers.md").write_text(text, encoding="utf-8")
    payload = {"machine": machine, "problems": problems, "recipe": str(RECIPE.relative_to(HERE.parent)), "runs": rows}
    (results / "label_workers.json").write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
