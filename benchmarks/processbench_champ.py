"""`prmsearch eval processbench` on CHAMP's first-wrong-step annotations (issue 15, item 4): an oracle, two
constants, a tiny PRM trained by prmsearch, and SmolLM2-135M-Instruct as the step critic judge. The oracle and the
constants validate the metric (F1 100 and 0); the tiny PRM and the 135M judge show the command working end to end,
not quality.

The tiny PRM is `make demo`'s: `train/tiny_prm.yaml` (a 2-layer Qwen2 with the SmolLM2 tokenizer), with 8,192
positions so that it reads CHAMP's long solutions (the embedded PRM reads 512), on the GSM8K model solutions' outcome
labels. It is built here into benchmarks/.cache/champ_prm unless --prm names one.

    python benchmarks/processbench_champ.py [--prm FOLDER] [--skip-judge] [--judge-solutions 100]

The judge sees the first --judge-solutions by id: on 2 CPU cores SmolLM2 did not get through all 540 (long prompts)
in 28 minutes.

Prints the table and writes benchmarks/results/processbench_champ.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from policy_cache import convert_smollm2
from reference_scorers import Constant, Oracle

from prmsearch.eval.processbench import (
    ProcessBenchConfig,
    evaluate,
    read_annotated,
    run_processbench,
)
from prmsearch.search.load import load_judge

HERE = Path(__file__).parent
RESULTS = HERE / "results"
GSM8K = HERE.parent.parent / "shared" / "data" / "gsm8k_test_model_solutions.jsonl"
LONGER = ["model_config.max_position_embeddings=8192"]  # CHAMP's longest solution is 4,201 SmolLM2 tokens


def tiny_prm(folder: Path) -> Path:
    if (folder / "config.json").exists():
        return folder
    data = folder.parent / "champ_prm_data"
    for args in (
        [
            "build",
            "prm",
            "--config",
            "data_builders/gsm8k_solutions.yaml",
            "--input",
            str(GSM8K),
            "--output",
            str(data),
        ],
        ["train", "prm", "train/tiny_prm.yaml", f"train_data={data}", f"output_dir={folder}", *LONGER, "--quiet"],
    ):
        subprocess.run([sys.executable, "-m", "prmsearch", *args], check=True, cwd=HERE.parent)
    return folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--prm", type=Path, default=HERE / ".cache" / "champ_prm")
    parser.add_argument("--skip-judge", action="store_true")
    parser.add_argument(
        "--judge-solutions", type=int, default=100, help="the judge sees this many (a 135M LM on 2 cores: slow)"
    )
    args = parser.parse_args()

    items = read_annotated("champ")
    runs = [
        ("oracle", ProcessBenchConfig(scorer="oracle", threshold=0.5), Oracle(items)),
        ("constant 0.9", ProcessBenchConfig(scorer="constant", threshold=0.5), Constant(0.9)),
        ("constant 0.1", ProcessBenchConfig(scorer="constant", threshold=0.5), Constant(0.1)),
        ("tiny PRM (tuned threshold)", ProcessBenchConfig(scorer=str(tiny_prm(args.prm)), device="cpu"), None),
    ]
    rows = []
    for name, cfg, scorer in runs:
        started = time.perf_counter()
        result = run_processbench(cfg, scorer)
        result.pop("predictions")
        rows.append({"name": name, **result, "seconds": round(time.perf_counter() - started, 1)})
        print(f"{name}: F1 {100 * result['processbench_f1']:.1f} ({rows[-1]['seconds']} s)", flush=True)
    if not args.skip_judge:
        subset = sorted(items, key=lambda a: a.id)[: args.judge_solutions]
        judge = load_judge(str(convert_smollm2()), "critic", device="cpu", batch_size=8)
        started = time.perf_counter()
        result = evaluate(judge, subset, threshold=0.5)
        result.pop("predictions")
        name = f"SmolLM2-135M critic judge ({len(subset)} solutions)"
        rows.append({"name": name, **result, "verdicts": judge.stats["verdicts"]})
        rows[-1].update(invalid_verdicts=judge.stats["invalid"], seconds=round(time.perf_counter() - started, 1))
    lines = [
        "| scorer | solutions | erroneous acc | correct acc | F1 | threshold | invalid verdicts | seconds |",
        "|---|---:|---:|---:|---:|---|---:|---:|",
    ]
    for r in rows:
        invalid = f"{r['invalid_verdicts']} / {r['verdicts']}" if "verdicts" in r else ""
        lines.append(
            f"| {r['name']} | {r['solutions']} | {100 * r['error_accuracy']:.1f} | {100 * r['correct_accuracy']:.1f} "
            f"| {100 * r['processbench_f1']:.1f} | {r['threshold']:.3g} ({r['threshold_source']}) | {invalid} "
            f"| {r['seconds']} |"
        )
    table = "\n".join(lines)
    note = (
        f"CHAMP ({len(items)} annotated solutions, {sum(a.first_error < 0 for a in items)} without a mistake; steps "
        "are paragraphs). A tuned threshold is fitted on an id-hashed half and the other half is reported."
    )
    print(table + "\n\n" + note)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "processbench_champ.json").write_text(json.dumps(rows, indent=1) + "\n")
    (RESULTS / "processbench_champ.md").write_text(table + "\n\n" + note + "\n")


if __name__ == "__main__":
    main()
