"""Adapters for public process reward models: each is a StepFormat plus a read-out, not a copy of its scoring code.
Each is a format in `models.formats.FORMATS`, which loads it (`load_reward_model`, `load_adapter`).

- `qwen2.5-math-prm` (Qwen/Qwen2.5-Math-PRM-7B, -72B): a chat of system prompt, user = problem, assistant = every
  step followed by `<extra_0>`; read-out: softmax of the 2-way head at each `<extra_0>`, P(class 1).
- `math-shepherd` (peiyi9979/math-shepherd-mistral-7b-prm): "{problem} Step 1: ... ки\\nStep 2: ... ки" for a
  causal LM; read-out: the LM logits of '+' and '-' at each `ки`, softmax over the two, P('+').
- `rlhflow` (RLHFlow/Llama3.1-8B-PRM-Deepseek-Data, -Mistral-Data): a chat where user = problem + " " + step 1,
  assistant = "+", user = step 2, assistant = "+", ...; read-out: the LM logits of '+' and '-' where each assistant
  answer is predicted, P('+').

Every adapter scores like `RewardModel` does for a PRM: `score_steps` / `score_steps_batch`, each solution in one
forward pass, read-out positions known as exact token indices when the ids are built (never found afterwards by
searching the ids for a marker, so a step that contains "<extra_0>" or "ки" cannot forge a boundary), position
ids from the attention mask so padding on either side leaves every score unchanged.

Why the ids are built the way they are:
- Chat formats (Qwen, RLHFlow) are encoded message by message: the tokenizer's own chat template renders the
  conversation with placeholders for the contents, the template text between them is tokenized with special tokens
  (it is trusted), and every content is tokenized with special-token parsing off. The read-out positions then fall
  out of the lengths. This equals `apply_chat_template` on the same conversation whenever the template text around
  a content ends at a pre-tokenizer boundary (true for the Qwen2 and Llama-3 tokenizers, whose regex keeps runs of
  newlines apart); each adapter checks it once on a sample when it is built and raises if not.
- Math-Shepherd is plain text on a SentencePiece tokenizer, which puts "▁" in front of every separately tokenized
  piece: `StepFormat.encode` would give the model "▁▁Step" where it was trained on "Step". So the text is built
  from its StepFormat (prompt_separator " ", marker " ки", gap "\\n"), tokenized once as the model card does, and
  each boundary is located by the character offset where this code put its tag; the token there must be the tag.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn
from transformers.modeling_outputs import TokenClassifierOutput
from transformers.models.qwen2.modeling_qwen2 import Qwen2Model, Qwen2PreTrainedModel

from ..errors import FormatError
from ..steps import EncodedSteps, StepFormat


class AdapterError(FormatError):
    """A checkpoint or tokenizer that does not follow the public format its adapter reads."""


class Qwen2ForProcessRewardModel(Qwen2PreTrainedModel):
    """The architecture of Qwen2.5-Math-PRM (its remote code, `modeling_qwen2_rm.py`): a Qwen2 decoder and a
    two-layer head `score = Sequential(Linear(h, h), ReLU, Linear(h, 2))`. The attribute names give the state-dict
    keys `model.*`, `score.0.*`, `score.2.*`, so the published safetensors load here without trust_remote_code."""

    def __init__(self, config: Any) -> None:
        super().__init__(config)
        self.num_labels = 2
        self.model = Qwen2Model(config)
        h = config.hidden_size
        self.score = nn.Sequential(nn.Linear(h, h), nn.ReLU(), nn.Linear(h, self.num_labels))
        self.post_init()

    def forward(self, input_ids=None, attention_mask=None, position_ids=None, **kwargs: Any) -> TokenClassifierOutput:
        hidden = self.model(
            input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids, use_cache=False, **kwargs
        ).last_hidden_state
        return TokenClassifierOutput(logits=self.score(hidden))


class PRMAdapter:
    """What the three adapters share: loading, batching with mask-derived positions, and the scoring loop.

    A subclass says how a (prompt, steps) pair becomes ids with its read-out positions (`encode`) and how the hidden
    state at such a position becomes P(step is correct) (`read`). `padding_side` may be "right" or "left": both give
    the same scores (a regression test checks it)."""

    name = ""
    kind = "prm"  # what it scores, as `RewardModel.kind` says it
    step_format = StepFormat()
    padding_side = "right"

    def __init__(self, model: Any, tokenizer: Any, separator: str | None = None) -> None:
        self.model, self.tokenizer = model.eval(), tokenizer
        if separator is not None:  # how a completion string splits into steps; the read-out format is fixed
            self.step_format = dataclasses.replace(self.step_format, separator=separator)

    # ---- construction -------------------------------------------------------------------------------------------

    @classmethod
    def load_model(cls, path: str, **kwargs: Any) -> Any:
        from transformers import AutoModelForCausalLM

        return AutoModelForCausalLM.from_pretrained(path, **kwargs)

    @classmethod
    def from_pretrained(
        cls,
        path: str,
        *,
        device: str | torch.device | None = None,
        dtype: torch.dtype | str | None = None,
        tokenizer: Any = None,
        separator: str | None = None,
        **model_kwargs: Any,
    ) -> PRMAdapter:
        """Load a published checkpoint (hub id or folder) ready to score: eval mode, on `device`. `tokenizer` (an
        object or a path) replaces the checkpoint's own; `model_kwargs` go to `from_pretrained` (e.g.
        `attn_implementation`, `device_map`)."""
        from transformers import AutoTokenizer

        if dtype is not None:  # otherwise transformers' default applies
            model_kwargs["dtype"] = getattr(torch, dtype) if isinstance(dtype, str) else dtype
        model = cls.load_model(path, **model_kwargs)
        if tokenizer is None or isinstance(tokenizer, str):
            tokenizer = AutoTokenizer.from_pretrained(tokenizer or path)
        adapter = cls(model, tokenizer, separator=separator)
        if device is not None:
            adapter.to(device)
        return adapter

    def to(self, device: str | torch.device) -> PRMAdapter:
        self.model.to(device)
        return self

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    # ---- what a format defines --------------------------------------------------------------------------------

    def encode(self, prompt: str, completion: str | Sequence[str]) -> EncodedSteps:
        """Ids of one solution; `step_ends[i]` is where step `kept[i]` is read."""
        raise NotImplementedError

    def read(self, hidden: torch.Tensor) -> torch.Tensor:
        """P(step is correct) from final hidden states [n, hidden] at read-out positions -> [n], float32."""
        raise NotImplementedError

    def steps(self, completion: str | Sequence[str]) -> list[str]:
        """A completion string split by the StepFormat, or given steps; stripped, as `StepFormat.split` leaves them
        (chat templates such as Llama 3's trim contents, and leading whitespace would merge with the template)."""
        return self.step_format.split(completion) if isinstance(completion, str) else [s.strip() for s in completion]

    # ---- the forward pass -------------------------------------------------------------------------------------

    def hidden_states(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Final hidden states [batch, length, hidden]; positions follow the mask, so padding cannot move them."""
        position_ids = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)
        base = getattr(self.model, self.model.base_model_prefix)
        out = base(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids, use_cache=False)
        return out.last_hidden_state

    def collate(self, encoded: list[EncodedSteps]) -> tuple[torch.Tensor, torch.Tensor, list[list[int]]]:
        """Padded ids, mask, and each row's read-out positions in the padded batch. A solution longer than the
        model's position embeddings is refused: past them it would score noise without a word."""
        width = max(len(e.input_ids) for e in encoded)
        limit = getattr(self.model.config, "max_position_embeddings", None)
        if isinstance(limit, int) and width > limit:
            raise AdapterError(
                f"a prompt with its steps is {width} tokens, more than the {limit} this PRM reads "
                "(max_position_embeddings); shorten it (in a search: a lower --max-tokens)"
            )
        tok = self.tokenizer
        pad = next((i for i in (tok.pad_token_id, tok.eos_token_id) if i is not None), 0)
        ids = torch.full((len(encoded), width), pad, dtype=torch.long)
        mask = torch.zeros((len(encoded), width), dtype=torch.long)
        positions = []
        for row, e in enumerate(encoded):
            shift = width - len(e.input_ids) if self.padding_side == "left" else 0
            ids[row, shift : shift + len(e.input_ids)] = torch.tensor(e.input_ids)
            mask[row, shift : shift + len(e.input_ids)] = 1
            positions.append([shift + p for p in e.step_ends])
        return ids.to(self.device), mask.to(self.device), positions

    # ---- scoring ------------------------------------------------------------------------------------------------

    def score_steps_batch(
        self, prompts: Sequence[str], steps: Sequence[str | Sequence[str]], batch_size: int = 16
    ) -> list[list[float]]:
        """P(correct) of every step, each solution in a single forward pass (not one per step or prefix), `batch_size`
        solutions at a time; whitespace-only steps get no score (the lists follow `encode(...).kept`), as in
        `RewardModel.score_steps_batch`."""
        if len(prompts) != len(steps):
            raise ValueError(f"{len(prompts)} prompts but {len(steps)} step lists")
        return self.score_encoded([self.encode(p, s) for p, s in zip(prompts, steps, strict=True)], batch_size)

    @torch.no_grad()
    def score_encoded(self, encoded: Sequence[EncodedSteps], batch_size: int = 16) -> list[list[float]]:
        """`score_steps_batch` on solutions already encoded (search keeps the encodings to count tokens)."""
        self.model.eval()
        out: list[list[float]] = []
        for start in range(0, len(encoded), batch_size):
            ids, mask, positions = self.collate(list(encoded[start : start + batch_size]))
            hidden = self.hidden_states(ids, mask)
            rows = [row for row, cols in enumerate(positions) for _ in cols]
            cols = [c for cs in positions for c in cs]
            probs = self.read(hidden[rows, cols]).tolist() if cols else []
            for cs in positions:
                out.append(probs[: len(cs)])
                probs = probs[len(cs) :]
        return out

    def score_steps(self, prompt: str, steps: str | Sequence[str]) -> list[float]:
        return self.score_steps_batch([prompt], [steps])[0]


# ---- Qwen2.5-Math-PRM -------------------------------------------------------------------------------------------


class QwenMathPRM(PRMAdapter):
    """Qwen2.5-Math-PRM: steps joined and ended by `<extra_0>` in the assistant turn; its 2-way head is read on
    each `<extra_0>`, reward = softmax(logits)[1] (model card). The card recommends "\\n\\n" between steps."""

    name = "qwen2.5-math-prm"
    step_format = StepFormat(separator="\n\n", marker="<extra_0>", prompt_separator="")
    system = "Please reason step by step, and put your final answer within \\boxed{}."

    def __init__(self, model: Any, tokenizer: Any, separator: str | None = None) -> None:
        super().__init__(model, tokenizer, separator)
        if self.step_format.marker not in tokenizer.get_added_vocab():
            raise AdapterError(
                f"the tokenizer has no {self.step_format.marker} token: load the tokenizer saved with the "
                "Qwen2.5-Math-PRM checkpoint (it adds <extra_0>, id 151651), not the base Qwen2.5 one"
            )
        _check_chat_encoding(self)

    @classmethod
    def load_model(cls, path: str, **kwargs: Any) -> Any:
        model, info = Qwen2ForProcessRewardModel.from_pretrained(path, output_loading_info=True, **kwargs)
        if info["missing_keys"]:
            missing = sorted(info["missing_keys"])
            raise AdapterError(
                f"{path} is not a Qwen2.5-Math-PRM checkpoint: no weights for {missing[:4]}"
                f"{' …' if len(missing) > 4 else ''} (expected keys model.*, score.0.*, score.2.*)"
            )
        return model

    def conversation(self, prompt: str, completion: str | Sequence[str]) -> list[dict[str, str]]:
        """The model card's conversation (what `apply_chat_template` is given there)."""
        marker = self.step_format.marker
        answer = "".join(s + marker for s in self.steps(completion) if s)
        return [
            {"role": "system", "content": self.system},
            {"role": "user", "content": prompt.strip()},
            {"role": "assistant", "content": answer},
        ]

    def encode(self, prompt: str, completion: str | Sequence[str]) -> EncodedSteps:
        body = self.step_format.encode(self.tokenizer, "", self.steps(completion))
        answer = body.input_ids[body.prompt_length :]  # steps and markers, without what an empty prompt adds
        system, question = _plain(self.tokenizer, [self.system, prompt.strip()])
        ids, starts = chat_ids(self.tokenizer, [("system", system), ("user", question), ("assistant", answer)])
        step_ends = [starts[2] + end - body.prompt_length for end in body.step_ends]
        return EncodedSteps(ids, [1] * len(ids), step_ends, body.kept, starts[2])

    def read(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.model.score(hidden).float().softmax(-1)[..., 1]


# ---- Math-Shepherd ------------------------------------------------------------------------------------------------


class MathShepherdPRM(PRMAdapter):
    """Math-Shepherd: "{problem} Step 1: ... ки\\nStep 2: ... ки" scored by a causal LM; at each `ки` token the
    logits of '+' and '-' are compared, P('+') is the step's score. As in the model card, the candidates are the two
    ids of "+ -" (Mistral: 648, 387) and the tag is the id of "ки" (12902), both as the tokenizer writes them after a
    space. Steps not already numbered get "Step i: " in front, as in the training data (set `number_steps = False`
    on the adapter to turn it off)."""

    name = "math-shepherd"
    step_format = StepFormat(separator="\n", marker=" ки", prompt_separator=" ", gap="\n")
    good, bad = "+", "-"
    number_steps = True
    numbered = re.compile(r"Step \d+:")

    def __init__(self, model: Any, tokenizer: Any, separator: str | None = None) -> None:
        super().__init__(model, tokenizer, separator)
        tag = self.step_format.marker.strip()
        candidates = tokenizer(f"{self.good} {self.bad}", add_special_tokens=False)["input_ids"]
        tag_ids = tokenizer(tag, add_special_tokens=False)["input_ids"]
        if len(candidates) != 2 or len(tag_ids) != 1:
            raise AdapterError(
                f"the Math-Shepherd read-out needs '{self.good}', '{self.bad}' and '{tag}' to be single tokens, but "
                f"this tokenizer writes '{self.good} {self.bad}' as {len(candidates)} and '{tag}' as {len(tag_ids)} "
                "tokens: load the tokenizer saved with the checkpoint (Mistral's: 648, 387 and 12902)"
            )
        self.candidates, self.tag_id = candidates, tag_ids[0]

    def text(self, prompt: str, completion: str | Sequence[str]) -> tuple[str, list[int]]:
        """The model card's input string, and the index of the last character of each step's tag in it."""
        fmt = self.step_format
        text, tag_chars = prompt.strip() + fmt.prompt_separator, []
        for n, step in enumerate(s for s in self.steps(completion) if s):
            if self.number_steps and not self.numbered.match(step):
                step = f"Step {n + 1}: {step}"
            text += (fmt.gap if n else "") + step + fmt.marker
            tag_chars.append(len(text) - 1)
        return text, tag_chars

    def encode(self, prompt: str, completion: str | Sequence[str]) -> EncodedSteps:
        steps = self.steps(completion)
        text, tag_chars = self.text(prompt, steps)
        enc = self.tokenizer(text, return_offsets_mapping=True)  # special tokens added, as tokenizer.encode does
        ids, offsets = enc["input_ids"], enc["offset_mapping"]
        step_ends, t = [], 0
        for c in tag_chars:  # offsets increase along the text, so one walk finds every tag's token
            while t < len(ids) and not offsets[t][0] <= c < offsets[t][1]:
                t += 1
            if t == len(ids) or ids[t] != self.tag_id:
                raise AdapterError(
                    f"step {len(step_ends)}: the tag '{self.step_format.marker}' did not tokenize to its own token "
                    f"({self.tag_id}) in context; it merged with the text around it"
                )
            step_ends.append(t)
        prompt_chars = len(prompt.strip())
        prompt_length = next((t for t, (a, b) in enumerate(offsets) if b > 0 and a >= prompt_chars), len(ids))
        return EncodedSteps(ids, [1] * len(ids), step_ends, [i for i, s in enumerate(steps) if s], prompt_length)

    def read(self, hidden: torch.Tensor) -> torch.Tensor:
        return _candidate_logits(self.model, hidden, self.candidates).softmax(-1)[..., 0]


# ---- RLHFlow --------------------------------------------------------------------------------------------------


class RLHFlowPRM(PRMAdapter):
    """RLHFlow's PRMs (Llama-3.1-8B-Instruct fine-tunes): a multi-turn chat where the first user turn is
    problem + " " + step 1, every further step is a new user turn, and the assistant answers each with "+". A step's
    score is P('+') against '-' from the LM logits at the position that predicts the assistant's answer (the card's
    `logits[:, -3]` when the conversation ends at that step). Earlier steps are answered "+" as in the card, so the
    one pass over the whole conversation reads exactly what the card's pass per prefix reads."""

    name = "rlhflow"
    step_format = StepFormat(separator="\n\n", marker="", prompt_separator=" ")
    good, bad = "+", "-"

    def __init__(self, model: Any, tokenizer: Any, separator: str | None = None) -> None:
        super().__init__(model, tokenizer, separator)
        self.candidates = [_single_token(tokenizer, t, "RLHFlow") for t in (self.good, self.bad)]
        _check_chat_encoding(self)

    def conversation(self, prompt: str, completion: str | Sequence[str]) -> list[dict[str, str]]:
        """The model card's conversation for the whole solution."""
        steps = [s for s in self.steps(completion) if s]
        turns = [(prompt.strip() + self.step_format.prompt_separator + steps[0]).strip()] + steps[1:] if steps else []
        return [m for t in turns for m in ({"role": "user", "content": t}, {"role": "assistant", "content": self.good})]

    def encode(self, prompt: str, completion: str | Sequence[str]) -> EncodedSteps:
        steps = self.steps(completion)
        turns = [m["content"] for m in self.conversation(prompt, steps)[0::2]]
        if not turns:  # no step: the problem alone, nothing to read
            ids, _ = chat_ids(self.tokenizer, [("user", _plain(self.tokenizer, [prompt.strip()])[0])])
            return EncodedSteps(ids, [1] * len(ids), [], [], len(ids))
        answer = ("assistant", [self.candidates[0]])
        messages = [m for user in _plain(self.tokenizer, turns) for m in (("user", user), answer)]
        ids, starts = chat_ids(self.tokenizer, messages)
        step_ends = [start - 1 for start in starts[1::2]]  # the token before the answer is where it is predicted
        return EncodedSteps(ids, [1] * len(ids), step_ends, [i for i, s in enumerate(steps) if s], starts[0])

    def read(self, hidden: torch.Tensor) -> torch.Tensor:
        return _candidate_logits(self.model, hidden, self.candidates).softmax(-1)[..., 0]


# ---- shared pieces ------------------------------------------------------------------------------------------------

_SLOT = "@@prmsearch-content-{}@@"
_SLOT_RE = re.compile(r"@@prmsearch-content-(\d+)@@")


def chat_ids(tokenizer: Any, messages: Sequence[tuple[str, list[int]]]) -> tuple[list[int], list[int]]:
    """Ids of a conversation as the tokenizer's chat template lays it out, each message's content given as ids;
    returns the ids and the index where each content starts. The template text between contents is tokenized with
    special tokens on (it is the template's), the contents were tokenized by the caller with them off."""
    rendered = tokenizer.apply_chat_template(
        [{"role": role, "content": _SLOT.format(i)} for i, (role, _) in enumerate(messages)], tokenize=False
    )
    parts = _SLOT_RE.split(rendered)  # template, slot index, template, slot index, ..., template
    if [int(i) for i in parts[1::2]] != list(range(len(messages))):
        raise AdapterError("the chat template does not place every message's content once, in order")
    ids: list[int] = []
    starts: list[int] = []
    for n, template in enumerate(parts[0::2]):
        ids += tokenizer(template, add_special_tokens=False)["input_ids"] if template else []
        if n < len(messages):
            starts.append(len(ids))
            ids += messages[n][1]
    return ids, starts


def _check_chat_encoding(adapter: QwenMathPRM | RLHFlowPRM) -> None:
    """Encoding message by message must give what `apply_chat_template` gives: checked once on a sample."""
    prompt, steps = "What is 12 + 30?", ["12 + 30 = 42.", "The answer is $\\boxed{42}$."]
    ours = adapter.encode(prompt, steps).input_ids
    theirs = adapter.tokenizer.apply_chat_template(adapter.conversation(prompt, steps), return_dict=False)
    if ours != list(theirs):
        raise AdapterError(
            f"{adapter.name}: this tokenizer's chat template does not split at message boundaries (tokens merge "
            "across the template text and a message), so read-out positions would be wrong; use the tokenizer "
            "saved with the checkpoint"
        )


def _plain(tokenizer: Any, texts: list[str]) -> list[list[int]]:
    """Text as text: special-token strings inside it stay characters."""
    return tokenizer(texts, add_special_tokens=False, split_special_tokens=True)["input_ids"]


def _single_token(tokenizer: Any, text: str, who: str) -> int:
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    if len(ids) != 1:
        raise AdapterError(
            f"the {who} read-out needs {text!r} to be one token, but this tokenizer writes it as {ids}: "
            "load the tokenizer saved with the checkpoint"
        )
    return ids[0]


def _candidate_logits(model: Any, hidden: torch.Tensor, candidates: list[int]) -> torch.Tensor:
    """The LM head's logits for the candidate tokens only, [n, len(candidates)] in float32: two rows of the head
    instead of the whole vocabulary (128k columns for Llama 3)."""
    head = model.get_output_embeddings()
    bias = head.bias[candidates] if getattr(head, "bias", None) is not None else None
    return nn.functional.linear(hidden, head.weight[candidates], bias).float()
