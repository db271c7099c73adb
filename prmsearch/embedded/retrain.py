"""Rebuild the embedded default from scratch (`prmsearch quickstart --retrain`), seeded, with prmsearch's own
commands, on 2 CPU cores in under 30 minutes:

1. a tokenizer trained on the bundled task (`embedded.tokenizer`);
2. the tiny policy, trained on worked solutions with TRL's `SFTTrainer` (`embedded.policy`);
3. `prmsearch label`: the policy's own samples on other training problems, their steps labelled by first-error
   search over the policy's rollouts (`recipes/label.yaml`), split over `label_workers` processes (the labels are
   the ones one process writes);
4. `prmsearch build prm` + `prmsearch train prm` from the policy's weights (`recipes/prm.yaml`);
5. `prmsearch build orm` + `prmsearch train orm` from the policy's weights on the same samples' outcomes
   (`recipes/orm.yaml`).

The commands run as child processes (`python -m prmsearch ...`), exactly as typed in a shell; `retrain.log` in the
models folder lists them. `install_models` copies a rebuilt set into the package (what ships).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..shipped import HOME, MODELS
from .policy import PolicySpec

RECIPES = Path(__file__).parent / "recipes"
# Files of a checkpoint that ship; the trainers' other outputs (metrics, args, logs) stay in the models folder.
SHIPPED = (
    "config.json",
    "generation_config.json",
    "model.safetensors",
    "tokenizer.json",
    "tokenizer_config.json",
    "likelihood_head.json",  # a likelihood PRM or ORM read-out (models.likelihood)
)


@dataclass
class RetrainSpec:
    """How much data each stage sees, and how many processes label it."""

    sft_problems: int = 32_000  # worked solutions the policy is trained on (steps x batch size)
    label_problems: int = 2500  # other training problems whose sampled solutions are labelled
    label_workers: int = 2  # `prmsearch label --workers`: processes the labelling is split over (same labels)
    policy: PolicySpec = field(default_factory=PolicySpec)
    seed: int = 0


def retrain(
    models_dir: str, *, spec: RetrainSpec | None = None, policy: str | None = None, progress: bool = True
) -> dict[str, str]:
    """Build policy, PRM and ORM into `models_dir`; returns their folders by name ("policy", "prm", "orm"). With
    `policy` (a folder), that policy is kept and only the labels and reward models are rebuilt for it."""
    from ..label.outputs import remove_records, sidecar_path
    from ..tasks.chains import corpus, generate, write_problems
    from .policy import train_policy
    from .tokenizer import train_tokenizer

    spec = spec or RetrainSpec(policy=PolicySpec())
    root = Path(models_dir)
    data = root / "data"
    data.mkdir(parents=True, exist_ok=True)
    paths = {name: str(root / name) for name in MODELS}
    if policy is not None:
        paths["policy"] = policy
    run = _Stages(root / "retrain.log", progress)
    if policy is None:
        with run.stage("tokenizer + policy (SFTTrainer)"):
            sft = generate("train", spec.sft_problems, seed=spec.seed)
            train_policy(sft, train_tokenizer(corpus(sft)), paths["policy"], spec.policy)
    with run.stage("prmsearch label"):
        problems = data / "label_problems.jsonl"
        write_problems(generate("train", spec.label_problems, seed=spec.seed + 1), str(problems))
        labels = data / "labels.jsonl"
        remove_records(labels)  # and the parts of a killed split run
        sidecar_path(labels).unlink(missing_ok=True)
        run.command(
            ["label", "--config", str(RECIPES / "label.yaml"), "--problems", str(problems), "--policy", paths["policy"]]
            + ["--seed", str(spec.seed), "--output", str(labels), "--workers", str(spec.label_workers)]
        )
    for kind in ("prm", "orm"):
        with run.stage(f"prmsearch build {kind} + train {kind}"):
            built = data / kind
            shutil.rmtree(built, ignore_errors=True)
            shutil.rmtree(paths[kind], ignore_errors=True)
            run.command(
                ["build", kind, "--source", "stepwise", "--input", str(labels), "--tokenizer", paths["policy"]]
                + ["--output", str(built)]
            )
            run.command(
                ["train", kind, str(RECIPES / f"{kind}.yaml"), f"model={paths['policy']}", f"train_data={built}"]
                + [f"output_dir={paths[kind]}", f"seed={spec.seed}"]
            )
    (root / "retrain.json").write_text(json.dumps({"seconds": run.timings, "models": paths}, indent=1) + "\n")
    return paths


class _Stages:
    """The retrain's commands, run as child processes and listed in `log`, and the seconds of each stage."""

    def __init__(self, log: Path, progress: bool) -> None:
        self.log, self.quiet = log, [] if progress else ["--quiet"]
        self.timings: dict[str, float] = {}

    def command(self, args: list[str]) -> None:
        args = [*args, *self.quiet]
        with self.log.open("a") as f:
            f.write("prmsearch " + " ".join(args) + "\n")
        if subprocess.run([sys.executable, "-m", "prmsearch", *args]).returncode != 0:
            raise RuntimeError(f"`prmsearch {' '.join(args)}` failed; see the message above")

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        started = time.perf_counter()
        yield
        self.timings[name] = round(time.perf_counter() - started, 1)
        print(f"[retrain] {name}: {self.timings[name]} s", flush=True)


def install_models(models: dict[str, str]) -> None:
    """Copy a rebuilt policy / PRM / ORM into the package, replacing the shipped checkpoints."""
    for name, folder in models.items():
        target = HOME / name
        shutil.rmtree(target, ignore_errors=True)
        target.mkdir(parents=True)
        for file in SHIPPED:
            if (Path(folder) / file).exists():
                shutil.copy2(Path(folder) / file, target / file)


def summary(models_dir: str) -> Any:
    path = Path(models_dir) / "retrain.json"
    return json.loads(path.read_text()) if path.exists() else None
