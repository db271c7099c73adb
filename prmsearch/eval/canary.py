"""`prmsearch eval canary`: is a reward model still as good, and as calibrated, on a fixed held-out set as it was?

A canary set is a JSONL file in one of TRL's formats, matched to the model's kind:
- a BT model: preference rows `{"prompt", "chosen", "rejected"}`. Reported: pairwise accuracy (a tie is wrong),
  the mean margin r_c - r_r, and the ECE of sigmoid(r_a - r_b) as P(a is preferred), each pair read in both orders
  (so the outcomes are not all 1 and a model that is sure of nothing scores 0.5 everywhere, ECE 0);
- an ORM: outcome rows `{"prompt", "completion", "label"}` (label true / false). Accuracy at 0.5, AUROC, ECE;
- a PRM: stepwise rows `{"prompt", "completions", "labels"}` (a label per step). Step accuracy at 0.5, AUROC,
  ECE over steps.
The confidence bins behind the ECE are kept (count, mean confidence, accuracy) and drawn as a reliability diagram.

Monitoring: `--baseline` names an earlier run's canary.json; a fall in accuracy or a rise in ECE beyond the
allowed amounts is drift, listed in the result, and the command exits 1 (2 stays bad input), so a scheduled job
can alert on it. The result never overwrites the baseline it is compared with.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import InputError
from ..files import write_atomic
from ..recipes import option

FIELDS = {
    "bt": ("preference", ("prompt", "chosen", "rejected")),
    "orm": ("outcome", ("prompt", "completion", "label")),
    "prm": ("stepwise", ("prompt", "completions", "labels")),
}


@dataclass
class CanaryConfig:
    """`prmsearch eval canary`: every flag is a field."""

    model: str = option("", "the reward model (BT, ORM or PRM): a folder, hub id or embedded name")
    data: str = option("", "the canary set: JSONL in the model kind's TRL format (see `prmsearch eval canary -h`)")
    output: str = option("out/canary", "folder for canary.json and reliability.png")
    baseline: str | None = option(None, "an earlier canary.json to compare with: drift exits 1")
    max_accuracy_drop: float = option(0.02, "drift: accuracy below the baseline's by more than this")
    max_ece_rise: float = option(0.02, "drift: ECE above the baseline's by more than this")
    bins: int = option(10, "equal-width confidence bins of the ECE and the reliability diagram")
    batch_size: int = option(16, "rows scored in one forward pass")
    device: str | None = option(None, "cpu or cuda (None: cuda when available)")

    def __post_init__(self) -> None:
        if self.bins < 1 or self.batch_size < 1:
            raise ValueError(f"bins and batch_size must be at least 1, got {self.bins} and {self.batch_size}")


def read_canary(path: str) -> tuple[str, list[dict[str, Any]]]:
    """The kind of model the rows of `path` are for (their TRL format) and the rows, each checked; a bad row is one
    error naming file, row and field. Read before any model loads, so bad input costs nothing."""
    rows: list[dict[str, Any]] = []
    kind = None
    try:
        lines = Path(path).read_text().splitlines()
    except OSError as e:
        raise InputError(f"cannot read the canary set {path}: {e.strerror or e}") from None
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        where = f"{path}, row {number}"
        try:
            row = json.loads(line)
        except ValueError as e:
            raise InputError(f"{where}: not JSON ({e})") from None
        if not isinstance(row, dict):
            raise InputError(f"{where}: a row must be a JSON object")
        if kind is None:
            kind = next((k for k, (_, fields) in FIELDS.items() if set(fields) <= row.keys()), None)
            if kind is None:
                formats = "; ".join(
                    f"{name} ({', '.join(fields)}) for kind {k.upper()}" for k, (name, fields) in FIELDS.items()
                )
                raise InputError(f"{where}: no known format's fields; a canary row is {formats}")
        name, fields = FIELDS[kind]
        missing = [f for f in fields if f not in row]
        if missing:
            raise InputError(
                f"{where}: no {', '.join(repr(f) for f in missing)}; the set holds {name} rows ({', '.join(fields)})"
            )
        rows.append(_checked(row, kind, where))
    if kind is None:
        raise InputError(f"{path} holds no rows")
    return kind, rows


def _checked(row: dict[str, Any], kind: str, where: str) -> dict[str, Any]:
    texts = {"bt": ("prompt", "chosen", "rejected"), "orm": ("prompt", "completion"), "prm": ("prompt",)}[kind]
    for f in texts:
        if not isinstance(row[f], str):
            raise InputError(f"{where}: field {f!r} must be a string")
    if kind == "orm" and not isinstance(row["label"], bool):
        raise InputError(f"{where}: field 'label' must be true or false")
    if kind == "prm":
        steps, labels = row["completions"], row["labels"]
        if not isinstance(steps, list) or not all(isinstance(s, str) for s in steps) or not steps:
            raise InputError(f"{where}: field 'completions' must be a non-empty list of step strings")
        if not isinstance(labels, list) or len(labels) != len(steps) or not all(isinstance(y, bool) for y in labels):
            raise InputError(f"{where}: field 'labels' must be one true / false per step ({len(steps)})")
    return row


def evaluate_canary(rm: Any, rows: list[dict[str, Any]], *, bins: int = 10, batch_size: int = 16) -> dict[str, Any]:
    """The kind's metrics of `rm` (a `RewardModel`) on checked rows, with the reliability bins."""
    import torch

    from ..train import metrics as M

    if rm.kind == "bt":
        prompts = [r["prompt"] for r in rows]
        chosen = torch.tensor(rm.score_batch(prompts, [r["chosen"] for r in rows], batch_size=batch_size))
        rejected = torch.tensor(rm.score_batch(prompts, [r["rejected"] for r in rows], batch_size=batch_size))
        p = torch.sigmoid(chosen - rejected)
        probs, labels = torch.cat([p, 1 - p]), torch.cat([torch.ones_like(p), torch.zeros_like(p)])
        result = {
            "pairs": len(rows),
            "accuracy": M.pair_accuracy(chosen, rejected),
            "margin": M.mean_margin(chosen, rejected),
        }
    elif rm.kind == "orm":
        probs = torch.tensor(
            rm.score_batch([r["prompt"] for r in rows], [r["completion"] for r in rows], batch_size=batch_size)
        )
        labels = torch.tensor([float(r["label"]) for r in rows])
        result = {"solutions": len(rows), "accuracy": M.binary_accuracy(probs, labels), "auroc": M.auroc(probs, labels)}
    else:
        scores = rm.score_steps_batch([r["prompt"] for r in rows], [r["completions"] for r in rows], batch_size)
        for r, s in zip(rows, scores, strict=True):
            if len(s) != len(r["labels"]):  # a whitespace-only step gets no score
                raise InputError(f"a row of {len(r['labels'])} steps got {len(s)} scores: drop its empty steps")
        probs = torch.tensor([x for s in scores for x in s])
        labels = torch.tensor([float(y) for r in rows for y in r["labels"]])
        result = {
            "solutions": len(rows),
            "steps": len(labels),
            "accuracy": M.binary_accuracy(probs, labels),
            "auroc": M.auroc(probs, labels),
        }
    result["reliability"] = M.calibration_bins(probs, labels, bins)
    result["ece"] = M.ece_of(result["reliability"])
    return result


def drift(result: dict[str, Any], baseline: dict[str, Any], cfg: CanaryConfig) -> list[str]:
    """What got worse than the baseline allows, one sentence each (empty: no drift)."""
    out = []
    fall = baseline["accuracy"] - result["accuracy"]
    if fall > cfg.max_accuracy_drop:
        out.append(
            f"accuracy fell {fall:.3f} ({baseline['accuracy']:.3f} -> {result['accuracy']:.3f}), more than "
            f"max_accuracy_drop {cfg.max_accuracy_drop}"
        )
    rise = result["ece"] - baseline["ece"]
    if rise > cfg.max_ece_rise:
        out.append(
            f"ECE rose {rise:.3f} ({baseline['ece']:.3f} -> {result['ece']:.3f}), more than max_ece_rise "
            f"{cfg.max_ece_rise}"
        )
    return out


def plot_reliability(bins: list[dict[str, float]], title: str, path: Path) -> None:
    """The reliability diagram: each bin's accuracy against its mean confidence (the diagonal is perfect
    calibration), and how many predictions fell in each bin. A private Agg canvas, no global matplotlib state."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(9, 4))
    FigureCanvasAgg(fig)
    diagram, counts = fig.subplots(1, 2)
    width = bins[0]["high"] - bins[0]["low"]
    used = [b for b in bins if b["count"]]
    diagram.bar([b["low"] for b in used], [b["accuracy"] for b in used], width=width, align="edge", alpha=0.7)
    diagram.plot([0, 1], [0, 1], "k--", linewidth=1)
    diagram.scatter([b["confidence"] for b in used], [b["accuracy"] for b in used], color="k", s=12, zorder=3)
    diagram.set(xlim=(0, 1), ylim=(0, 1), xlabel="confidence (mean P in the bin)", ylabel="accuracy", title=title)
    counts.bar([b["low"] for b in bins], [b["count"] for b in bins], width=width, align="edge", alpha=0.7)
    counts.set(xlim=(0, 1), xlabel="confidence", ylabel="predictions", title="per bin")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def run_canary(cfg: CanaryConfig) -> dict[str, Any]:
    """Read, score, compare, write OUTPUT/canary.json and OUTPUT/reliability.png; returns the result."""
    from ..models.reward_model import RewardModel

    if not cfg.model or not cfg.data:
        raise InputError("eval canary needs --model (a reward model) and --data (a canary set)")
    out = Path(cfg.output)
    target = out / "canary.json"
    base = None
    if cfg.baseline is not None:
        if target.resolve() == Path(cfg.baseline).resolve():
            raise InputError(f"--output {cfg.output} would overwrite the baseline {cfg.baseline}: give another")
        try:
            base = json.loads(Path(cfg.baseline).read_text())
        except (OSError, ValueError) as e:
            raise InputError(f"cannot read the baseline {cfg.baseline}: {e}") from None
        if not isinstance(base, dict) or not {"kind", "accuracy", "ece"} <= base.keys():
            raise InputError(f"{cfg.baseline} is not a canary.json (it needs kind, accuracy and ece)")
        for key in ("accuracy", "ece"):
            value = base[key]
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise InputError(f"{cfg.baseline}: field {key!r} must be a number, got {value!r}; restore the file")
        if base["kind"] not in FIELDS:
            raise InputError(f"{cfg.baseline}: field 'kind' must be one of {', '.join(FIELDS)}, got {base['kind']!r}")
    kind, rows = read_canary(cfg.data)
    if base is not None and base["kind"] != kind:
        raise InputError(
            f"the baseline {cfg.baseline} is of kind {base['kind'].upper()}, {cfg.data} for kind {kind.upper()}"
        )
    rm = RewardModel.from_pretrained(cfg.model, device=cfg.device)
    if rm.kind != kind:
        name, fields = FIELDS[rm.kind]
        raise InputError(
            f"{cfg.data} holds {FIELDS[kind][0]} rows, for kind {kind.upper()}; {cfg.model} is of kind "
            f"{rm.kind.upper()}, evaluated on {name} rows ({', '.join(fields)})"
        )
    result = {"model": cfg.model, "kind": rm.kind, "data": cfg.data}
    result.update(evaluate_canary(rm, rows, bins=cfg.bins, batch_size=cfg.batch_size))
    if base is not None:
        result["baseline"] = {"path": cfg.baseline, "accuracy": base["accuracy"], "ece": base["ece"]}
        result["drift"] = drift(result, base, cfg)
    out.mkdir(parents=True, exist_ok=True)
    write_atomic(str(target), json.dumps(result, indent=1) + "\n")
    plot_reliability(
        result["reliability"],
        f"{rm.kind.upper()} {Path(cfg.model).name}: ECE {result['ece']:.3f}",
        out / "reliability.png",
    )
    return result


def format_canary(result: dict[str, Any]) -> str:
    keys = [k for k in ("pairs", "solutions", "steps", "accuracy", "margin", "auroc", "ece") if k in result]
    head = "| " + " | ".join(keys) + " |"
    cells = [f"{result[k]:.4f}" if isinstance(result[k], float) else str(result[k]) for k in keys]
    lines = [head, "|" + "---:|" * len(keys), "| " + " | ".join(cells) + " |"]
    if "baseline" in result:
        b = result["baseline"]
        lines.append(f"baseline {b['path']}: accuracy {b['accuracy']:.4f}, ECE {b['ece']:.4f}")
        lines += [f"DRIFT: {d}" for d in result["drift"]] or ["no drift"]
    return "\n".join(lines)
