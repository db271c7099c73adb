"""`LikelihoodRM`: a reward model that scores a step (PRM) or a whole solution (ORM) by how sure a fine-tuned
policy is of its tokens.

The model is a causal LM πθ started from a policy. A PRM step's logit, read at the step's marker, is

    q = scale · min_{s in the step, s not a marker token} log πθ(y_s | y_<s) + bias,

the log-probability of the step's least likely token; an ORM's (`span="solution"`) is the same minimum over the
whole completion, the same value at every completion token, so the ORM's per-token outcome loss and its
aggregation see one number per solution. Trained with the ordinary PRM losses at step ends, πθ learns
to put less probability on the tokens that make a step wrong and more on those that make it right, so q sharpens
as the LM does; the read-out is the policy's own confidence, sharpened by the labels.

Why it exists beside the linear and implicit heads (`models.implicit`): on a small policy doing arithmetic, a step's
result is computed in the last layers at the positions *before* its digits, where no step-end head can read it
(issue 12's note); the token probability is exactly that computation's output. The implicit PRM reads the same
probabilities as a ratio to a frozen reference, which starts at zero for every step and learns slowly; this head
starts as a good detector (the untrained policy's step minimum separates the embedded task's automatic labels with
AUROC 0.97) and needs no reference copy. Two details make the training work:

- marker tokens never count: the marker after the last step (where the policy saw its end-of-sequence) is unlikely
  under any policy and would dominate every final step's minimum;
- `calibrate` fits scale and bias to the training labels before the first step (a logistic regression on the
  untrained minimum), so the LM's gradients go into telling steps apart rather than into shifting every
  probability towards the label prior, which wrecks the policy's arithmetic.

Read a PRM at step ends only: at other positions the value is the minimum over the whole step.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from typing import Any

import torch

from .implicit import step_logits, token_logprobs

STATE = "likelihood_head.json"  # scale, bias, span and the marker's token ids
SPANS = ("step", "solution")


class LikelihoodRM(torch.nn.Module):
    """πθ with the minimum read-out over a step (PRM) or the solution (ORM); `forward` returns per-position logits
    like a token classifier's."""

    _keys_to_ignore_on_save = None

    def __init__(
        self,
        policy: Any,
        marker_ids: list[int],
        *,
        outputs: int = 2,
        scale: float = 1.0,
        bias: float = 0.0,
        span: str = "step",
    ) -> None:
        super().__init__()
        if outputs not in (1, 2):
            raise ValueError("a likelihood head has a 1-logit (bce, mse, orm) or a 2-class (ce) read-out")
        if not marker_ids:
            raise ValueError("a likelihood head needs a step marker with at least one token")
        if span not in SPANS:
            raise ValueError(f"span must be one of {SPANS}, got {span!r}")
        self.policy, self.outputs, self.marker_ids, self.span = policy, outputs, list(marker_ids), span
        self.scale = torch.nn.Parameter(torch.tensor(float(scale)))
        self.bias = torch.nn.Parameter(torch.tensor(float(bias)))
        self.config = policy.config

    @classmethod
    def from_backbone(
        cls, backbone: Any, marker_ids: list[int], *, outputs: int, span: str = "step", **model_kwargs: Any
    ) -> LikelihoodRM:
        """πθ = a causal LM: a folder or hub id (pretrained) or a `PretrainedConfig` (random weights)."""
        from transformers import AutoModelForCausalLM, PretrainedConfig

        if isinstance(backbone, PretrainedConfig):
            policy = AutoModelForCausalLM.from_config(backbone, **model_kwargs)
        else:
            model_kwargs.setdefault("dtype", torch.float32)
            policy = AutoModelForCausalLM.from_pretrained(backbone, **model_kwargs)
        return cls(policy, marker_ids, outputs=outputs, span=span)

    @classmethod
    def from_pretrained(cls, path: str, **kwargs: Any) -> LikelihoodRM:
        from transformers import AutoModelForCausalLM

        state = json.loads(open(os.path.join(path, STATE), encoding="utf-8").read())
        policy = AutoModelForCausalLM.from_pretrained(path, **kwargs)
        return cls(
            policy,
            state["marker_ids"],
            outputs=state["outputs"],
            scale=state["scale"],
            bias=state["bias"],
            span=state["span"],
        )

    def save_pretrained(self, path: str, **kwargs: Any) -> None:
        """πθ in `path` (its config carries the prmsearch settings), the read-out beside it."""
        self.policy.save_pretrained(path, **kwargs)
        state = {
            "scale": self.scale.item(),
            "bias": self.bias.item(),
            "outputs": self.outputs,
            "span": self.span,
            "marker_ids": self.marker_ids,
        }
        with open(os.path.join(path, STATE), "w", encoding="utf-8") as f:
            f.write(json.dumps(state, indent=1) + "\n")

    def get_input_embeddings(self) -> Any:
        return self.policy.get_input_embeddings()

    def step_minimum(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, prompt_length: torch.Tensor
    ) -> torch.Tensor:
        """[batch, length]: at every position, the least log-probability of a non-marker completion token of its
        step (0 for a step with none). A step is the tokens after one marker end up to the next; with
        `span="solution"` the whole row is one step."""
        mask = attention_mask.long()
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        logp = token_logprobs(self.policy, input_ids, mask, positions)
        markers = torch.tensor(self.marker_ids, device=input_ids.device)
        is_marker = torch.isin(input_ids, markers)
        counts = (positions >= prompt_length.to(positions.device)[:, None]) & mask.bool() & ~is_marker
        ends = (input_ids == markers[-1]).long()
        step = ends.cumsum(-1) - ends  # the step each position belongs to: its marker end closes it
        if self.span == "solution":
            step = torch.zeros_like(step)
        lowest = torch.zeros(logp.shape[0], logp.shape[1] + 1, dtype=logp.dtype, device=logp.device)
        lowest = lowest.scatter_reduce(1, step, torch.where(counts, logp, 0.0), reduce="amin", include_self=True)
        return lowest.gather(1, step)

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        prompt_length: torch.Tensor,
        use_cache: bool = False,
        **_: Any,
    ) -> Any:
        """Logits [batch, length, outputs] for right- or left-padded rows; `prompt_length` [batch] counts each
        row's prompt tokens (from its first real token)."""
        from transformers.modeling_outputs import TokenClassifierOutput

        return TokenClassifierOutput(logits=self.read_out(self.step_minimum(input_ids, attention_mask, prompt_length)))

    def read_out(self, minimum: torch.Tensor) -> torch.Tensor:
        """Step minima [...] -> logits [..., outputs]: what `forward` returns and the search scorer reads."""
        q = self.scale * minimum + self.bias
        return step_logits(q, self.outputs)

    @torch.no_grad()
    def calibrate(self, batches: Iterable[dict[str, torch.Tensor]]) -> dict[str, float]:
        """Fit scale and bias to the labels of `batches` (collated training rows: input_ids, attention_mask,
        prompt_length, labels with -100 off the step ends) by logistic regression on the untrained step minimum; an
        ORM's rows count once each, at their last labelled token. Returns the fit; a fit that does not separate
        (scale <= 0) keeps the defaults."""
        device = self.scale.device
        xs, ys = [], []
        for batch in batches:
            m = self.step_minimum(
                batch["input_ids"].to(device), batch["attention_mask"].to(device), batch["prompt_length"].to(device)
            )
            labels = batch["labels"].to(device)
            at = labels != -100
            if self.span == "solution":
                last = (at.long() * torch.arange(1, at.shape[1] + 1, device=device)).argmax(-1)
                at = at & (torch.arange(at.shape[1], device=device)[None, :] == last[:, None])
            xs.append(m[at].double())
            ys.append(labels[at].double().clamp(0, 1))
        if not xs or not torch.cat(xs).numel():
            return {"scale": self.scale.item(), "bias": self.bias.item(), "examples": 0}
        x, y = torch.cat(xs).clamp(min=-50), torch.cat(ys)
        with torch.enable_grad():
            a = torch.tensor(1.0, dtype=torch.float64, device=device, requires_grad=True)
            b = torch.tensor(0.0, dtype=torch.float64, device=device, requires_grad=True)
            opt = torch.optim.LBFGS([a, b], max_iter=200, line_search_fn="strong_wolfe")

            def loss() -> torch.Tensor:
                opt.zero_grad()
                value = torch.nn.functional.binary_cross_entropy_with_logits(a * x + b, y)
                value.backward()
                return value

            opt.step(loss)
        if torch.isfinite(a) and torch.isfinite(b) and a.item() > 0:
            self.scale.fill_(a.item())
            self.bias.fill_(b.item())
        return {"scale": self.scale.item(), "bias": self.bias.item(), "examples": int(x.numel())}
