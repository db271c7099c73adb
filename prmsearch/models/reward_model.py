"""`RewardModel`: a transformers model with a reward head, plus everything needed to score exactly as it was trained.

One class for the three kinds, because they differ only in where the head is read and how its output becomes a
score:
- "bt": a sequence classifier (1 logit) read at the last real token of prompt + completion, minus the training-time
  centre;
- "orm": a token head (1 logit) whose sigmoid is read on every completion token and aggregated (mean / min / prod);
  or, with `head="likelihood"`, the log-probability of the completion's least likely token (`models.likelihood`);
- "prm": a token head read at the StepFormat's step ends, P(step is correct) per step; or, with
  `head="implicit"`, no head at all: the policy's own log-likelihood ratio to its start (`models.implicit`); or,
  with `head="likelihood"`, the log-probability of each step's least likely token (`models.likelihood`).

The kind, the StepFormat, the PRM loss (which fixes the head's width and how logits become a probability), the ORM
aggregation and the centre are stored in the model's config under `prmsearch`, so `from_pretrained` gives back a
scorer that tokenizes and reads exactly as training did. Read-out positions come from the attention mask and
position ids from its cumulative sum, so left or right padding cannot change a score.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from ..devices import pick_device
from ..errors import loading
from ..scoring import STEP_AGGREGATIONS
from ..shipped import resolve
from ..steps import EncodedSteps, StepFormat
from .heads import HEADS, RewardModelError, get_head, num_outputs

TOKEN_AGGREGATIONS = ("mean", "min", "prod")  # an ORM's token probabilities to one score (`aggregate_tokens`)


class RewardModel(torch.nn.Module):
    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        kind: str,
        step_format: StepFormat | None = None,
        *,
        prm_loss: str = "ce",
        aggregation: str = "mean",
        center: float = 0.0,
        head: str = "linear",
        step_aggregation: str | None = None,
    ) -> None:
        super().__init__()
        get_head(head, kind, prm_loss)
        if aggregation not in TOKEN_AGGREGATIONS:
            raise RewardModelError(f"aggregation must be one of {TOKEN_AGGREGATIONS}, got {aggregation!r}")
        if step_aggregation is not None and step_aggregation not in STEP_AGGREGATIONS:
            raise RewardModelError(f"step_aggregation must be one of {STEP_AGGREGATIONS}, got {step_aggregation!r}")
        self.model, self.tokenizer, self.kind = model, tokenizer, kind
        self.step_format = step_format or StepFormat()
        self.prm_loss, self.aggregation, self.center = prm_loss, aggregation, float(center)
        self.head = head  # a name in `heads.HEADS`
        # A PRM's step scores to a solution's score, as it was trained (and evaluated) for: what scorers use when
        # not told otherwise (None in a model saved before it was recorded: `scoring.DEFAULT_STEP_AGGREGATION`).
        self.step_aggregation = step_aggregation

    @property
    def reads_lm(self) -> bool:
        """Whether the head reads the LM's token probabilities (`heads.Head.reads_lm`)."""
        return HEADS[self.head].reads_lm

    # ---- construction -------------------------------------------------------------------------------------------

    @staticmethod
    def num_outputs(kind: str, prm_loss: str = "ce") -> int:
        return num_outputs(kind, prm_loss)

    @classmethod
    def from_backbone(
        cls,
        backbone: Any,
        tokenizer: Any,
        kind: str,
        step_format: StepFormat | None = None,
        *,
        prm_loss: str = "ce",
        aggregation: str = "mean",
        head: str = "linear",
        beta: float = 1.0,
        step_aggregation: str | None = None,
        **model_kwargs: Any,
    ) -> RewardModel:
        """A new reward head on a causal-LM backbone: a hub id or folder (pretrained weights), or a
        `PretrainedConfig` (random weights: tiny models for tests and CPU recipes).

        A folder may hold a causal LM (its decoder is loaded, the head is new and `lm_head` is dropped) or a model
        saved by `save_pretrained` (its head too is loaded when the width matches, and is new when it does not, e.g.
        an ORM trained on from a 2-class PRM). Pretrained weights load in float32 unless `dtype` is given: they are
        the weights the optimizer updates, and `bf16` training keeps float32 masters under autocast.

        `head="implicit"` keeps the causal LM whole, with a frozen copy as its reference (`models.implicit`);
        `head="likelihood"` keeps it whole and reads its token probabilities per step (PRM) or per solution (ORM)
        (`models.likelihood`)."""
        from transformers import PretrainedConfig

        build = get_head(head, kind, prm_loss).build  # checked before the weights load
        if not isinstance(backbone, PretrainedConfig):
            backbone = resolve(backbone)
        model = build(backbone, tokenizer, kind, step_format, num_outputs(kind, prm_loss), beta, model_kwargs)
        return cls(
            model,
            tokenizer,
            kind,
            step_format,
            prm_loss=prm_loss,
            aggregation=aggregation,
            head=head,
            step_aggregation=step_aggregation,
        )

    def settings(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "step_format": self.step_format.to_dict(),
            "prm_loss": self.prm_loss,
            "aggregation": self.aggregation,
            "center": self.center,
            "head": self.head,
            "step_aggregation": self.step_aggregation,
        }

    def save_pretrained(self, path: str, **kwargs: Any) -> None:
        write_settings(self.model, self)
        self.model.save_pretrained(path, **kwargs)
        if self.tokenizer is not None:
            self.tokenizer.save_pretrained(path)

    @classmethod
    def from_pretrained(
        cls, path: str, *, device: str | torch.device | None = None, dtype: torch.dtype | None = None, **kwargs: Any
    ) -> RewardModel:
        """Load a model saved by `save_pretrained` (a folder, a hub id or an embedded name such as
        `embedded:prm`), ready to score: eval mode, on `device`."""
        from transformers import AutoConfig, AutoTokenizer

        path = resolve(path)
        config = AutoConfig.from_pretrained(path)
        settings = getattr(config, "prmsearch", None)
        if not isinstance(settings, dict) or "kind" not in settings:
            raise RewardModelError(
                f"{path} has no prmsearch settings in its config: not saved by RewardModel.save_pretrained "
                "(prmsearch.models.load_reward_model reads the other formats too: TRL's, public PRMs')"
            )
        head = settings.get("head", "linear")
        load = get_head(head, settings["kind"], settings.get("prm_loss", "ce")).load
        with loading(path, "reward model"):
            model = load(path, settings["kind"], {"dtype": dtype, **kwargs})
            tokenizer = AutoTokenizer.from_pretrained(path)
        rm = cls(
            model,
            tokenizer,
            settings["kind"],
            StepFormat(**settings["step_format"]),
            prm_loss=settings.get("prm_loss", "ce"),
            aggregation=settings.get("aggregation", "mean"),
            center=settings.get("center", 0.0),
            head=head,
            step_aggregation=settings.get("step_aggregation"),
        )
        if device is not None:
            rm.to(pick_device(device))
        return rm.eval()

    # ---- the forward pass -----------------------------------------------------------------------------------------

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, prompt_length: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Head outputs at every position, [batch, length, outputs]; position ids follow the attention mask, so a
        padded row sees the same positions as the same row unpadded. An implicit or likelihood head needs
        `prompt_length` (each row's prompt tokens): only completion tokens count."""
        if self.reads_lm:
            if prompt_length is None:
                raise RewardModelError(f"a reward model with the {self.head} head needs each row's prompt_length")
            return self.model(input_ids, attention_mask, prompt_length).logits
        position_ids = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)
        base = getattr(self.model, self.model.base_model_prefix)
        hidden = base(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids).last_hidden_state
        return self.model.score(hidden)

    def encode(self, prompt: str, completion: str | Sequence[str]) -> EncodedSteps:
        """The model's input for a solution; refused when it is longer than the model reads."""
        steps = self.step_format.split(completion) if isinstance(completion, str) else list(completion)
        encoded = self.step_format.encode(self.tokenizer, prompt, steps)
        self.check_length(len(encoded.input_ids), "prompt + completion")
        return encoded

    @property
    def max_length(self) -> int | None:
        """The most tokens the backbone reads (its max_position_embeddings); None when its config does not say."""
        n = getattr(self.model.config, "max_position_embeddings", None)
        return n if isinstance(n, int) and n > 0 else None

    def check_length(self, tokens: int, what: str) -> None:
        """Refuse an input longer than the position embeddings: past them a model scores noise without a word."""
        if self.max_length is not None and tokens > self.max_length:
            raise RewardModelError(
                f"{what} is {tokens} tokens, more than the {self.max_length} this reward model reads "
                "(max_position_embeddings); shorten it (in a search: a lower --max-tokens) or use a model that reads "
                "more"
            )

    def _batch(self, encoded: list[EncodedSteps]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        device = next(self.model.parameters()).device
        width = max(len(e.input_ids) for e in encoded)
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        ids = torch.full((len(encoded), width), pad, dtype=torch.long)
        mask = torch.zeros((len(encoded), width), dtype=torch.long)
        for row, e in enumerate(encoded):  # right padding; forward() makes the side irrelevant
            ids[row, : len(e.input_ids)] = torch.tensor(e.input_ids)
            mask[row, : len(e.input_ids)] = 1
        prompt_length = torch.tensor([e.prompt_length for e in encoded], device=device)
        return ids.to(device), mask.to(device), prompt_length

    def probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        """P(correct) from head outputs [..., outputs] -> [...]. For the 3-class head it is 1 - P(-1): a neutral
        step (PRM800K's 0) is not an error."""
        if self.kind == "prm" and self.prm_loss == "ce":
            return logits.float().softmax(-1)[..., 1]
        if self.kind == "prm" and self.prm_loss == "ce3":
            return 1.0 - logits.float().softmax(-1)[..., 0]
        return torch.sigmoid(logits.float()[..., 0])

    # ---- scoring --------------------------------------------------------------------------------------------------

    @torch.no_grad()
    def score_batch(self, prompts: Sequence[str], completions: Sequence[str], batch_size: int = 16) -> list[float]:
        """One score per (prompt, completion): BT reward (centred) or ORM aggregate probability."""
        if self.kind == "prm":
            raise RewardModelError("a PRM scores steps: use score_steps / score_steps_batch")
        if len(prompts) != len(completions):
            raise ValueError(f"{len(prompts)} prompts but {len(completions)} completions")
        self.eval()
        scores: list[float] = []
        for start in range(0, len(prompts), batch_size):
            encoded = [
                self.encode(p, c)
                for p, c in zip(
                    prompts[start : start + batch_size], completions[start : start + batch_size], strict=True
                )
            ]
            for row, e in enumerate(encoded):
                if len(e.input_ids) <= e.prompt_length and self.kind == "orm":
                    raise RewardModelError(
                        f"completion {start + row} is empty: an ORM scores completion tokens and there are none; "
                        "leave empty completions out (or score them as you see fit)"
                    )
            ids, mask, prompt_length = self._batch(encoded)
            logits = self(ids, mask, prompt_length)
            for row, e in enumerate(encoded):
                last = len(e.input_ids) - 1
                if self.kind == "bt":
                    scores.append(logits[row, last, 0].float().item() - self.center)
                    continue
                probs = torch.sigmoid(logits[row, e.prompt_length : last + 1, 0].float())  # completion tokens only
                scores.append(aggregate_tokens(probs, self.aggregation))
        return scores

    def score(self, prompt: str, completion: str) -> float:
        return self.score_batch([prompt], [completion])[0]

    @torch.no_grad()
    def score_steps_batch(
        self, prompts: Sequence[str], steps: Sequence[Sequence[str]], batch_size: int = 16
    ) -> list[list[float]]:
        """P(correct) of every step, each solution in one forward pass; a whitespace-only step (never encoded)
        gets no score, so the lists follow `StepFormat.encode`'s `kept`."""
        if self.kind != "prm":
            raise RewardModelError(f"a {self.kind.upper()} model scores whole completions: use score / score_batch")
        if len(prompts) != len(steps):
            raise ValueError(f"{len(prompts)} prompts but {len(steps)} step lists")
        self.eval()
        out: list[list[float]] = []
        for start in range(0, len(prompts), batch_size):
            encoded = [
                self.encode(p, list(s))
                for p, s in zip(prompts[start : start + batch_size], steps[start : start + batch_size], strict=True)
            ]
            ids, mask, prompt_length = self._batch(encoded)
            probs = self.probabilities(self(ids, mask, prompt_length))
            out += [probs[row, e.step_ends].tolist() for row, e in enumerate(encoded)]
        return out

    def score_steps(self, prompt: str, steps: Sequence[str]) -> list[float]:
        return self.score_steps_batch([prompt], [steps])[0]


def write_settings(model: Any, rm: RewardModel) -> None:
    """The one place the prmsearch settings (kind, StepFormat, PRM loss, ORM aggregation, BT centre, head) are written
    into a transformers model's config, where `RewardModel.from_pretrained` reads them back."""
    model.config.prmsearch = rm.settings()


def aggregate_tokens(probs: torch.Tensor, how: str) -> float:
    """An ORM's score from its completion tokens' probabilities (`TOKEN_AGGREGATIONS`); step scores are aggregated
    by `scoring.aggregate_steps`."""
    if probs.numel() == 0:
        return 0.0
    if how == "mean":
        return probs.mean().item()
    if how == "min":
        return probs.min().item()
    return probs.double().log().sum().exp().item()  # prod, in log space: hundreds of tokens underflow otherwise
