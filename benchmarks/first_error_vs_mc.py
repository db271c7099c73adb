"""First-error search (OmegaPRM) against exhaustive Monte Carlo rollouts on the same traces (issue 12, item 3).

Both runs of `prmsearch label` sample the same solutions (same seed) from the policy on the same problems and draw
the same rollouts at every step they probe (seeds from trace, step and rollout index), so the comparison is like for
like. Settings are the embedded label recipe's (samples at temperature 1.0, rollouts at 0.3, K = 8), without its
consensus filter, so every trace is compared. Reported: agreement of the hard step labels (all steps, and steps up
to each trace's first error), the traces whose first error the two place alike, the rollouts each used, and, since
the bundled task knows the true label of every step (`tasks.chains.first_error`), how often each method's first
error is the true one.

    python benchmarks/first_error_vs_mc.py [--policy embedded:policy] [--problems 300] [--samples 2] [--k 8]

Writes benchmarks/results/first_error_vs_mc.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from prmsearch.cli import main as prmsearch
from prmsearch.tasks.chains import first_error, generate, write_problems

RESULTS = Path(__file__).parent / "results"


def label(method: str, problems: Path, out: Path, args: argparse.Namespace) -> tuple[list[dict], dict, float]:
    started = time.perf_counter()
    code = prmsearch(
        ["label", "--sample", str(args.samples), "--problems", str(problems), "--policy", args.policy]
        + ["--method", method, "--k", str(args.k), "--temperature", str(args.temperature), "--max-tokens", "80"]
        + ["--sample-temperature", str(args.sample_temperature)]
        + ["--prompt-template", "plain", "--batch-traces", "256", "--seed", "3", "--output", str(out), "--quiet"]
    )
    if code:
        raise SystemExit(code)
    records = [json.loads(line) for line in out.read_text().splitlines()]
    summary = json.loads(Path(f"{out}.label.json").read_text())
    return records, summary, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--policy", default="embedded:policy")
    parser.add_argument("--problems", type=int, default=300)
    parser.add_argument("--samples", type=int, default=2)
    parser.add_argument("--k", type=int, default=8)
    parser.add_argument("--temperature", type=float, default=0.3, help="rollouts")
    parser.add_argument("--sample-temperature", type=float, default=1.0, help="the sampled traces")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        problems = Path(tmp) / "problems.jsonl"
        test = generate("test", args.problems)
        write_problems(test, str(problems))
        mc, mc_summary, mc_seconds = label("mc", problems, Path(tmp) / "mc.jsonl", args)
        fe, fe_summary, fe_seconds = label("first-error", problems, Path(tmp) / "fe.jsonl", args)

    by_id = {r["id"]: r for r in mc}
    truth = {p.prompt: p for p in test}
    same = upto = upto_same = traces = same_first = mc_true = fe_true = 0
    total = 0
    for r in fe:
        m = by_id[r["id"]]
        assert m["completions"] == r["completions"], "the two runs sampled different traces"
        traces += 1
        a, b = [bool(x) for x in m["labels"]], [bool(x) for x in r["labels"]]
        total += len(a)
        same += sum(x == y for x, y in zip(a, b, strict=True))
        first = r["first_error"] if r["first_error"] is not None else len(a) - 1
        upto += first + 1
        upto_same += sum(x == y for x, y in zip(a[: first + 1], b[: first + 1], strict=True))
        mc_first = next((i for i, x in enumerate(a) if not x), None)
        same_first += mc_first == r["first_error"]
        true_first = first_error(truth[r["prompt"]], r["completions"])
        true_first = None if true_first < 0 else true_first
        mc_true += mc_first == true_first
        fe_true += r["first_error"] == true_first
    result = {
        "policy": args.policy,
        "traces": traces,
        "wrong_traces": sum(not r["outcome"] for r in fe),
        "k": args.k,
        "steps": total,
        "label_agreement": round(same / total, 4),
        "label_agreement_up_to_first_error": round(upto_same / upto, 4),
        "same_first_error": round(same_first / traces, 4),
        "mc_first_error_is_true": round(mc_true / traces, 4),
        "first_error_search_first_error_is_true": round(fe_true / traces, 4),
        "mc_rollouts": mc_summary["rollouts"],
        "first_error_rollouts": fe_summary["rollouts"],
        "rollout_ratio": round(fe_summary["rollouts"] / mc_summary["rollouts"], 4),
        "mc_seconds": round(mc_seconds, 1),
        "first_error_seconds": round(fe_seconds, 1),
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "first_error_vs_mc.json").write_text(json.dumps(result, indent=1) + "\n")
    table = "\n".join(["| metric | value |", "|---|---|"] + [f"| {k} | {v} |" for k, v in result.items()])
    (RESULTS / "first_error_vs_mc.md").write_text(f"# {__doc__.splitlines()[0]}\n\n{table}\n")
    print(table)


if __name__ == "__main__":
    main()
