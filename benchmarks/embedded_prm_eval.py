"""The embedded PRM on held-out labelled traces of the bundled task (issue 12, item 4).

The policy samples solutions to test-split problems (never seen by the PRM's labels, which come from training
problems); every step gets its TRUE label from `tasks.chains.step_correct` (the task knows every intermediate
value), and the PRM scores every step. Reported: step-level precision / recall / F1 of the error class and AUROC,
over all steps and over the steps up to each trace's first error (what a first-error PRM is trained to judge: a
later step is wrong by inheritance, though it may compute right from a wrong value); ProcessBench-style F1 (exact
first-error index on wrong solutions, "no error" on right ones, their harmonic mean); and what search needs most:
whether the PRM ranks a right solution above a wrong one *of the same problem* (within-problem AUROC of the min
step score, over every right/wrong pair of a problem's samples). A PRM can score well across problems (easy
problems high, hard ones low) and still not tell its candidates apart.

    python benchmarks/embedded_prm_eval.py [--prm embedded:prm] [--policy embedded:policy] [--problems 500]

Writes benchmarks/results/embedded_prm_eval.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from prmsearch.models.reward_model import RewardModel
from prmsearch.search.generators import HFGenerator
from prmsearch.tasks.chains import SEPARATOR, generate, step_correct
from prmsearch.train.metrics import auroc, first_error, processbench_f1, step_metrics

RESULTS = Path(__file__).parent / "results"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--prm", default="embedded:prm")
    parser.add_argument("--policy", default="embedded:policy")
    parser.add_argument("--problems", type=int, default=500)
    parser.add_argument("--samples", type=int, default=4, help="solutions sampled per problem")
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--name", default="embedded_prm_eval")
    args = parser.parse_args()

    started = time.perf_counter()
    problems = generate("test", args.problems)
    policy = HFGenerator.from_pretrained(args.policy, batch_size=256)
    outs = policy.generate(
        [p.prompt + SEPARATOR for p in problems], n=args.samples, max_tokens=128, temperature=args.temperature, seed=7
    )
    traces = []
    for p, completions in zip(problems, outs, strict=True):
        for c in completions:
            steps = [s.strip() for s in c.text.split(SEPARATOR) if s.strip()]
            if c.finish_reason == "eos" and steps:
                traces.append((p, steps, step_correct(p, steps)))
    prm = RewardModel.from_pretrained(args.prm)
    scores = prm.score_steps_batch([p.prompt for p, _, _ in traces], [s for _, s, _ in traces], batch_size=64)
    probs = torch.tensor([x for s in scores for x in s])
    labels = torch.tensor([float(y) for _, _, ls in traces for y in ls])
    steps = step_metrics(probs, labels)
    judged = torch.tensor(
        [i <= (ls.index(False) if False in ls else len(ls)) for _, _, ls in traces for i in range(len(ls))]
    )
    first = step_metrics(probs[judged], labels[judged])
    predicted = [first_error(s) for s in scores]
    gold = [ls.index(False) if False in ls else -1 for _, _, ls in traces]
    pb = processbench_f1(predicted, gold)
    by_problem: dict[str, tuple[list[float], list[float]]] = {}  # problem id -> (right, wrong) min step scores
    for (p, _, these), s in zip(traces, scores, strict=True):
        by_problem.setdefault(p.id, ([], []))[0 if all(these) else 1].append(min(s))
    pairs = wins = 0
    for right, wrong in by_problem.values():
        for r in right:
            for w in wrong:
                pairs += 1
                wins += (r > w) + 0.5 * (r == w)
    result = {
        "prm": args.prm,
        "policy": args.policy,
        "problems": len(problems),
        "traces": len(traces),
        "wrong_traces": sum(g >= 0 for g in gold),
        "steps": len(labels),
        "wrong_steps": int((labels == 0).sum()),
        "step_error_precision": steps["error_precision"],
        "step_error_recall": steps["error_recall"],
        "step_error_f1": steps["error_f1"],
        "step_accuracy": steps["step_accuracy"],
        "auroc": auroc(probs, labels),
        "steps_to_first_error": int(judged.sum()),
        "to_first_error_error_precision": first["error_precision"],
        "to_first_error_error_recall": first["error_recall"],
        "to_first_error_error_f1": first["error_f1"],
        "to_first_error_step_accuracy": first["step_accuracy"],
        "to_first_error_auroc": auroc(probs[judged], labels[judged]),
        "within_problem_pairs": pairs,
        "within_problem_auroc": round(wins / pairs, 4) if pairs else None,
        "processbench_error_accuracy": pb["error_accuracy"],
        "processbench_correct_accuracy": pb["correct_accuracy"],
        "processbench_f1": pb["processbench_f1"],
        "seconds": round(time.perf_counter() - started, 1),
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{args.name}.json").write_text(json.dumps(result, indent=1) + "\n")
    table = "\n".join(
        ["| metric | value |", "|---|---|"]
        + [f"| {k} | {v:.4f} |" if isinstance(v, float) else f"| {k} | {v} |" for k, v in result.items()]
    )
    (RESULTS / f"{args.name}.md").write_text(f"# {__doc__.splitlines()[0]}\n\n{table}\n")
    print(table)


if __name__ == "__main__":
    main()
