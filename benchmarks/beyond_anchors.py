"""Beyond the anchors (issue 33), on the quickstart's problems and models (the embedded policy, PRM and ORM, the
bundled chains task), every run an ordinary `prmsearch` command with `search/quickstart.yaml`'s settings:

    python benchmarks/beyond_anchors.py particles   # particle filtering / Gibbs beside beam and DVTS, N = 4, 16
    python benchmarks/beyond_anchors.py overopt     # best-of-N (ORM) and weighted best-of-N (PRM) up to N = 256
    python benchmarks/beyond_anchors.py route       # fit routing tables on the train split, follow them on the test
    python benchmarks/beyond_anchors.py all

Held-out problems are the quickstart's (the first 300 of the chains test set); the routing tables are fitted on the
first 300 of the train split. Each stage resumes (`--resume`) where a run folder exists, and writes its table to
`benchmarks/results/beyond_anchors/` (STAGE.md, STAGE.json) with the commands and wall seconds.
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / "benchmarks" / ".cache" / "beyond_anchors"
RESULTS = ROOT / "benchmarks" / "results" / "beyond_anchors"
CONFIG = str(ROOT / "search" / "quickstart.yaml")
BUDGETS = (165, 330, 660)  # mean tokens a problem the routing tables are fitted to: about N = 4, 8, 16 samples
WHOLE = "majority,best_of_n,weighted_best_of_n"  # what routing chooses among: the whole-sample strategies
TREES = "beam,dvts,particle_filter"  # and the tree searches
SAME_TOKENS = 1.02  # a single option at most 2% over the budget counts as spending it (beam@4: 165.2 tokens)
PROBES = ("best_of_n@4", "best_of_n@1")  # the difficulty estimate: the PRM's mean score of 4 samples, or of 1


def prmsearch(argv: list[str], log: list[dict[str, Any]]) -> None:
    """One prmsearch command as a user types it; its line and wall seconds go into `log`."""
    shown = "prmsearch " + shlex.join(argv)
    print(f"$ {shown}", flush=True)
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "prmsearch", *argv], cwd=ROOT)
    log.append({"command": shown, "seconds": round(time.perf_counter() - started, 1)})
    if done.returncode != 0:
        sys.exit(f"`{shown}` failed (exit {done.returncode}); run the stage again to resume")


def search(out: Path, log: list[dict[str, Any]], *flags: str) -> Path:
    argv = ["search", "--config", CONFIG, "--output", str(out), "--quiet", "--save-trees", *flags]
    if (out / "search_config.yaml").exists():
        argv.append("--resume")
    prmsearch(argv, log)
    return out


def summary(run: Path) -> list[dict[str, Any]]:
    return json.loads((run / "summary.json").read_text())


def save(stage: str, text: str, data: dict[str, Any]) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{stage}.md").write_text(text + "\n")
    (RESULTS / f"{stage}.json").write_text(json.dumps(data, indent=1) + "\n")
    print(text)


def table(rows: list[dict[str, Any]]) -> str:
    lines = ["| strategy | N | accuracy | 95% interval | mean generated tokens | mean scored tokens | wall s |",
             "|---|---:|---:|---|---:|---:|---:|"]  # fmt: skip
    for r in rows:
        lines.append(
            f"| {r['strategy']} | {r['n']} | {r['accuracy']:.3f} | [{r['accuracy_low']:.3f}, {r['accuracy_high']:.3f}]"
            f" | {r['generated_tokens']:g} | {r['scored_tokens']:g} | {r['seconds']:g} |"
        )
    return "\n".join(lines)


def particles(_: argparse.Namespace) -> None:
    """Particle filtering and particle Gibbs (2 passes) at N = 4 and 16 beside beam and DVTS, the same PRM and
    settings (agg min, as the quickstart); and particle filtering weighed by the last step (Puri et al.'s choice)."""
    log: list[dict[str, Any]] = []
    main = search(WORK / "particles", log, "--strategy", "beam,dvts,particle_filter,particle_gibbs", "--n", "4,16",
                  "--iterations", "2")  # fmt: skip
    last = search(WORK / "particles-last", log, "--strategy", "particle_filter", "--n", "4,16", "--agg", "last")
    rows = summary(main) + [dict(r, strategy="particle_filter (agg last)") for r in summary(last)]
    text = "## Particle filtering on the quickstart problems (300, embedded policy and PRM)\n\n" + table(rows)
    save("particles", text, {"rows": rows, "commands": log})


def overopt(_: argparse.Namespace) -> None:
    """Best-of-N with the ORM, then best-of-N and weighted best-of-N with the PRM over the very same samples, at
    N = 1 ... 256; `prmsearch report` draws each over-optimization curve."""
    log: list[dict[str, Any]] = []
    ns = "256,64,16,4,1"
    orm = search(WORK / "overopt-orm", log, "--scorer", "embedded:orm", "--strategy", "best_of_n", "--n", ns,
                 "--batch-problems", "50")  # fmt: skip
    prm = search(WORK / "overopt-prm", log, "--strategy", "best_of_n,weighted_best_of_n", "--n", ns,
                 "--samples-from", str(orm), "--batch-problems", "50")  # fmt: skip
    found = {}
    for name, run in (("orm", orm), ("prm", prm)):
        out = RESULTS / f"overopt-{name}"
        prmsearch(["report", str(run), "--output", str(out)], log)
        found[name] = json.loads((out / "overoptimization.json").read_text())
    text = "## Over-optimization on the quickstart problems, N = 1 ... 256\n"
    for name, data in found.items():
        text += f"\n### {name.upper()}\n\n" + "\n".join(f"- {line}" for line in data["findings"]) + "\n"
        text += "\n| strategy | N | KL | mean proxy score | accuracy | 95% interval |\n|---|---:|---:|---:|---:|---|\n"
        text += "".join(
            f"| {p['strategy']} | {p['n']} | {p['kl']:.3f} | {p['proxy']:.3f} | {p['accuracy']:.3f} | "
            f"[{p['accuracy_low']:.3f}, {p['accuracy_high']:.3f}] |\n"
            for p in data["points"]
        )
    save("overopt", text, {"curves": found, "commands": log})


def route(_: argparse.Namespace) -> None:
    """Every option on the train split and on the test problems (whole-sample strategies at N = 1 ... 16, tree
    searches at 4, 8, 16); a table fitted on the train split per budget and probe, followed on the test problems;
    routed against the best single option at the same budget (its mean tokens within 2% of the budget or of the
    routed run's, whichever is more; the tree searches at N = 8 fill the gap between 4 and 16)."""
    log: list[dict[str, Any]] = []
    runs = {}
    for split, folder in (("train", "route-train"), ("test", "route-test")):
        split_flags = ["--split", "train"] if split == "train" else []
        search(WORK / folder, log, *split_flags, "--strategy", WHOLE, "--n", "1,2,4,8,16")
        runs[split] = search(WORK / folder, log, *split_flags, "--strategy", TREES, "--n", "4,8,16")
    singles = [r for r in summary(runs["test"]) if r["accuracy"] is not None]
    rows = []
    for probe in PROBES:
        for budget in BUDGETS:
            name = f"{budget}" if probe == "best_of_n@4" else f"{budget}-{probe.replace('@', '')}"
            path = WORK / f"route-{name}.json"
            prmsearch(["route", "fit", "--runs", str(runs["train"]), "--budget", str(budget), "--probe", probe,
                       "--output", str(path)], log)  # fmt: skip
            run = search(WORK / f"routed-{name}", log, "--strategy", "routed", "--route-table", str(path))
            (got,) = summary(run)
            limit = SAME_TOKENS * max(budget, got["generated_tokens"])
            within = [r for r in singles if r["generated_tokens"] <= limit]
            best = max(within, key=lambda r: r["accuracy"]) if within else None
            fitted = json.loads(path.read_text())
            rows.append({"probe": probe, "budget": budget, "routed": got, "best_single": best,
                         "choices": fitted["choices"], "edges": fitted["edges"], "fit": fitted["fit"]})  # fmt: skip
    text = "## Routing on the quickstart test problems (tables fitted on 300 train-split problems)\n\n"
    text += "| probe | budget | train fit | routed accuracy | routed tokens | best single at that budget |"
    text += " its accuracy | gain |\n|---|---:|---:|---:|---:|---|---:|---:|\n"
    for r in rows:
        got, best = r["routed"], r["best_single"]
        name = "-" if best is None else f"{best['strategy']}@{best['n']} ({best['generated_tokens']:g} tokens)"
        acc = "-" if best is None else f"{best['accuracy']:.3f}"
        gain = "-" if best is None else f"{100 * (got['accuracy'] - best['accuracy']):+.1f}"
        text += (
            f"| {r['probe']} | {r['budget']} | {r['fit']['accuracy']:.3f} | {got['accuracy']:.3f} |"
            f" {got['generated_tokens']:g} | {name} | {acc} | {gain} |\n"
        )
    text += "\n### The test problems, every option\n\n" + table(singles)
    save("route", text, {"rows": rows, "singles": singles, "commands": log})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("stage", choices=["particles", "overopt", "route", "all"])
    args = parser.parse_args()
    stages = {"particles": particles, "overopt": overopt, "route": route}
    for name, run in stages.items():
        if args.stage in (name, "all"):
            run(args)


if __name__ == "__main__":
    main()
