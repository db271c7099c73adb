"""ProcessBench-style evaluation of any step scorer: does it find the first wrong step of a solution?

Each solution comes with its annotated first wrong step (or none). The scorer gives every step a P(correct); the
predicted first error is the first step scored below a threshold (-1: none). Reported, as in ProcessBench: accuracy
on erroneous solutions (the exact index), on correct ones (-1), and their harmonic mean (F1).

A discriminative PRM's threshold is not given by the model, so by default it is chosen on a held-out half of the
solutions (the F1-best threshold there, found exactly: each solution is right on one interval of thresholds) and
the figures are those of the other half. A scorer whose scores are verdicts (a judge's 0 / 1) takes `threshold=0.5`.

Any object with `score_steps_batch(prompts, step_lists, batch_size=...)` is a step scorer: a trained PRM
(`RewardModel`), a public-PRM adapter (`models.adapters`), or the step-critic judge.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from ..files import write_atomic
from ..recipes import option
from ..records import Trace

SOURCES = ("processbench", "stepwise")  # the readers of annotated solutions besides the champ package


@dataclass
class Annotated:
    """A solution and the index of its first wrong step (-1: none)."""

    id: str
    problem: str
    steps: list[str]
    first_error: int


def annotated(traces: Iterable[Trace]) -> list[Annotated]:
    """First-error annotations from labelled traces (the ProcessBench and CHAMP readers): the first step labelled
    below 0.5; traces without step labels are skipped."""
    out = []
    for t in traces:
        if t.step_labels is None:
            continue
        wrong = [i for i, y in enumerate(t.step_labels) if y is not None and y < 0.5]
        out.append(Annotated(t.source or t.group_id, t.prompt, list(t.steps), wrong[0] if wrong else -1))
    return out


def held_out(items: Sequence[Annotated], fraction: float = 0.5) -> tuple[list[int], list[int]]:
    """Indices of the threshold-tuning and evaluation halves: a hash of each solution's id, so the split is fixed
    whatever the order or the scorer."""
    tune, test = [], []
    for i, item in enumerate(items):
        h = int.from_bytes(hashlib.sha256(item.id.encode()).digest()[:8], "big") / 2**64
        (tune if h < fraction else test).append(i)
    return tune, test


def correct_interval(scores: Sequence[float], gold: int) -> tuple[float, float]:
    """The thresholds t at which `first_error(scores, t) == gold`: the interval (low, high], empty when low >= high.
    For gold -1 every step must stay at or above t; for gold g, step g must fall below t and none before it."""
    if gold < 0:
        return -math.inf, min(scores, default=math.inf)
    return scores[gold], min(scores[:gold], default=math.inf)


def best_threshold(scores: Sequence[Sequence[float]], golds: Sequence[int]) -> float:
    """The threshold with the highest ProcessBench F1 on these solutions (ties: the one nearest 0.5). F1 changes
    only where a solution's interval opens or closes, so those points (and just past them) are all it tries."""
    intervals = [correct_interval(s, g) for s, g in zip(scores, golds, strict=True)]
    points = {0.5}
    for low, high in intervals:
        for x in (low, high):
            if math.isfinite(x):
                points |= {x, math.nextafter(x, math.inf)}
    n_wrong = sum(g >= 0 for g in golds) or 1
    n_right = sum(g < 0 for g in golds) or 1

    def f1(t: float) -> float:
        hits = [low < t <= high for low, high in intervals]
        a = sum(h for h, g in zip(hits, golds, strict=True) if g >= 0) / n_wrong
        b = sum(h for h, g in zip(hits, golds, strict=True) if g < 0) / n_right
        return 2 * a * b / (a + b) if a + b else 0.0

    return max(sorted(points), key=lambda t: (f1(t), -abs(t - 0.5)))


def evaluate(
    scorer: Any,
    items: Sequence[Annotated],
    *,
    threshold: float | None = None,
    tune_fraction: float = 0.5,
    batch_size: int = 8,
) -> dict[str, Any]:
    """Score every solution's steps and report error / correct accuracy and F1, with the threshold used and where it
    came from. With `threshold` None it is tuned on the held-out part and the figures are the rest's."""
    from ..train.metrics import first_error, processbench_f1  # torch: kept out of the CLI's parser

    if not items:
        raise ValueError("no annotated solutions to evaluate")
    scores = scorer.score_steps_batch([a.problem for a in items], [a.steps for a in items], batch_size=batch_size)
    golds = [a.first_error for a in items]
    for a, s in zip(items, scores, strict=True):
        if len(s) != len(a.steps):
            raise ValueError(f"{a.id}: {len(s)} step scores for {len(a.steps)} steps (a blank step was dropped?)")
    evaluated = list(range(len(items)))
    source = "given"
    if threshold is None:
        tune, evaluated = held_out(items, tune_fraction)
        if not tune or not evaluated:
            raise ValueError(f"{len(items)} solutions are too few to hold out a tuning part; pass a threshold")
        threshold = best_threshold([scores[i] for i in tune], [golds[i] for i in tune])
        source = f"tuned on {len(tune)} held-out solutions"
    predicted = [first_error(scores[i], threshold) for i in evaluated]
    result = processbench_f1(predicted, [golds[i] for i in evaluated])
    return {
        **result,
        "threshold": threshold,
        "threshold_source": source,
        "solutions": len(evaluated),
        "erroneous": sum(golds[i] >= 0 for i in evaluated),
        "correct": sum(golds[i] < 0 for i in evaluated),
        "predictions": {items[i].id: p for i, p in zip(evaluated, predicted, strict=True)},
    }


@dataclass
class ProcessBenchConfig:
    """`prmsearch eval processbench`: every flag is a field."""

    scorer: str = option(
        "", "the step scorer: a PRM saved by prmsearch (folder, hub id, embedded:prm), or a public PRM with --adapter"
    )
    data: str = option(
        "champ", "annotated solutions: 'champ' (the champ-dataset package), or a ProcessBench file / hub id"
    )
    source: str = option(
        "processbench", "how --data is read: processbench, or stepwise (`prmsearch label` output: its first errors)"
    )
    split: str = option("train", "the split of a hub dataset (ProcessBench's: gsm8k, math, olympiadbench, omnimath)")
    adapter: str | None = option(
        None, "read --scorer in this format (models.formats; default: the one its config declares)"
    )
    judge: str | None = option(
        None, "instead of --scorer, this causal LM as the step critic judge (judges.CriticJudge); threshold 0.5"
    )
    threshold: float | None = option(None, "flag a step below this P(correct) (None: tuned on a held-out half)")
    batch_size: int = option(8, "solutions scored per forward pass")
    output: str | None = option(None, "write the result here as JSON (None: print only)")
    device: str | None = option(None, "cpu or cuda (None: cuda when available)")

    CHOICES: ClassVar[dict[str, tuple[str, ...]]] = {"source": SOURCES}


def load_step_scorer(path: str, *, adapter: str | None = None, device: str | None = None) -> Any:
    """What `score_steps_batch` is called on: a prmsearch PRM, or a public PRM through its adapter."""
    from ..models.formats import load_reward_model
    from ..models.heads import RewardModelError

    model = load_reward_model(path, adapter, device=device)
    if model.kind != "prm":
        raise RewardModelError(f"{path} is not a PRM (its kind: {model.kind}); only a PRM scores steps")
    return model


def read_annotated(data: str, split: str = "train", source: str = "processbench") -> list[Annotated]:
    """The annotated solutions of `data`: the champ package, a ProcessBench file or hub id, or a stepwise file whose
    step labels end at a first error (`prmsearch label --method first-error --after-error unlabelled`, on
    held-out problems: the labels the policy's own rollouts found, as a PRM trained on such labels is evaluated)."""
    from ..data_builders.champ import read_champ
    from ..data_builders.processbench import read_processbench
    from ..data_builders.stepwise import read_stepwise

    if data == "champ":
        return annotated(read_champ(after_error="unlabelled"))
    if source == "stepwise":
        return annotated(read_stepwise(data, split=split))
    return annotated(read_processbench(data, after_error="unlabelled", split=split))


def run_processbench(cfg: ProcessBenchConfig, scorer: Any = None) -> dict[str, Any]:
    """Read, score, evaluate; the result (without per-solution predictions) is written to `cfg.output`."""
    import json

    if scorer is None and not (cfg.scorer or cfg.judge):
        raise ValueError("eval processbench needs --scorer (a PRM) or --judge (a causal LM)")
    if cfg.scorer and cfg.judge:
        raise ValueError("give --scorer or --judge, not both")
    items = read_annotated(cfg.data, cfg.split, cfg.source)
    if scorer is None and cfg.judge:
        from ..search.load import load_judge

        scorer = load_judge(cfg.judge, "critic", device=cfg.device, batch_size=cfg.batch_size)
    if scorer is None:
        scorer = load_step_scorer(cfg.scorer, adapter=cfg.adapter, device=cfg.device)
    judged = "invalid" in getattr(scorer, "stats", {})  # a judge: verdicts, a wrong step 0 and the others 1
    threshold = 0.5 if judged and cfg.threshold is None else cfg.threshold
    result = {
        "scorer": cfg.scorer or f"judge:{cfg.judge}",
        "data": cfg.data,
        **evaluate(scorer, items, threshold=threshold, batch_size=cfg.batch_size),
    }
    if judged:
        result["verdicts"], result["invalid_verdicts"] = scorer.stats["verdicts"], scorer.stats["invalid"]
    if cfg.output:
        write_atomic(cfg.output, json.dumps(result, indent=1) + "\n")
    return result


def format_result(result: dict[str, Any]) -> str:
    invalid = f"\n{result['invalid_verdicts']} of {result['verdicts']} verdicts invalid" if "verdicts" in result else ""
    return (
        f"| solutions | erroneous acc | correct acc | F1 | threshold |\n|---:|---:|---:|---:|---:|\n"
        f"| {result['solutions']} | {100 * result['error_accuracy']:.1f} | {100 * result['correct_accuracy']:.1f} | "
        f"{100 * result['processbench_f1']:.1f} | {result['threshold']:.4g} ({result['threshold_source']}) |" + invalid
    )
