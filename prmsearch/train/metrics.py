"""Evaluation metrics of the three kinds, on plain tensors or lists (no framework), so they can be tested exactly.

Conventions: a BT pair whose scores tie counts as wrong (a model that scores everything equal must get 0, not 50 %);
for step labels, the "error" class is label 0 (hard) or < 0.5 (soft), and F1 is computed for that class, the one a
PRM exists to find; -1 is "no error" in first-error indices (ProcessBench).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch


def pair_accuracy(chosen: torch.Tensor, rejected: torch.Tensor) -> float:
    """Share of pairs with r_c > r_r strictly: ties are wrong."""
    return (chosen > rejected).float().mean().item() if chosen.numel() else 0.0


def mean_margin(chosen: torch.Tensor, rejected: torch.Tensor) -> float:
    return (chosen - rejected).float().mean().item() if chosen.numel() else 0.0


def step_metrics(probs: torch.Tensor, labels: torch.Tensor, threshold: float = 0.5) -> dict[str, float]:
    """Step accuracy and precision / recall / F1 of the error class. `probs` is P(step is correct) per step;
    `labels` are 0/1 (or soft, thresholded at 0.5)."""
    if probs.numel() == 0:
        return {"step_accuracy": 0.0, "error_precision": 0.0, "error_recall": 0.0, "error_f1": 0.0}
    pred_error = probs < threshold
    gold_error = labels.float() < 0.5
    tp = (pred_error & gold_error).sum().item()
    precision = tp / max(pred_error.sum().item(), 1)
    recall = tp / max(gold_error.sum().item(), 1)
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    accuracy = (pred_error == gold_error).float().mean().item()
    return {"step_accuracy": accuracy, "error_precision": precision, "error_recall": recall, "error_f1": f1}


def first_error(step_probs: Sequence[float], threshold: float = 0.5) -> int:
    """Index of the first step judged wrong, -1 if none (ProcessBench's convention)."""
    return next((i for i, p in enumerate(step_probs) if p < threshold), -1)


def processbench_f1(predicted: Sequence[int], gold: Sequence[int]) -> dict[str, float]:
    """ProcessBench: accuracy (exact first-error index) on erroneous solutions (gold >= 0) and on correct ones
    (gold == -1, the prediction must be -1 too), and their harmonic mean."""
    if len(predicted) != len(gold):
        raise ValueError(f"{len(predicted)} predictions for {len(gold)} gold indices")
    wrong = [p == g for p, g in zip(predicted, gold, strict=True) if g >= 0]
    right = [p == -1 for p, g in zip(predicted, gold, strict=True) if g < 0]
    acc_wrong = sum(wrong) / len(wrong) if wrong else 0.0
    acc_right = sum(right) / len(right) if right else 0.0
    f1 = 2 * acc_wrong * acc_right / (acc_wrong + acc_right) if acc_wrong + acc_right else 0.0
    return {"error_accuracy": acc_wrong, "correct_accuracy": acc_right, "processbench_f1": f1}


def within_group_pair_accuracy(
    scores: Sequence[float], labels: Sequence[bool], groups: Sequence[Any]
) -> tuple[float | None, int]:
    """The share of (right, wrong) pairs of the same group (a problem's samples) scored in that order, ties counted
    half, and how many pairs there are (None when no group has both). What best-of-N needs of a reward model, and
    what a pooled AUROC hides: a model that scores each problem's difficulty and not its solutions has a high AUROC
    and a pair accuracy of 0.5."""
    by_group: dict[Any, tuple[list[float], list[float]]] = {}
    for score, label, group in zip(scores, labels, groups, strict=True):
        by_group.setdefault(group, ([], []))[0 if label else 1].append(score)
    wins = pairs = 0.0
    for right, wrong in by_group.values():
        for r in right:
            for w in wrong:
                pairs += 1
                wins += 1.0 if r > w else 0.5 if r == w else 0.0
    return (wins / pairs if pairs else None), int(pairs)


def binary_accuracy(probs: torch.Tensor, labels: torch.Tensor, threshold: float = 0.5) -> float:
    return ((probs >= threshold) == (labels >= 0.5)).float().mean().item() if probs.numel() else 0.0


def auroc(scores: torch.Tensor, labels: torch.Tensor) -> float:
    """Area under the ROC curve by the rank-sum (Mann-Whitney) formula, ties counted half; 0.5 if one class is
    missing (undefined: reported as chance rather than raising mid-evaluation)."""
    scores, labels = scores.double().flatten(), labels.flatten() >= 0.5
    n_pos, n_neg = labels.sum().item(), (~labels).sum().item()
    if n_pos == 0 or n_neg == 0:
        return 0.5
    order = scores.argsort()
    ranks = torch.empty_like(scores)
    ranks[order] = torch.arange(1, len(scores) + 1, dtype=scores.dtype)
    for value in scores.unique():  # average ranks of ties
        tied = scores == value
        if tied.sum() > 1:
            ranks[tied] = ranks[tied].mean()
    return ((ranks[labels].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)).item()


def calibration_bins(probs: torch.Tensor, labels: torch.Tensor, bins: int = 10) -> list[dict[str, float | None]]:
    """Per equal-width bin of the predicted P(label = 1): its bounds, count, mean confidence and accuracy (the share
    of labels that are 1; None for an empty bin). The reliability diagram draws these; the ECE is their gap."""
    probs, labels = probs.double().flatten(), (labels.flatten() >= 0.5).double()
    index = torch.clamp((probs * bins).long(), max=bins - 1)  # p = 1.0 goes in the last bin
    out: list[dict[str, float | None]] = []
    for b in range(bins):
        inside = index == b
        n = int(inside.sum())
        out.append(
            {
                "low": b / bins,
                "high": (b + 1) / bins,
                "count": n,
                "confidence": probs[inside].mean().item() if n else None,
                "accuracy": labels[inside].mean().item() if n else None,
            }
        )
    return out


def expected_calibration_error(probs: torch.Tensor, labels: torch.Tensor, bins: int = 10) -> float:
    """ECE with `bins` equal-width bins of the predicted probability: Σ_b (n_b / N) · |accuracy_b - confidence_b|,
    where a bin's confidence is its mean P(label = 1) and its accuracy the share of labels that are 1."""
    return ece_of(calibration_bins(probs, labels, bins))


def ece_of(bins: list[dict[str, float | None]]) -> float:
    """The ECE of `calibration_bins`' bins: their count-weighted gap between accuracy and confidence."""
    total = sum(b["count"] for b in bins)  # type: ignore[misc]
    if not total:
        return 0.0
    return sum(b["count"] * abs(b["accuracy"] - b["confidence"]) for b in bins if b["count"]) / total  # type: ignore[operator]
