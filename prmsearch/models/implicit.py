"""`ImplicitPRM`: a process reward model that reads the policy's own token probabilities.

The PRM is a causal LM πθ started from a policy and a frozen copy πref of that start. Its logit after completion
token t is

    q_t = β · Σ_{s ≤ t, s in the completion} (log πθ(y_s | y_<s) − log πref(y_s | y_<s)) + bias,

the implicit PRM of Yuan et al. 2024 ("Free Process Rewards without Process Labels") and PRIME. Trained with the
ordinary PRM losses at step ends, it learns to lower the likelihood of the tokens that make a step wrong.

Why it exists beside the linear head: a linear head reads the hidden state at a step's last token, and a causal
model can only attend to earlier positions' lower layers. Where the answer a step writes is computed in the policy's
last layers at the positions *before* the written digits (a small policy doing arithmetic), a step-end head cannot
see it and must re-learn the task in fewer layers; the implicit PRM reads each token's probability exactly where the
policy's full depth computed it. On the embedded task it is the difference between a PRM that ranks a problem's
solutions at chance and one that finds their first error (issue 12's note).

Prompt tokens never count (`prompt_length` says where each completion starts): their likelihood says nothing
about a step and would only add noise to every q.
"""

from __future__ import annotations

import copy
import json
import os
from typing import Any

import torch

REF = "ref"  # the subfolder holding πref
STATE = "implicit_prm.json"  # beta and the learnt bias


class ImplicitPRM(torch.nn.Module):
    """πθ and πref with the q-value read-out; `forward` returns per-position logits like a token classifier's."""

    # The Trainer's resume reads this; a checkpoint stores a tied embedding once and the tie holds after loading.
    _keys_to_ignore_on_save = None

    def __init__(self, policy: Any, ref: Any, *, beta: float = 1.0, outputs: int = 2, bias: float = 0.0) -> None:
        super().__init__()
        if outputs not in (1, 2):
            raise ValueError("an implicit PRM has a 1-logit (bce, mse) or a 2-class (ce) read-out")
        self.policy, self.ref = policy, ref.eval()
        for p in self.ref.parameters():
            p.requires_grad_(False)
        self.beta, self.outputs = float(beta), outputs
        self.bias = torch.nn.Parameter(torch.tensor(float(bias)))
        self.config = policy.config  # what the Trainer and `RewardModel.max_length` read

    @classmethod
    def from_backbone(cls, backbone: Any, *, beta: float, outputs: int, **model_kwargs: Any) -> ImplicitPRM:
        """πθ = πref = a causal LM: a folder or hub id (pretrained) or a `PretrainedConfig` (random weights)."""
        from transformers import AutoModelForCausalLM, PretrainedConfig

        if isinstance(backbone, PretrainedConfig):
            policy = AutoModelForCausalLM.from_config(backbone, **model_kwargs)
        else:
            model_kwargs.setdefault("dtype", torch.float32)
            policy = AutoModelForCausalLM.from_pretrained(backbone, **model_kwargs)
        return cls(policy, copy.deepcopy(policy), beta=beta, outputs=outputs)

    @classmethod
    def from_pretrained(cls, path: str, **kwargs: Any) -> ImplicitPRM:
        from transformers import AutoModelForCausalLM

        state = json.loads(open(os.path.join(path, STATE), encoding="utf-8").read())
        policy = AutoModelForCausalLM.from_pretrained(path, **kwargs)
        ref = AutoModelForCausalLM.from_pretrained(os.path.join(path, REF), **kwargs)
        return cls(policy, ref, beta=state["beta"], outputs=state["outputs"], bias=state["bias"])

    def save_pretrained(self, path: str, **kwargs: Any) -> None:
        """πθ in `path` (its config carries the prmsearch settings), πref in `path/ref`, beta and bias beside."""
        self.policy.save_pretrained(path, **kwargs)
        self.ref.save_pretrained(os.path.join(path, REF), **kwargs)
        state = {"beta": self.beta, "outputs": self.outputs, "bias": self.bias.item()}
        with open(os.path.join(path, STATE), "w", encoding="utf-8") as f:
            f.write(json.dumps(state, indent=1) + "\n")

    def get_input_embeddings(self) -> Any:
        return self.policy.get_input_embeddings()

    def train(self, mode: bool = True) -> ImplicitPRM:
        super().train(mode)
        self.ref.eval()  # πref is a fixed function, dropout off even while πθ trains
        return self

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

        mask = attention_mask.long()
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        theta = token_logprobs(self.policy, input_ids, mask, positions)
        with torch.no_grad():
            ref = token_logprobs(self.ref, input_ids, mask, positions)
        # token s counts when it is a real completion token: position >= prompt length
        counts = (positions >= prompt_length.to(positions.device)[:, None]) & mask.bool()
        ratio = (theta - ref) * counts
        q = self.beta * ratio.cumsum(-1) + self.bias
        return TokenClassifierOutput(logits=step_logits(q, self.outputs))


def token_logprobs(model: Any, ids: torch.Tensor, mask: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """log p(token s | tokens < s) under a causal LM at every position s (0 at the first), [batch, length], in
    float32: what the implicit and likelihood PRMs read."""
    logits = model(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=False).logits
    logp = torch.log_softmax(logits[:, :-1].float(), -1).gather(-1, ids[:, 1:, None]).squeeze(-1)
    return torch.cat([torch.zeros_like(logp[:, :1]), logp], 1)


def step_logits(q: torch.Tensor, outputs: int) -> torch.Tensor:
    """A logit q [...] as head outputs [..., outputs]: itself for a 1-logit read-out (bce, mse, orm), or the 2-class
    pair (0, q) whose softmax is sigmoid(q) (ce): how the implicit and likelihood heads look like a linear one."""
    return q[..., None] if outputs == 1 else torch.stack([torch.zeros_like(q), q], -1)
