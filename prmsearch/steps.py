"""StepFormat: the one step-boundary contract shared by label builders, trainers, the search-time scorer and
evaluation (DESIGN.md, "The step-boundary contract").

Why steps are tokenized one by one: a BPE tokenizer merges across the text boundary (".\\n\\n" or " ки" become one
token, or the marker splits differently after different words), so a label placed by searching the joined text for
the marker lands on the wrong token or disappears. Tokenizing each step alone and appending the marker's own ids
makes every boundary an exact, known token index.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from .errors import PrmsearchError


class StepFormatError(PrmsearchError):
    """A solution that cannot be encoded under this StepFormat."""


class TooLongError(StepFormatError):
    """Encoding would exceed `max_length` and so cut a labelled step; builders drop the example and count it."""

    def __init__(self, length: int, max_length: int, first_cut_step: int, num_steps: int):
        super().__init__(
            f"{length} tokens exceed max_length={max_length}: step {first_cut_step} of {num_steps} would be cut"
        )
        self.length, self.max_length = length, max_length
        self.first_cut_step, self.num_steps = first_cut_step, num_steps


@dataclass
class EncodedSteps:
    """Token ids of prompt + steps. The label of step `kept[i]` lives at `input_ids[step_ends[i]]`.

    `kept` lists the indices of the input steps that were encoded (whitespace-only steps are dropped, so a
    label can be matched to its step without guessing). `prompt_length` counts the prompt tokens, which no
    loss ever supervises.
    """

    input_ids: list[int]
    attention_mask: list[int]
    step_ends: list[int]
    kept: list[int]
    prompt_length: int


@dataclass(frozen=True)
class StepFormat:
    """How a solution is split into steps and where each step's label sits in the model input.

    separator: joins steps in plain text (`split`/`join`).
    marker: placed after every step in model input; its last token carries the step's label. None means the
        separator. It may be a plain string ("\\n\\n", " ки") or a special token of the tokenizer ("<extra_0>").
        The empty string means no marker: the label sits on the step's own last token.
    prompt_separator: text between the prompt and the first step in model input.
    gap: unlabelled text between one step's marker and the next step in model input, e.g. "\\n" for
        Math-Shepherd's "... ки\\nStep 2: ..." (marker " ки"). Default none.
    """

    separator: str = "\n\n"
    marker: str | None = None
    prompt_separator: str = "\n\n"
    gap: str = ""

    def __post_init__(self) -> None:
        if not self.separator:
            raise StepFormatError("separator must be a non-empty string")

    @property
    def step_marker(self) -> str:
        return self.separator if self.marker is None else self.marker

    def split(self, text: str) -> list[str]:
        """Steps of `text`, each stripped of surrounding whitespace; empty steps dropped."""
        return [s.strip() for s in text.split(self.separator) if s.strip()]

    def join(self, steps: list[str]) -> str:
        """Steps joined by the separator; whitespace-only steps are dropped, as `split` and `encode` drop them."""
        return self.separator.join(s for s in steps if s.strip())

    def normalize(self, text: str) -> str:
        """The canonical text of a solution: `join(split(text))`, for which the round trip is exact."""
        return self.join(self.split(text))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def marker_ids(self, tokenizer: Any) -> list[int]:
        marker = self.step_marker
        if not marker:
            return []
        vocab_id = tokenizer.convert_tokens_to_ids(marker) if marker in _added_tokens(tokenizer) else None
        if vocab_id is not None:
            return [vocab_id]
        ids = tokenizer(marker, add_special_tokens=False)["input_ids"]
        if not ids:
            raise StepFormatError(f"marker {marker!r} tokenizes to no tokens")
        return ids

    def prompt_ids(self, tokenizer: Any, prompt: str) -> list[int]:
        """The ids every encoding starts with: the prompt and the prompt separator, special tokens added."""
        return tokenizer(prompt + self.prompt_separator, add_special_tokens=True)["input_ids"]

    def step_ids(self, tokenizer: Any, steps: list[str], first: bool = True) -> list[list[int]]:
        """The ids each step adds after what precedes it: (gap) + step + marker. `first` says whether `steps[0]`
        follows the prompt directly (no gap). Concatenating `prompt_ids` and these is exactly `encode`, which lets
        the search-time scorer feed a new step alone on top of its prefix's cache."""
        if any(not s.strip() for s in steps):
            raise StepFormatError("a whitespace-only step has no ids (encode drops such steps)")
        marker = self.marker_ids(tokenizer)
        # One batched call for the steps and the gap: this runs once per example in builders and the scorer.
        if not steps:
            return []
        ids = _tokenize_plain(tokenizer, [*steps, *([self.gap] if self.gap else [])])
        gap = ids.pop() if self.gap else []
        return [(gap if i or not first else []) + step + marker for i, step in enumerate(ids)]

    def encode(self, tokenizer: Any, prompt: str, steps: list[str], max_length: int | None = None) -> EncodedSteps:
        """Tokenize prompt and steps for a reward model; see `EncodedSteps` for where the labels go.

        Step text is tokenized with special-token parsing off, so a literal "<extra_0>" inside a model's output
        can never forge a step boundary.
        """
        kept = [i for i, s in enumerate(steps) if s.strip()]
        prompt_ids = self.prompt_ids(tokenizer, prompt)
        input_ids = list(prompt_ids)
        step_ends = []
        for ids in self.step_ids(tokenizer, [steps[i] for i in kept]):
            input_ids += ids
            step_ends.append(len(input_ids) - 1)
        if max_length is not None and len(input_ids) > max_length:
            first_cut = next(i for i, end in enumerate(step_ends) if end >= max_length) if step_ends else 0
            raise TooLongError(len(input_ids), max_length, first_cut, len(step_ends))
        return EncodedSteps(input_ids, [1] * len(input_ids), step_ends, kept, len(prompt_ids))


def _added_tokens(tokenizer: Any) -> set[str]:
    return set(tokenizer.get_added_vocab()) | set(getattr(tokenizer, "all_special_tokens", []))


def _tokenize_plain(tokenizer: Any, texts: list[str]) -> list[list[int]]:
    return tokenizer(texts, add_special_tokens=False, split_special_tokens=True)["input_ids"]
