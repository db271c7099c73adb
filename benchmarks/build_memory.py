"""Peak memory and time of `prmsearch build prm` on Math-Shepherd-format data of growing size.

    python benchmarks/build_memory.py [--sizes 5000,40000,200000] [--tokenizer smollm2] [--keep DIR] [--before JSON]

For each size, synthetic Math-Shepherd rows (a ~250-character question, 3-7 steps of ~200 characters, each ending
in the "ки" tag, with "+"/"-" in `label`) are written to a temporary JSONL file and built by
`prmsearch build prm --config data_builders/math_shepherd.yaml` in a fresh process; its peak resident memory is
the kernel's own count for that child (`wait4`'s ru_maxrss), its time the wall clock around it. Memory is flat in
the dataset size when the examples stream to disk instead of piling up as Python objects; the goal (issue 31) is
at most 1 GB at 5k, 40k and 200k rows, and time linear in rows (µs per row about constant).
Writes benchmarks/results/build_memory.md and .json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
RECIPE = HERE.parent / "data_builders" / "math_shepherd.yaml"
GOAL_GB = 1.0
WORDS = (
    "the total number of apples each friend gets after sharing equally so we divide by and then add "
    "remaining cost per hour she earns every week which means that his sister has twice as many dollars "
    "left over from the original price minus discount gives us"
).split()


def sentence(rng: random.Random, chars: int) -> str:
    """Words and arithmetic of about `chars` characters: text a BPE tokenizer splits like real solutions."""
    out: list[str] = []
    while sum(len(w) + 1 for w in out) < chars:
        if rng.random() < 0.1:
            a, b = rng.randint(2, 99), rng.randint(2, 9)
            out.append(f"{a} {rng.choice('+-*/')} {b} = {rng.randint(1, 999)}")
        else:
            out.append(rng.choice(WORDS))
    return " ".join(out)


def shepherd_row(rng: random.Random) -> dict[str, str]:
    """One row as peiyi9979/Math-Shepherd has it: `input` tags each step with "ки", `label` marks it + or -."""
    question = sentence(rng, 250).capitalize() + "?"
    steps = [f"Step {i}: {sentence(rng, 200)}." for i in range(1, rng.randint(3, 7) + 1)]
    marks = ["+" if rng.random() < 0.7 else "-" for _ in steps]
    tagged = "\n".join(f"{s} ки" for s in steps)
    marked = "\n".join(f"{s} {m}" for s, m in zip(steps, marks, strict=True))
    return {"input": f"{question} {tagged}", "label": f"{question} {marked}", "task": "GSM8K"}


def write_rows(path: Path, n: int, seed: int = 0) -> None:
    rng = random.Random(seed)
    with open(path, "w", encoding="utf-8") as f:
        for _ in range(n):
            f.write(json.dumps(shepherd_row(rng), ensure_ascii=False) + "\n")


def measure(data: Path, out: Path, tokenizer: str) -> dict[str, float]:
    """Build in a child process; its peak RSS (GB) comes from the kernel when it is reaped."""
    cmd = [sys.executable, "-m", "prmsearch", "build", "prm", "--config", str(RECIPE), "--input", str(data)]
    cmd += ["--output", str(out), "--tokenizer", tokenizer, "--quiet"]
    start = time.perf_counter()
    child = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(child.pid, 0)
    seconds = time.perf_counter() - start
    child.returncode = os.waitstatus_to_exitcode(status)
    stdout, stderr = child.stdout.read().decode(), child.stderr.read().decode()  # type: ignore[union-attr]
    if child.returncode != 0:
        raise SystemExit(f"build failed ({child.returncode}): {stderr.strip()[-2000:]}")
    summary = json.loads(Path(f"{out}.build.json").read_text())
    return {"peak_gb": usage.ru_maxrss / 2**20, "seconds": seconds, "examples": summary["examples"], "out": stdout}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="5000,40000,200000", help="rows per run, comma-separated")
    parser.add_argument("--tokenizer", default="smollm2", help="a tokenizer available offline")
    parser.add_argument("--keep", help="write the data and outputs here and keep them (default: a temporary folder)")
    parser.add_argument("--before", help="a build_memory.json of an earlier run (older code) to show side by side")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",") if s]
    rows = []
    with tempfile.TemporaryDirectory(prefix="build_memory.") as tmp:
        root = Path(args.keep or tmp)
        root.mkdir(parents=True, exist_ok=True)
        for n in sizes:
            data, out = root / f"shepherd_{n}.jsonl", root / f"prm_{n}.jsonl"
            write_rows(data, n)
            result = measure(data, out, args.tokenizer)
            result.pop("out")
            rows.append({"rows": n, **result, "us_per_row": result["seconds"] / n * 1e6})
            print(f"{n:>8} rows  {result['peak_gb']:.2f} GB  {result['seconds']:.1f} s", flush=True)
            if not args.keep:
                data.unlink()
    before = json.loads(Path(args.before).read_text()) if args.before else {}
    machine = f"{os.cpu_count()} cores, CPython {platform.python_version()}, load {os.getloadavg()[0]:.1f} at the end"
    write_results(rows, args.tokenizer, machine, before)


def code_version() -> str:
    """The commit measured, "+changes" when the working tree differs from it."""
    git = ["git", "-C", str(HERE.parent)]
    head = subprocess.run([*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run([*git, "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True)
    return (head or "unknown") + ("+changes" if dirty.stdout.strip() else "")


def write_results(rows: list[dict], tokenizer: str, machine: str, before: dict) -> None:
    """The table: peak memory and time per size; the time per row added between sizes (start-up left out) shows
    whether time is linear; an earlier run's figures (`before`, its JSON) beside them where it measured that size."""
    earlier = {r["rows"]: r for r in before.get("runs", [])}
    code = code_version()
    lines = [
        "# `prmsearch build prm` peak memory and time by dataset size (Math-Shepherd format)",
        "",
        f"Machine: {machine}; tokenizer {tokenizer}; recipe data_builders/math_shepherd.yaml; one fresh process per "
        f"size, peak RSS from the kernel (wait4 ru_maxrss). Goal: at most {GOAL_GB:.0f} GB at every size, time linear.",
        f"Code: {code}."
        + (f" Before: code {before.get('code', '?')} on {before.get('machine', '?')}." if before else ""),
        "",
        "| rows | examples | peak GB | seconds | µs per row | µs per added row | within goal | before: peak GB, s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for i, r in enumerate(rows):
        added = (r["seconds"] - rows[i - 1]["seconds"]) / (r["rows"] - rows[i - 1]["rows"]) * 1e6 if i else None
        old = earlier.get(r["rows"])
        cells = (
            r["rows"],
            r["examples"],
            f"{r['peak_gb']:.2f}",
            f"{r['seconds']:.1f}",
            f"{r['us_per_row']:.0f}",
            f"{added:.0f}" if added is not None else "",
            "yes" if r["peak_gb"] <= GOAL_GB else "no",
            f"{old['peak_gb']:.2f}, {old['seconds']:.1f}" if old else "",
        )
        lines.append("| " + " | ".join(map(str, cells)) + " |")
    if len(rows) > 1:
        first, last = rows[0], rows[-1]
        lines += [
            "",
            f"{last['rows'] / first['rows']:.0f}x the rows: peak memory x{last['peak_gb'] / first['peak_gb']:.2f}.",
        ]
    text = "\n".join(lines) + "\n"
    print(text)
    results = HERE / "results"
    results.mkdir(exist_ok=True)
    (results / "build_memory.md").write_text(text, encoding="utf-8")
    payload = {"machine": machine, "code": code, "tokenizer": tokenizer, "goal_gb": GOAL_GB, "runs": rows}
    payload["before"] = before
    (results / "build_memory.json").write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
