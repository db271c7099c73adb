"""Search speed on CPU: incremental PRM scoring against full re-scoring, and batched beam search against one problem
at a time. Both sides of each comparison run in this one process, on the same models, seeds and problems.

    python benchmarks/search_speed.py [--problems 4] [--batch-problems 32] [--repeats 3]

1. Scoring: step-level beam search with N=16 beams of width 4 over 10 steps on GSM8K questions. The PRM is a
   random Qwen2 (hidden 256, 4 layers) and the policy the tiny random Phi of `prmsearch.models.tiny`, biased to
   write ~12-token steps and long solutions, so searches go at least 8 steps deep. The incremental scorer feeds
   each step once on top of its prefix's KV cache; `full_rescore` feeds prompt + all steps at every depth (what the
   anchors do). Both must build the same trees with the same scores (to 1e-4); reported: PRM-scored tokens, scorer
   wall time, whole-search wall time, and the ratios.
2. Batching: beam search (N=8, width 4, 8 steps) over 32 GSM8K questions in one batched run against 32 runs of one
   problem each: the trees must be the same; reported: problems per second and the ratio.

Prints the tables and writes benchmarks/results/search_speed.{md,json}.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
GSM8K = ROOT.parent / "shared" / "data" / "gsm8k_test.jsonl"
RESULTS = ROOT / "benchmarks" / "results"


def gsm8k(count: int):
    from prmsearch.records import Problem
    from prmsearch.tasks import load_problems

    if GSM8K.exists():
        return load_problems(str(GSM8K), limit=count)
    return [Problem(str(i), f"A shop sells {i + 3} pens a day for {i + 5} days. How many pens?", str((i + 3) * (i + 5)))
            for i in range(count)]  # fmt: skip


def models():
    import torch

    from prmsearch.models.tiny import tiny_policy, tiny_prm
    from prmsearch.models.tokenizers import load_tokenizer
    from prmsearch.search import HFGenerator

    torch.set_num_threads(max(1, torch.get_num_threads()))
    tok = load_tokenizer("smollm2")
    policy = HFGenerator(tiny_policy(tok, tokens_per_step=12, steps_per_solution=40), tok, batch_size=256)
    prm = tiny_prm(tok, hidden_size=256, intermediate_size=1024, num_hidden_layers=4, num_attention_heads=4)
    return policy, prm


def view(states):
    return [[(n.path, n.text, n.finish, n.selected) for n in st.tree.nodes] for st in states]


def scores(states):
    return [n.score for st in states for n in st.tree.nodes if n.score is not None]


def run(policy, prm, problems, full_rescore: bool, **params):
    from prmsearch.search import SearchParams, StepScorer, run_search

    scorer = StepScorer(prm, full_rescore=full_rescore)
    started = time.perf_counter()
    search_params = SearchParams(**{"budget" if k == "n" else k: v for k, v in params.items()})
    states = run_search(problems, policy, scorer, "beam", search_params, prompt_template="plain")
    return states, scorer.stats, time.perf_counter() - started


def scoring(policy, prm, count: int, repeats: int) -> dict:
    problems = gsm8k(count)
    params = {"n": 16, "width": 4, "max_steps": 10, "max_step_tokens": 32, "max_tokens": 64, "seed": 0}
    sides: dict[str, list] = {"incremental": [], "full_rescore": []}
    for name in sides:  # warm-up (first forward passes, allocator, thread pool), untimed
        run(policy, prm, problems[:1], name == "full_rescore", **{**params, "max_steps": 2})
    for _ in range(repeats):
        for name in sides:  # alternate, so drift in the machine's speed hits both sides alike
            sides[name].append(run(policy, prm, problems, name == "full_rescore", **params))
    (inc, *_), (full, *_) = sides["incremental"][0], sides["full_rescore"][0]
    assert view(inc) == view(full), "incremental and full re-scoring built different trees"
    diff = max(abs(a - b) for a, b in zip(scores(inc), scores(full), strict=True))
    depth = max(n.depth for st in inc for n in st.tree.nodes if n.selected)
    row = {"problems": count, **params, "max_depth_reached": depth, "max_score_diff": diff}
    for name, runs in sides.items():
        row[name] = {
            "scored_tokens": runs[0][1]["scored_tokens"],
            "scorer_seconds": statistics.median(r[1]["seconds"] for r in runs),
            "search_seconds": statistics.median(r[2] for r in runs),
        }
    row["token_ratio"] = row["full_rescore"]["scored_tokens"] / row["incremental"]["scored_tokens"]
    row["scorer_speedup"] = row["full_rescore"]["scorer_seconds"] / row["incremental"]["scorer_seconds"]
    row["search_speedup"] = row["full_rescore"]["search_seconds"] / row["incremental"]["search_seconds"]
    return row


def batching(policy, prm, count: int, repeats: int) -> dict:
    problems = gsm8k(count)
    params = {"n": 8, "width": 4, "max_steps": 8, "max_step_tokens": 32, "max_tokens": 64, "seed": 1}
    batched, alone = [], []
    run(policy, prm, problems[:2], False, **{**params, "max_steps": 2})  # warm-up, untimed
    for _ in range(repeats):
        batched.append(run(policy, prm, problems, False, **params))
        started = time.perf_counter()
        states = [run(policy, prm, [p], False, **params)[0][0] for p in problems]
        alone.append((states, None, time.perf_counter() - started))
    same_trees = view(batched[0][0]) == view(alone[0][0])
    diff = max(abs(a - b) for a, b in zip(scores(batched[0][0]), scores(alone[0][0]), strict=True))
    same_answers = [st.chosen and st.chosen.id for st in batched[0][0]] == [
        st.chosen and st.chosen.id for st in alone[0][0]
    ]
    t_batched = statistics.median(r[2] for r in batched)
    t_alone = statistics.median(r[2] for r in alone)
    return {
        "problems": count,
        **params,
        "same_trees": same_trees,
        "same_answers": same_answers,
        "max_score_diff": diff,
        "policy_batch_size": policy.batch_size,
        "batched_runs_seconds": [r[2] for r in batched],
        "one_at_a_time_runs_seconds": [r[2] for r in alone],
        "batched_seconds": t_batched,
        "one_at_a_time_seconds": t_alone,
        "batched_problems_per_s": count / t_batched,
        "one_at_a_time_problems_per_s": count / t_alone,
        "throughput_ratio": t_alone / t_batched,
    }


def table(s: dict, b: dict) -> str:
    inc, full = s["incremental"], s["full_rescore"]
    return "\n".join(
        [
            f"### Incremental vs full re-scoring: beam N={s['n']}, width {s['width']}, {s['max_steps']} steps "
            f"(deepest kept node: depth {s['max_depth_reached']}), {s['problems']} GSM8K problems",
            "",
            "| scorer | PRM-scored tokens | scorer s | whole search s |",
            "|---|---|---|---|",
            f"| full re-scoring | {full['scored_tokens']} | {full['scorer_seconds']:.2f} | "
            f"{full['search_seconds']:.2f} |",
            f"| incremental (KV cache) | {inc['scored_tokens']} | {inc['scorer_seconds']:.2f} | "
            f"{inc['search_seconds']:.2f} |",
            f"| **ratio** | **{s['token_ratio']:.2f}x fewer** | **{s['scorer_speedup']:.2f}x faster** | "
            f"**{s['search_speedup']:.2f}x faster** |",
            "",
            f"Same trees on both sides; largest score difference {s['max_score_diff']:.1e}.",
            "",
            f"### Batched vs one problem at a time: beam N={b['n']}, width {b['width']}, {b['max_steps']} steps, "
            f"{b['problems']} GSM8K problems (policy batch size {b['policy_batch_size']}; median of "
            f"{len(b['batched_runs_seconds'])} alternating runs)",
            "",
            "| run | wall s | problems/s |",
            "|---|---|---|",
            f"| one at a time | {b['one_at_a_time_seconds']:.2f} | {b['one_at_a_time_problems_per_s']:.2f} |",
            f"| batched | {b['batched_seconds']:.2f} | {b['batched_problems_per_s']:.2f} |",
            f"| **ratio** | | **{b['throughput_ratio']:.2f}x** |",
            "",
            f"Same trees: {b['same_trees']}; same answers: {b['same_answers']}; largest score difference "
            f"{b['max_score_diff']:.1e}.",
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--problems", type=int, default=4, help="problems in the scoring comparison")
    parser.add_argument("--batch-problems", type=int, default=32, help="problems in the batching comparison")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--only", choices=("scoring", "batching"), help="run one comparison; keep the other's result")
    args = parser.parse_args()
    policy, prm = models()
    before = json.loads((RESULTS / "search_speed.json").read_text()) if args.only else {}
    s = before["scoring"] if args.only == "batching" else scoring(policy, prm, args.problems, args.repeats)
    b = before["batching"] if args.only == "scoring" else batching(policy, prm, args.batch_problems, args.repeats)
    text = table(s, b)
    print(text)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "search_speed.md").write_text(text + "\n")
    (RESULTS / "search_speed.json").write_text(json.dumps({"scoring": s, "batching": b}, indent=1) + "\n")


if __name__ == "__main__":
    main()
