"""`prmsearch eval aggregation`: which step-score aggregation makes a PRM pick right solutions, and (asked) save it.

A PRM scores every step; search and reranking need one score per solution (`scoring.aggregate_steps`: last, min,
prod, mean), and the best one depends on how the PRM was trained and on the policy's mistakes: with the embedded
PRM, best-of-8 on the bundled task picks a right answer 0.83 of the time by `min` and 0.23 by `last`. The model
saves the aggregation it was trained with (`step_aggregation`), and every consumer uses it by default; this command
measures each one on graded samples and, with `--write`, saves the best into the model's config, so search, rerank,
reward_function and serve use it from then on.

The samples are JSONL in a TRL format (the canary set's readers): outcome rows `{"prompt", "completion", "label"}`
(a solution and whether it is right; the completion is split into steps by the model's StepFormat) or stepwise rows
`{"prompt", "completions", "labels"}` (a solution is right when every step is). Rows with the same prompt are one
problem's samples. Each step is scored once; every aggregation is then a cheap pass over the same step scores.

Reported per aggregation: best-of-N accuracy (the highest-scoring sample of each problem is right; ties: the first,
as `search.select.best_of_n` picks), and the AUROC of the solution score against the label. The best is the highest
best-of-N accuracy, ties broken by AUROC, then by the order of `scoring.STEP_AGGREGATIONS` with the default first.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import InputError
from ..files import write_atomic
from ..recipes import option
from ..scoring import DEFAULT_STEP_AGGREGATION, STEP_AGGREGATIONS, aggregate_steps


@dataclass
class AggregationConfig:
    """`prmsearch eval aggregation`: every flag is a field."""

    model: str = option("", "the PRM: a folder, hub id or embedded name (or a public PRM with --adapter)")
    data: str = option("", "graded samples: JSONL outcome rows (prompt, completion, label) or stepwise rows")
    adapter: str | None = option(None, "read --model in this format (models.formats; default: its config's)")
    write: bool = option(False, "save the best aggregation into the model's config.json (a local prmsearch PRM)")
    output: str | None = option(None, "write the result here as JSON (None: print only)")
    batch_size: int = option(8, "solutions scored per forward pass")
    device: str | None = option(None, "cpu or cuda (None: cuda when available)")


def read_samples(path: str) -> tuple[list[str], list[str | list[str]], list[bool]]:
    """Prompts, completions (a string, or a stepwise row's steps) and labels of the graded samples in `path`, each
    row checked before any model loads."""
    from .canary import read_canary

    kind, rows = read_canary(path)
    if kind == "bt":
        raise InputError(
            f"{path} holds preference rows; eval aggregation needs graded samples: outcome rows (prompt, completion, "
            "label) or stepwise rows (prompt, completions, labels)"
        )
    if kind == "orm":
        return [r["prompt"] for r in rows], [r["completion"] for r in rows], [r["label"] for r in rows]
    return [r["prompt"] for r in rows], [r["completions"] for r in rows], [all(r["labels"]) for r in rows]


def compare(step_scores: list[list[float]], prompts: list[str], labels: list[bool]) -> dict[str, Any]:
    """Each aggregation's best-of-N accuracy, AUROC and within-problem pair accuracy over the same step scores, and
    the best of them. A sample with no scored step scores lowest (it never wins unless its problem has nothing
    else)."""
    import torch

    from ..search.select import best_of_n
    from ..train.metrics import auroc, within_group_pair_accuracy

    problems: dict[str, list[int]] = {}
    for i, p in enumerate(prompts):
        problems.setdefault(p, []).append(i)
    table = {}
    for how in STEP_AGGREGATIONS:
        scores = [aggregate_steps(s, how) if s else None for s in step_scores]
        picks = [members[best_of_n([scores[i] for i in members]) or 0] for members in problems.values()]
        floor = min((s for s in scores if s is not None), default=0.0) - 1
        floored = [floor if s is None else s for s in scores]
        table[how] = {
            "best_of_n": sum(labels[i] for i in picks) / len(picks),
            "auroc": auroc(torch.tensor(floored), torch.tensor(labels).float()),
            "pair_accuracy": within_group_pair_accuracy(floored, labels, prompts)[0],
        }
    order = [DEFAULT_STEP_AGGREGATION] + [a for a in STEP_AGGREGATIONS if a != DEFAULT_STEP_AGGREGATION]
    best = max(order, key=lambda a: (table[a]["best_of_n"], table[a]["auroc"], -order.index(a)))
    return {
        "problems": len(problems),
        "samples": len(prompts),
        "right": sum(labels),
        "first_sample": sum(labels[m[0]] for m in problems.values()) / len(problems),
        "any_right": sum(any(labels[i] for i in m) for m in problems.values()) / len(problems),
        "aggregations": table,
        "best": best,
    }


def writable_config(model: str) -> tuple[Path, dict[str, Any]]:
    """The config.json of a local prmsearch PRM and its contents, checked before anything is scored. Anything else
    is refused: an embedded model belongs to the installed package, a hub id is not ours to edit, and another format
    has no place for an aggregation (pass --agg there)."""
    from ..shipped import is_embedded

    config = Path(model) / "config.json"
    if is_embedded(model) or not config.is_file():
        raise InputError(
            f"--write saves into a local model folder's config.json; {model} is not one (copy it to a folder first, "
            "or pass --agg to each command)"
        )
    try:
        settings = json.loads(config.read_text())
    except (OSError, ValueError) as e:
        raise InputError(f"cannot read {config}: {e}") from None
    block = settings.get("prmsearch") if isinstance(settings, dict) else None
    if not isinstance(block, dict) or block.get("kind") != "prm":
        raise InputError(
            f"{config} has no prmsearch PRM settings: --write saves into a PRM saved by prmsearch; for another format "
            "pass --agg to each command"
        )
    return config, settings


def write_aggregation(model: str, how: str) -> str | None:
    """Save `how` as the step aggregation in a local prmsearch PRM's config.json (atomically: a kill leaves the
    old file or the new one); the one it replaces (None: none was saved)."""
    config, settings = writable_config(model)
    before = settings["prmsearch"].get("step_aggregation")
    settings["prmsearch"]["step_aggregation"] = how
    write_atomic(config, json.dumps(settings, indent=2, sort_keys=True) + "\n")
    return before


def run_aggregation(cfg: AggregationConfig, scorer: Any = None) -> dict[str, Any]:
    """Read the samples, score their steps once, compare the aggregations; with `cfg.write` save the best."""
    from .processbench import load_step_scorer

    if not cfg.model or not cfg.data:
        raise InputError("eval aggregation needs --model (a PRM) and --data (graded samples)")
    prompts, completions, labels = read_samples(cfg.data)
    if cfg.write:
        writable_config(cfg.model)
    if scorer is None:
        scorer = load_step_scorer(cfg.model, adapter=cfg.adapter, device=cfg.device)
    steps = [scorer.step_format.split(c) if isinstance(c, str) else c for c in completions]
    step_scores = scorer.score_steps_batch(prompts, steps, batch_size=cfg.batch_size)
    result = {"model": cfg.model, "data": cfg.data, **compare(step_scores, prompts, labels)}
    result["saved"] = getattr(scorer, "step_aggregation", None)
    if cfg.write:
        result["replaced"] = write_aggregation(cfg.model, result["best"])
        result["written"] = str(Path(cfg.model) / "config.json")
    if cfg.output:
        write_atomic(cfg.output, json.dumps(result, indent=1) + "\n")
    return result


def format_aggregation(result: dict[str, Any]) -> str:
    rows = [
        f"| {how}{' (saved)' if how == result['saved'] else ''}{' **best**' if how == result['best'] else ''} | "
        f"{m['best_of_n']:.3f} | {m['auroc']:.3f} | {_maybe(m.get('pair_accuracy'))} |"
        for how, m in result["aggregations"].items()
    ]
    saved = result["saved"] or f"none (the default, {DEFAULT_STEP_AGGREGATION}, is used)"
    lines = [
        f"{result['problems']} problems, {result['samples']} samples ({result['right']} right); one sample "
        f"{result['first_sample']:.3f}, any sample right {result['any_right']:.3f}",
        f"saved with the model: {saved}",
        "| aggregation | best-of-N | AUROC | within-problem pair accuracy |\n|---|---:|---:|---:|",
        *rows,
    ]
    if "written" in result:
        lines.append(f"step_aggregation {result['replaced']} -> {result['best']} saved in {result['written']}")
    return "\n".join(lines)


def _maybe(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"
