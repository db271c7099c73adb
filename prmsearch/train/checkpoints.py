"""A training run's output folder: what it may hold before a run starts, and which checkpoint a resume continues.

The Trainer writes into `output_dir` whatever is there: a new run over a finished one replaces its model, and its
checkpoint rotation deletes the old run's checkpoints and leaves a mix that a later resume would pick up. So, as
`search` and `label` do with their outputs (`prmsearch.resume`), a fresh run refuses a folder that holds a model or
checkpoints, and a resume must run with the settings the folder was trained with (`train_config.yaml`, written when
the run starts), except the few that change only how it is logged and saved. A resume continues the newest checkpoint
that was written whole: a kill or a full disk mid-save leaves a truncated one, which is skipped with a line saying so.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml

from ..files import write_atomic
from ..resume import check_settings, read_record
from .config import TrainConfig, TrainConfigError

RECORD = "train_config.yaml"
# Keys a resume may change: they decide what is logged and kept, not what is learned.
RESUME_FREE = (
    "output_dir",
    "logging_steps",
    "logging_first_step",
    "report_to",
    "run_name",
    "save_total_limit",
    "save_steps",
    "eval_steps",
    "per_device_eval_batch_size",
    "dataloader_num_workers",
    "disable_tqdm",
    "deepspeed",
)
_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")


def checkpoints(out: Path) -> list[Path]:
    """The `checkpoint-N` folders in `out`, newest (highest N) first."""
    if not out.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in out.iterdir() if p.is_dir() and (m := _CHECKPOINT.match(p.name))]
    return [p for _, p in sorted(found, reverse=True)]


def check_output(cfg: TrainConfig, resuming: bool) -> None:
    """Refuse a fresh run into a folder holding a model or checkpoints, and a resume with other settings than the
    folder's; then record this run's settings, so a resume after a kill is checked against them."""
    out = Path(cfg.output_dir)
    record = out / RECORD
    if not resuming:
        held = [p.name for p in (out / "model.safetensors", out / "adapter_model.safetensors") if p.exists()]
        held += [p.name for p in checkpoints(out)][:3]
        if held:
            raise TrainConfigError(
                f"{out} already holds a trained model or checkpoints ({', '.join(held)}): pass --resume to continue "
                "it, or choose a new output_dir"
            )
    elif record.exists():
        before = read_record(record, TrainConfigError)
        check_settings(out, before, cfg.recipe(), verb="trained", free=RESUME_FREE, error=TrainConfigError)
    out.mkdir(parents=True, exist_ok=True)
    write_atomic(record, yaml.safe_dump(cfg.recipe(), sort_keys=False))


def latest_whole(out: Path, say: Any = print) -> Path:
    """The newest checkpoint in `out` that was written whole; each newer one that was not is named through `say`."""
    found = checkpoints(out)
    if not found:
        raise TrainConfigError(f"--resume: no checkpoint-* folder in {out}")
    for path in found:
        broken = incomplete(path)
        if broken is None:
            return path
        say(f"{path.name} is incomplete ({broken}); skipping it")
    raise TrainConfigError(f"--resume: no checkpoint in {out} was written whole (the newest: {incomplete(found[0])})")


def incomplete(path: Path) -> str | None:
    """Why a checkpoint folder cannot be resumed from (None: it can): its weights and trainer state must read."""
    from safetensors import safe_open

    state = path / "trainer_state.json"
    try:
        json.loads(state.read_text())
    except (OSError, ValueError):
        return f"{state.name} missing or unreadable"
    weights = sorted(path.glob("*.safetensors"))
    if not weights:
        return "no weights"
    for w in weights:
        try:  # opening checks the header against the file's length: a truncated or empty file fails here
            with safe_open(str(w), framework="pt"):
                pass
        except Exception as e:  # safetensors raises its own error types
            return f"{w.name}: {' '.join(str(e).split())[:120]}"
    return None
