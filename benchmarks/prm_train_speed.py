"""PRM training throughput: prmsearch (packed rows, varlen attention) against trl 1.13.0's
`trl.experimental.prm.PRMTrainer` (padded batches), same tiny model, same data, same hyper-parameters, side by side.

    make .venv-trl113/.installed   # the side venv (make bench makes it too)
    python benchmarks/prm_train_speed.py --trl-python .venv-trl113/bin/python

The TRL side runs in its own venv (trl 1.13.0 is the last release with PRMTrainer) through `trl_prm_side.py`.
Both sides train one epoch on the first N GSM8K solutions of `gsm8k_test_model_solutions.jsonl`, labelled by
`prmsearch build` (every step gets the outcome), in fp32 with 8 solutions per micro-batch, AdamW lr 1e-3, from
the same random initial weights (same config and seed). The data are the same token sequences: steps tokenized one
by one with "\\n" after each step and the label on it, no separator between prompt and first step; TRL adds a BOS
token in front (one token per example, counted on its side). Sides alternate, `--repeats` times each, and each
run is a fresh process; tokens/s counts real (non-pad) tokens over the wall time of `trainer.train()`.

The two sides see the examples in different (seeded) orders, so their loss curves differ by that noise; the
packed and padded prmsearch runs of the same order give identical losses (tests/test_train.py checks it).

Prints a table and writes benchmarks/results/prm_train_speed.{md,json}.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
GSM8K = ROOT.parent / "shared" / "data" / "gsm8k_test_model_solutions.jsonl"
RESULTS = ROOT / "benchmarks" / "results"
MODEL = {
    "model_type": "qwen2",
    "hidden_size": 64,
    "intermediate_size": 256,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "max_position_embeddings": 2048,
    "tie_word_embeddings": False,
}


def build_data(work: Path, examples: int) -> tuple[Path, Path, Path]:
    """The stepwise JSONL (TRL's input), the packed-PRM dataset (ours, first `examples` rows) and a tokenizer."""
    from prmsearch.data_builders.build import BuildConfig, run_build
    from prmsearch.models.tokenizers import load_tokenizer

    recipe = str(ROOT / "data_builders" / "gsm8k_solutions.yaml")
    common = {"input": str(GSM8K), "prompt_separator": "", "max_length": 1024}
    stepwise = work / "stepwise.jsonl"
    run_build(BuildConfig.from_yaml(recipe, target="stepwise", output=str(stepwise), **common), progress=False)
    full = work / "prm_full"
    run_build(BuildConfig.from_yaml(recipe, target="prm", output=str(full), **common), progress=False)
    import datasets

    ours = work / "prm"
    datasets.load_from_disk(str(full)).select(range(examples)).save_to_disk(str(ours))
    shutil.copy(full / "build.json", ours / "build.json")
    tok = work / "tokenizer"
    load_tokenizer("smollm2").save_pretrained(str(tok))
    return stepwise, ours, tok


def run_trl(python: str, stepwise: Path, tok: Path, work: Path, args, i: int) -> dict:
    config = work / "model.json"
    config.write_text(json.dumps({**MODEL, "attn_implementation": "sdpa"}))
    out = work / f"trl_{i}.json"
    cmd = [python, str(ROOT / "benchmarks" / "trl_prm_side.py"), "--data", str(stepwise), "--tokenizer", str(tok)]
    cmd += ["--model-config", str(config), "--max-examples", str(args.examples), "--seed", str(args.seed)]
    cmd += ["--batch-size", str(args.batch_size), "--learning-rate", str(args.learning_rate), "--epochs", "1"]
    cmd += ["--threads", str(args.threads), "--output", str(out)]
    subprocess.run(cmd, check=True, capture_output=True, text=True, env=_env(args))
    return json.loads(out.read_text())


def run_ours(data: Path, work: Path, args, i: int) -> dict:
    recipe = work / "ours.yaml"
    out = work / f"ours_{i}"
    shutil.rmtree(out, ignore_errors=True)
    recipe.write_text(
        json.dumps(
            {
                "train_data": str(data),
                "output_dir": str(out),
                "model_config": MODEL,
                "learning_rate": args.learning_rate,
                "per_device_train_batch_size": args.batch_size,
                "packing": True,
                "eval_fraction": 0.0,
                "logging_steps": 1,
                "save_steps": 100_000,
                "seed": args.seed,
            }
        )
    )
    cmd = [sys.executable, "-m", "prmsearch", "train", "prm", str(recipe), "--quiet"]
    subprocess.run(cmd, check=True, capture_output=True, text=True, env=_env(args))
    import datasets

    metrics = json.loads((out / "metrics.json").read_text())
    losses = [h["loss"] for h in metrics["log_history"] if "loss" in h]
    tokens = sum(len(x) for x in datasets.load_from_disk(str(data))["input_ids"])
    seconds = metrics["train"]["train_runtime"]
    return {
        "trainer": "prmsearch (packed)",
        "examples": args.examples,
        "steps": len(losses),
        "tokens": tokens,
        "padded_tokens": tokens,
        "train_seconds": seconds,
        "tokens_per_s": tokens / seconds,
        "first_loss": losses[0],
        "final_loss": statistics.mean(losses[-10:]),
        "losses": losses,
    }


def _env(args) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "MKL_NUM_THREADS": str(args.threads)}
    env["HF_HUB_OFFLINE"] = "1"
    return env


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--trl-python", default=".venv-trl113/bin/python", help="python of a venv with trl==1.13.0")
    p.add_argument("--examples", type=int, default=2048)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--learning-rate", type=float, default=1e-3)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=2)
    args = p.parse_args()
    if not Path(args.trl_python).exists():
        sys.exit(f"{args.trl_python}: no such python; create the trl 1.13.0 venv first (see trl_prm_side.py)")
    work = RESULTS / "tmp" / "prm_train_speed"
    work.mkdir(parents=True, exist_ok=True)
    stepwise, ours_data, tok = build_data(work, args.examples)
    runs: dict[str, list[dict]] = {"trl": [], "ours": []}
    for i in range(args.repeats):
        runs["trl"].append(run_trl(args.trl_python, stepwise, tok, work, args, i))
        runs["ours"].append(run_ours(ours_data, work, args, i))
        trl, ours = runs["trl"][-1]["tokens_per_s"], runs["ours"][-1]["tokens_per_s"]
        print(f"repeat {i}: trl {trl:.0f} tokens/s, prmsearch {ours:.0f} tokens/s")
    rows = []
    for side, name in (("trl", "trl 1.13.0 PRMTrainer (padded)"), ("ours", "prmsearch (packed, varlen attention)")):
        rs = runs[side]
        best = max(rs, key=lambda r: r["tokens_per_s"])
        rows.append(
            {
                "side": name,
                "examples": best["examples"],
                "steps": best["steps"],
                "tokens": best["tokens"],
                "padded_tokens": best["padded_tokens"],
                "train_s_median": statistics.median(r["train_seconds"] for r in rs),
                "tokens_per_s_median": statistics.median(r["tokens_per_s"] for r in rs),
                "tokens_per_s_best": best["tokens_per_s"],
                "first_loss": best["first_loss"],
                "final_loss_last10": best["final_loss"],
                "mean_loss": statistics.mean(best["losses"]),
            }
        )
    ratio_median = rows[1]["tokens_per_s_median"] / rows[0]["tokens_per_s_median"]
    ratio_best = rows[1]["tokens_per_s_best"] / rows[0]["tokens_per_s_best"]
    columns = ["trainer", "examples", "steps", "real tokens", "tokens incl. pad", "train s (median)"]
    columns += ["tokens/s median", "tokens/s best", "first loss", "final loss (mean of last 10)", "mean loss"]
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for r in rows:
        lines.append(
            f"| {r['side']} | {r['examples']} | {r['steps']} | {r['tokens']} | {r['padded_tokens']} | "
            f"{r['train_s_median']:.1f} | {r['tokens_per_s_median']:.0f} | {r['tokens_per_s_best']:.0f} | "
            f"{r['first_loss']:.4f} | {r['final_loss_last10']:.4f} | {r['mean_loss']:.4f} |"
        )
    summary = f"prmsearch / TRL tokens/s: {ratio_median:.2f}x (medians), {ratio_best:.2f}x (best runs); goal >= 1.3x"
    table = "\n".join(lines)
    print(table)
    print(summary)
    RESULTS.mkdir(exist_ok=True)
    load = os.getloadavg()
    (RESULTS / "prm_train_speed.md").write_text(
        f"# PRM training throughput: prmsearch vs trl 1.13.0 PRMTrainer\n\n{__doc__.split(chr(10) * 2)[1]}\n\n"
        f"{args.repeats} runs per side, alternating; {args.threads} threads; {time.strftime('%Y-%m-%d')}, "
        f"load average after {load[0]:.2f}.\n\n{table}\n\n{summary}\n"
    )
    record = {"args": vars(args), "rows": rows, "runs": runs}
    (RESULTS / "prm_train_speed.json").write_text(json.dumps(record, indent=1))


if __name__ == "__main__":
    main()
