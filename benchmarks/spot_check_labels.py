"""Spot-check built PRM / ORM / pair sets against the raw GSM8K solutions, re-deriving every label position with
the tokenizer alone (no StepFormat), so a bug in the contract cannot hide behind itself.

    python benchmarks/spot_check_labels.py --data ../shared/data/gsm8k_test_model_solutions.jsonl \
        --prm out/gsm8k_prm --orm out/gsm8k_orm --pairs out/gsm8k_pairs --n 20

Assumes the recipe data_builders/gsm8k_solutions.yaml (separator "\\n" = marker, prompt_separator "\\n\\n").
Writes benchmarks/results/spot_check_labels.md.
"""

from __future__ import annotations

import argparse
import json
import os
import random

import datasets

from prmsearch.models.tokenizers import load_tokenizer

SYSTEMS = ["6b_finetuning", "6b_verification", "175b_finetuning", "175b_verification"]


def expected(tok, question: str, solution: str) -> tuple[list[int], list[int], int]:
    """input_ids, label positions and prompt length, derived by hand: each non-empty line tokenized alone and
    followed by the ids of "\\n"."""
    ids = tok(question + "\n\n", add_special_tokens=True)["input_ids"]
    n_prompt = len(ids)
    newline = tok("\n", add_special_tokens=False)["input_ids"]
    ends = []
    for line in solution.split("\n"):
        if line.strip():
            ids = ids + tok(line.strip(), add_special_tokens=False)["input_ids"] + newline
            ends.append(len(ids) - 1)
    return ids, ends, n_prompt


def candidates(tok, raw: dict):
    for s in SYSTEMS:
        ids, ends, n_prompt = expected(tok, raw["question"], raw[s]["solution"])
        yield s, ids, ends, n_prompt, int(raw[s]["is_correct"])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default="../shared/data/gsm8k_test_model_solutions.jsonl")
    ap.add_argument("--prm", default="out/gsm8k_prm")
    ap.add_argument("--orm", default="out/gsm8k_orm")
    ap.add_argument("--pairs", default="out/gsm8k_pairs")
    ap.add_argument("--tokenizer", default="smollm2")
    ap.add_argument("--n", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    tok = load_tokenizer(args.tokenizer)
    raw = [json.loads(line) for line in open(args.data, encoding="utf-8")]
    rng = random.Random(args.seed)

    def line_of(source: str) -> int:
        return int(source.rsplit(":", 1)[1])

    def agree(path: str, ok) -> int:
        ds = datasets.load_from_disk(path)
        return sum(bool(ok(ds[i])) for i in rng.sample(range(len(ds)), args.n))

    def matches(row):
        """The (system, ids, ends, n_prompt, outcome) whose hand-derived ids equal the row's."""
        return [c for c in candidates(tok, raw[line_of(row["source"]) - 1]) if c[1] == row["input_ids"]]

    def prm_ok(row) -> bool:
        positions = [p for p, v in enumerate(row["labels"]) if v != -100]
        values = [row["labels"][p] for p in positions]
        return any(positions == ends and values == [y] * len(ends) for _, _, ends, _, y in matches(row))

    def orm_ok(row) -> bool:
        return any(row["labels"] == [-100] * n_p + [y] * (len(ids) - n_p) for _, ids, _, n_p, y in matches(row))

    by_question = {r["question"]: r for r in raw}

    def pair_ok(row) -> bool:
        r = by_question[row["prompt"]]
        norm = {s: "\n".join(x.strip() for x in r[s]["solution"].split("\n") if x.strip()) for s in SYSTEMS}
        chosen = any(norm[s] == row["chosen"] and r[s]["is_correct"] for s in SYSTEMS)
        return chosen and any(norm[s] == row["rejected"] and not r[s]["is_correct"] for s in SYSTEMS)

    results = [
        (name, agree(path, ok), args.n)
        for name, path, ok in [("prm", args.prm, prm_ok), ("orm", args.orm, orm_ok), ("pairs", args.pairs, pair_ok)]
    ]
    table = ["| set | agree | checked |", "|---|---|---|"] + [f"| {k} | {a} | {n} |" for k, a, n in results]
    print("\n".join(table))
    os.makedirs("benchmarks/results", exist_ok=True)
    with open("benchmarks/results/spot_check_labels.md", "w", encoding="utf-8") as f:
        f.write(f"# Spot check of built labels (seed {args.seed}, tokenizer {args.tokenizer})\n\n")
        f.write("\n".join(table) + "\n")


if __name__ == "__main__":
    main()
