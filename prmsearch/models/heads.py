"""Reward-model heads, in one registry: what each read-out serves, how its model is built and loaded, and what the
trainer and the search scorer must do for it. A new read-out is one entry here (and its module), not another branch
in the trainer, the saver and the scorer.

- `linear`: a new linear head on the backbone's hidden states; a sequence classifier read at the last real token
  (BT), or a token classifier read on every completion token (ORM) or at the step ends (PRM).
- `implicit` (PRM): no head, the LM's own log-likelihood ratio to a frozen copy of its start (`models.implicit`).
- `likelihood` (PRM, ORM): the log-probability of a step's (or the solution's) least likely token, scaled
  (`models.likelihood`).
These are the read-outs of prmsearch's own checkpoint format; the formats a reward model loads from, public PRMs
scored as published (Qwen2.5-Math-PRM, Math-Shepherd, RLHFlow) among them, are `models.formats.FORMATS`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from ..errors import PrmsearchError
from ..steps import StepFormat

KINDS = ("bt", "orm", "prm")
HEAD_OUTPUTS = {"ce": 2, "ce3": 3, "bce": 1, "mse": 1}  # a PRM head's width, by its loss


class RewardModelError(PrmsearchError):
    """A reward model asked to do what its kind does not do, or a checkpoint without prmsearch settings."""


# build(backbone, tokenizer, kind, step_format, outputs, beta, model_kwargs) -> model; the backbone is a folder or hub
# id (pretrained weights) or a `PretrainedConfig` (random weights)
Build = Callable[[Any, Any, str, "StepFormat | None", int, float, dict[str, Any]], Any]
Load = Callable[[str, str, dict[str, Any]], Any]  # load(path, kind, from_pretrained keywords) -> model


@dataclass(frozen=True)
class Head:
    """A read-out. `reads_lm`: it reads the LM's token probabilities, so rows carry `prompt_length`, batches are
    padded (not packed), LoRA does not apply, checkpoints are whole state dicts and the model saves itself.
    `incremental`: the search scorer can score a new step on top of its prefix's cached states (else it re-reads
    each path whole). `calibrated`: its scale is fitted to the training labels before the first step."""

    name: str
    kinds: tuple[str, ...]
    prm_losses: tuple[str, ...]
    reads_lm: bool
    incremental: bool
    calibrated: bool
    build: Build
    load: Load


def _linear_build(
    backbone: Any, tokenizer: Any, kind: str, fmt: StepFormat | None, outputs: int, beta: float, kwargs: dict
) -> Any:
    """A sequence (bt) or token classifier with a new `outputs`-wide head: pretrained weights from `backbone` (a
    path), in float32 unless `dtype` is given, or random ones from it (a config)."""
    from transformers import AutoConfig, PretrainedConfig

    auto = _linear_class(kind)
    pretrained = not isinstance(backbone, PretrainedConfig)
    # The head settings belong on the config: transformers 5 passes unknown `from_pretrained` keywords on to
    # the model's __init__ (a TypeError), so `classifier_dropout=0.0` cannot ride along as one.
    config = AutoConfig.from_pretrained(backbone, num_labels=outputs) if pretrained else backbone
    config.num_labels = outputs
    config.classifier_dropout = 0.0  # else the head drops 10% of hidden units while training
    if config.pad_token_id is None and tokenizer is not None:
        config.pad_token_id = tokenizer.pad_token_id  # the sequence head finds the last token by it
    if not pretrained:
        return auto.from_config(config, **kwargs)
    kwargs.setdefault("dtype", torch.float32)
    return auto.from_pretrained(backbone, config=config, ignore_mismatched_sizes=True, **kwargs)


def _linear_load(path: str, kind: str, kwargs: dict) -> Any:
    return _linear_class(kind).from_pretrained(path, **kwargs)


def _linear_class(kind: str) -> Any:
    from transformers import AutoModelForSequenceClassification, AutoModelForTokenClassification

    return AutoModelForSequenceClassification if kind == "bt" else AutoModelForTokenClassification


def _implicit_build(
    backbone: Any, tokenizer: Any, kind: str, fmt: StepFormat | None, outputs: int, beta: float, kwargs: dict
) -> Any:
    from .implicit import ImplicitPRM

    return ImplicitPRM.from_backbone(backbone, beta=beta, outputs=outputs, **kwargs)


def _implicit_load(path: str, kind: str, kwargs: dict) -> Any:
    from .implicit import ImplicitPRM

    return ImplicitPRM.from_pretrained(path, **kwargs)


def _likelihood_build(
    backbone: Any, tokenizer: Any, kind: str, fmt: StepFormat | None, outputs: int, beta: float, kwargs: dict
) -> Any:
    from .likelihood import LikelihoodRM

    markers = (fmt or StepFormat()).marker_ids(tokenizer)
    span = "step" if kind == "prm" else "solution"
    return LikelihoodRM.from_backbone(backbone, markers, outputs=outputs, span=span, **kwargs)


def _likelihood_load(path: str, kind: str, kwargs: dict) -> Any:
    from .likelihood import LikelihoodRM

    return LikelihoodRM.from_pretrained(path, **kwargs)


_ONE_LOGIT_A_STEP = ("ce", "bce", "mse")
HEADS: dict[str, Head] = {
    "linear": Head("linear", KINDS, tuple(HEAD_OUTPUTS), False, True, False, _linear_build, _linear_load),
    "implicit": Head("implicit", ("prm",), _ONE_LOGIT_A_STEP, True, False, False, _implicit_build, _implicit_load),
    "likelihood": Head(
        "likelihood", ("orm", "prm"), _ONE_LOGIT_A_STEP, True, True, True, _likelihood_build, _likelihood_load
    ),
}


def heads_for(kind: str) -> tuple[str, ...]:
    """The heads a reward model of `kind` can have."""
    return tuple(name for name, head in HEADS.items() if kind in head.kinds)


def get_head(name: str, kind: str, prm_loss: str = "ce") -> Head:
    """The head `name`, checked against the kind and PRM loss it is asked to serve: the one place that check lives."""
    if kind not in KINDS:
        raise RewardModelError(f"kind must be one of {KINDS}, got {kind!r}")
    if prm_loss not in HEAD_OUTPUTS:
        raise RewardModelError(f"prm_loss must be one of {tuple(HEAD_OUTPUTS)}, got {prm_loss!r}")
    if name not in HEADS:
        raise RewardModelError(f"head must be one of {tuple(HEADS)}, got {name!r}")
    head = HEADS[name]
    if kind not in head.kinds:
        raise RewardModelError(f"a {kind.upper()} has no {name} head; its heads: {', '.join(heads_for(kind))}")
    if kind == "prm" and prm_loss not in head.prm_losses:
        losses = f"{', '.join(head.prm_losses[:-1])} or {head.prm_losses[-1]}"
        raise RewardModelError(f"an {name} PRM is trained with prm_loss {losses}")
    return head


def num_outputs(kind: str, prm_loss: str = "ce") -> int:
    """The head's width: a PRM's follows its loss, BT and ORM heads have one logit."""
    return HEAD_OUTPUTS[prm_loss] if kind == "prm" else 1
