"""Generators: the policy side of search. One protocol, two backends (transformers here, vLLM in `vllm_generator`).

What the strategies need from a backend, and why each piece is in the protocol:
- `finish_reason` keeps "stop" (a stop string ended a step), "eos" (the model ended the solution) and "length" (the
  token budget cut it) apart, because a cut-off step must never be taken for a finished solution.
- Seeds are per prompt. Sample j of a prompt with seed s is fixed by (s, j) alone, never by which other prompts
  share the batch, so batched search equals one-problem-at-a-time search and a resumed run redraws what a killed
  run drew.
- `text` is the completion without the stop string or the EOS token (as vLLM returns it); `token_ids` are the
  tokens the model generated, EOS included, so token accounting matches across backends.
"""

from __future__ import annotations

import hashlib
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from ..devices import pick_device, pick_dtype
from ..errors import PrmsearchError, loading, require_local
from ..shipped import resolve
from .prefix_cache import PrefixCache

FINISH_REASONS = ("stop", "eos", "length")


class GeneratorError(PrmsearchError):
    """Bad arguments to `generate`, or a policy that cannot be loaded."""


@dataclass
class Completion:
    text: str
    token_ids: list[int]
    finish_reason: str  # one of FINISH_REASONS
    stop_reason: str | None = None  # the stop string that ended it, when finish_reason == "stop"
    prompt_tokens: int = 0

    @property
    def num_tokens(self) -> int:
        return len(self.token_ids)


Seeds = int | Sequence[int | None] | None


@runtime_checkable
class Generator(Protocol):
    tokenizer: Any

    def generate(
        self,
        prompts: Sequence[str],
        n: int = 1,
        stop: Sequence[str] | None = None,
        max_tokens: int = 256,
        temperature: float = 1.0,
        top_p: float = 1.0,
        seed: Seeds = None,
    ) -> list[list[Completion]]:
        """`n` completions of every prompt, in prompt order. `seed`: one int for the call (prompt i then gets
        `derive_seed(seed, i)`), or one seed per prompt, or None for fresh randomness. `temperature=0` is greedy.
        A backend that keeps states between calls may also offer `release(prompts, subtree=False)`: the search calls
        it with the prompts it will not continue (pruned branches; with `subtree`, the prompts of finished trees),
        so their states go at once."""
        ...


def derive_seed(*parts: Any) -> int:
    """A 63-bit seed fixed by `parts` alone (problem id, node path, sample index…): stable across processes and
    Python versions, unlike `hash()`."""
    digest = hashlib.blake2b(repr(parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


def prompt_seeds(seed: Seeds, count: int) -> list[int]:
    """One seed per prompt from the `seed` argument of `generate`."""
    if seed is None:
        return [random.getrandbits(63) for _ in range(count)]
    if isinstance(seed, int):
        return [derive_seed(seed, i) for i in range(count)]
    seeds = list(seed)
    if len(seeds) != count:
        raise GeneratorError(f"{len(seeds)} seeds for {count} prompts")
    return [random.getrandbits(63) if s is None else int(s) for s in seeds]


_GO_ON = "x"  # a character text goes on with after the prompt: see `encode_prompt`


def encode_prompt(tokenizer: Any, text: str) -> list[int]:
    """The ids of `text` as the policy read such text in training: inside a longer text, not at its end.

    A search prompt ends where a step ended, with its separator ("\\n\\n"). A byte-level BPE tokenizer with GPT-2's
    pre-tokenizer (SmolLM2's) writes "\\n\\n" as one token at the end of a string but as "\\n", "\\n" before a word, so
    the policy, which wrote and was trained on the second, would be handed the first (on SmolLM2, 32 GSM-Symbolic
    problems: beam@4 wrote 952 tokens a problem and got none right; given the two, 470 tokens, as 4 whole samples
    write, and 4 right; particle filtering 7, as majority@4). So a prompt that ends in
    whitespace is encoded with a character after it, which is then taken off. Where that cannot be done exactly (the
    character's token took some of the whitespace, or the tokenizer ends every text with a special token), the
    plain encoding stands; tokenizers that keep a run of newlines whole (Llama 3's, Qwen's) give the same ids either
    way."""
    ids = tokenizer(text)["input_ids"]
    if not text or not text[-1].isspace():
        return ids
    longer = tokenizer(text + _GO_ON)["input_ids"]
    if (
        longer[-1:]
        and tokenizer.decode(longer[-1:]) == _GO_ON
        and tokenizer.decode(longer[:-1]) == tokenizer.decode(ids)
    ):
        return longer[:-1]
    return ids


def check_arguments(prompts: Sequence[str], n: int, max_tokens: int, temperature: float, top_p: float) -> None:
    if isinstance(prompts, str):
        raise GeneratorError("prompts must be a list of strings, not one string")
    if n < 1:
        raise GeneratorError(f"n must be at least 1, got {n}")
    if max_tokens < 1:
        raise GeneratorError(f"max_tokens must be at least 1, got {max_tokens}")
    check_sampling(temperature, top_p)


def check_sampling(temperature: Any, top_p: Any, name: str = "temperature") -> None:
    """What the sampler can draw with, checked where a run's settings are read and again at `generate`: a NaN
    temperature would otherwise index past the vocabulary. `name`: the setting the temperature came from."""
    number = isinstance(temperature, (int, float)) and not isinstance(temperature, bool)
    if not (number and math.isfinite(temperature) and temperature >= 0):
        raise GeneratorError(f"{name} must be a finite number >= 0 (0: greedy), got {temperature!r}")
    if isinstance(top_p, bool) or not isinstance(top_p, (int, float)) or not 0 < top_p <= 1:
        raise GeneratorError(f"top_p must be in (0, 1], got {top_p!r}")


def find_stop(text: str, stop: Sequence[str], start: int = 0) -> tuple[int, str] | None:
    """(index, stop string) of the earliest stop string in `text` at or after `start`, or None."""
    best: tuple[int, str] | None = None
    for s in stop:
        i = text.find(s, start)
        if i >= 0 and (best is None or i < best[0]):
            best = (i, s)
    return best


_GENERATIVE = ("ForCausalLM", "LMHeadModel", "ForConditionalGeneration")


def _check_causal_lm(path: str, model: Any, info: dict[str, Any]) -> None:
    """A policy must have been saved as a causal LM: its LM head among the weights it loaded, not freshly
    initialised (what `AutoModelForCausalLM` does, with only a warning, to a reward model's folder)."""
    head = model.get_output_embeddings()
    heads = {name.split(".")[0] for name, module in model.named_modules() if name and module is head}
    missing = [k for k in info.get("missing_keys", []) if head is not None and k.split(".")[0] in heads]
    if missing:
        saved_as = getattr(model.config, "architectures", None) or []
        what = f"a {saved_as[0]}" if saved_as else "a model without an LM head"
        raise GeneratorError(
            f"--policy {path}: {what}, not a causal LM (its LM head {missing[0]!r} is not in the checkpoint, so it "
            "would generate from random weights); give a causal LM (a reward model goes to --scorer)"
        )


class HFGenerator:
    """Batched sampling with a KV cache through a transformers causal LM, on CPU or GPU.

    Our own decode loop rather than `model.generate`, for three things `generate` cannot do: a random stream per
    sample (so batch composition cannot change a sample), stop strings reported apart from EOS, and a prefix cache
    kept across calls (`PrefixCache`: a prompt that extends one fed before, as a search node's path extends its
    parent's, feeds only its new tokens). Each prompt is prefilled once and its cache repeated for its `n` samples.
    `prefix_cache_tokens=0` turns the prefix cache off (every prompt fed whole: the baseline).

    Reused states were computed in another batch, so a log-probability can differ from re-feeding by float rounding
    (1.3e-5 on the embedded policy, 8e-5 on SmolLM2-135M, float32): greedy tokens are the same unless two tokens tie
    within that; a sampled token differs only if its uniform falls within that distance of a boundary of the
    cumulative distribution (tests/test_prefix_cache.py bounds both).
    """

    def __init__(self, model: Any, tokenizer: Any, *, batch_size: int = 64, prefix_cache_tokens: int = 200_000) -> None:
        self.model, self.tokenizer, self.batch_size = model.eval(), tokenizer, batch_size
        self.prefix_cache = PrefixCache(prefix_cache_tokens) if prefix_cache_tokens > 0 else None
        eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
        eos = eos if isinstance(eos, list) else [eos]
        self.eos_ids = {i for i in [*eos, tokenizer.eos_token_id] if i is not None}
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else min(self.eos_ids, default=0)

    @classmethod
    def from_pretrained(
        cls,
        path: str,
        *,
        device: str | None = None,
        dtype: Any = None,
        batch_size: int = 64,
        prefix_cache_tokens: int = 200_000,
        **kwargs: Any,
    ) -> HFGenerator:
        """A policy from a hub id, a folder or an embedded name (`embedded:policy`): `AutoModelForCausalLM` and
        `AutoTokenizer`. Refused in one line: a path that does not exist, and a model that is not a causal LM with
        its LM head (a reward-model folder would otherwise generate through a randomly initialised head)."""
        from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

        require_local(path, "policy folder", "--policy")
        name, path = path, resolve(path)
        saved_as = AutoConfig.from_pretrained(path, **kwargs).architectures or []
        if saved_as and not any(a.endswith(_GENERATIVE) for a in saved_as):
            raise GeneratorError(
                f"--policy {name}: saved as {saved_as[0]}, not a causal LM (a reward model goes to --scorer); give a "
                "causal LM folder or hub id"
            )
        device, dtype = pick_device(device), pick_dtype(dtype)
        with loading(name, "policy"):
            model, info = AutoModelForCausalLM.from_pretrained(path, dtype=dtype, output_loading_info=True, **kwargs)
            tokenizer = AutoTokenizer.from_pretrained(path)
        _check_causal_lm(name, model, info)
        model = model.to(device)
        return cls(model, tokenizer, batch_size=batch_size, prefix_cache_tokens=prefix_cache_tokens)

    @property
    def device(self) -> Any:
        return next(self.model.parameters()).device

    def release(self, prompts: Sequence[str], *, subtree: bool = False) -> None:
        """These prompts will not be continued again (pruned branches): the prefix cache frees the states only they
        lead to. `subtree`: nothing that extends them will be either (finished trees, given by their prompts)."""
        if self.prefix_cache is not None:
            for prompt in prompts:
                self.prefix_cache.drop(encode_prompt(self.tokenizer, prompt), subtree=subtree)

    def generate(
        self,
        prompts: Sequence[str],
        n: int = 1,
        stop: Sequence[str] | None = None,
        max_tokens: int = 256,
        temperature: float = 1.0,
        top_p: float = 1.0,
        seed: Seeds = None,
    ) -> list[list[Completion]]:
        check_arguments(prompts, n, max_tokens, temperature, top_p)
        seeds = prompt_seeds(seed, len(prompts))
        stop = [s for s in (stop or []) if s]
        sampling = (stop, max_tokens, temperature, top_p)
        if n > self.batch_size:  # one prompt's samples over several passes, so memory stays that of batch_size rows
            return [self._many_samples(p, s, n, *sampling) for p, s in zip(prompts, seeds, strict=True)]
        per_chunk = self.batch_size // n
        out: list[list[Completion]] = []
        for start in range(0, len(prompts), per_chunk):
            chunk = range(start, min(start + per_chunk, len(prompts)))
            out += self._generate_chunk([prompts[i] for i in chunk], [seeds[i] for i in chunk], n, *sampling)
        return out

    def _many_samples(
        self, prompt: str, seed: int, n: int, stop: list[str], max_tokens: int, temperature: float, top_p: float
    ) -> list[Completion]:
        """The `n` samples of one prompt, `batch_size` at a time; sample j is the one a single pass draws (its
        random numbers come from (seed, j) alone)."""
        out: list[Completion] = []
        for first in range(0, n, self.batch_size):
            count = min(self.batch_size, n - first)
            out += self._generate_chunk([prompt], [seed], count, stop, max_tokens, temperature, top_p, first)[0]
        return out

    def _generate_chunk(
        self,
        prompts: list[str],
        seeds: list[int],
        n: int,
        stop: list[str],
        max_tokens: int,
        temperature: float,
        top_p: float,
        first: int = 0,
    ) -> list[list[Completion]]:
        """The `n` samples of each prompt (samples first to first + n - 1 of each, for a prompt split over passes)."""
        import torch

        device = self.device
        encoded = [encode_prompt(self.tokenizer, p) for p in prompts]
        if any(not ids for ids in encoded):
            raise GeneratorError("a prompt tokenizes to no tokens")
        self._check_lengths(prompts, encoded)
        prefixes = self.prefix_cache
        # The last prompt token is always fed: its logits start the samples.
        matched = [prefixes.match(ids[:-1]) if prefixes else ([], 0) for ids in encoded]
        ids, mask = _prefill_inputs(encoded, matched, self.pad_id)
        ids, mask = ids.to(device), mask.to(device)
        uniforms = _sample_uniforms(seeds, n, max_tokens, first).to(device)
        with torch.inference_mode():
            cache, logits = self._prefill(ids, mask, encoded, matched)
            if n > 1:
                cache.batch_repeat_interleave(n)
                logits = logits.repeat_interleave(n, 0)
                mask = mask.repeat_interleave(n, 0)
            generated, texts, finish = self._decode(cache, logits, mask, uniforms, encoded, n, stop, temperature, top_p)
        if prefixes:
            prefixes.evict()
        return self._completions(encoded, n, generated, texts, finish)

    @property
    def max_length(self) -> int | None:
        """The most tokens (prompt and completion) the model reads: its position embeddings; None if unsaid."""
        n = getattr(self.model.config, "max_position_embeddings", None)
        return n if isinstance(n, int) and n > 0 else None

    def _check_lengths(self, prompts: list[str], encoded: list[list[int]]) -> None:
        """Refuse a prompt that leaves no room to generate: past its position embeddings a model writes noise,
        which would be graded as a wrong solution without a word. (A completion stops where the room ends.)"""
        limit = self.max_length
        if limit is None:
            return
        for prompt, ids in zip(prompts, encoded, strict=True):
            if len(ids) >= limit:
                raise GeneratorError(
                    f"a prompt of {len(ids)} tokens fills the policy's {limit} positions (it starts "
                    f"{prompt[:60]!r}): shorten it (--limit the dataset, a shorter template) or use a policy that "
                    "reads longer inputs"
                )

    def _prefill(
        self, ids: Any, mask: Any, encoded: list[list[int]], matched: list[tuple[Any, int]]
    ) -> tuple[Any, Any]:
        """Feed every prompt's new tokens after its reused states, and keep each prompt's states in the prefix cache
        for the prompts that extend it; returns the cache and the logits of each prompt's last token."""
        from . import kv

        prefixes = self.prefix_cache
        past = max(c for _, c in matched)
        cache = kv.stack(
            [prefixes.states(m) if prefixes else None for m, _ in matched], past, self.device, growing=True
        )
        out = self.model(
            input_ids=ids,
            attention_mask=mask,
            position_ids=_positions(mask)[:, past:],
            cache=cache,
            use_cache=True,
            logits_to_keep=1,
        )
        cache = out.cache
        fed = mask.shape[1]  # the cache's columns before the first sampled token
        if prefixes:
            for row, (_, c) in enumerate(matched):
                new = len(encoded[row]) - c
                prefixes.insert(encoded[row], c, kv.take(cache, row, slice(fed - new, fed)))
                prefixes.stats["reused_tokens"] += c
                prefixes.stats["fed_tokens"] += new
        return cache, out.logits[:, -1].float()

    def _decode(
        self,
        cache: Any,
        logits: Any,
        mask: Any,
        uniforms: Any,
        encoded: list[list[int]],
        n: int,
        stop: list[str],
        temperature: float,
        top_p: float,
    ) -> tuple[list[list[int]], list[str], list[tuple[str, str | None] | None]]:
        """Sample every row (sample j of prompt i is row i * n + j) until it finishes or its uniforms run out;
        returns each row's tokens, its text when a stop string ended it, and (reason, stop string) or None."""
        import torch

        from . import kv

        device, prefixes = self.device, self.prefix_cache
        rows, max_tokens = uniforms.shape
        limit = self.max_length
        fed = mask.shape[1]  # the cache's columns before the first sampled token
        limit = self.max_length
        generated: list[list[int]] = [[] for _ in range(rows)]
        texts = [""] * rows
        finish: list[tuple[str, str | None] | None] = [None] * rows
        active = list(range(rows))  # batch position i holds sample active[i]; finished samples leave the batch
        for t in range(max_tokens):
            picked = _sample(logits, uniforms[torch.tensor(active, device=device), t], temperature, top_p)
            for r, token in zip(active, picked, strict=True):
                generated[r].append(token)
                if token in self.eos_ids:
                    finish[r] = ("eos", None)
                elif limit is not None and len(encoded[r // n]) + len(generated[r]) >= limit:
                    finish[r] = ("length", None)  # the model reads no further
            if stop:
                self._check_stops([r for r in active if finish[r] is None], generated, texts, finish, stop)
            if prefixes and stop and t > 0:  # a step ended by a stop string is what search extends next
                for i, r in enumerate(active):
                    if finish[r] is not None and finish[r][0] == "stop":  # type: ignore[index]
                        prompt = encoded[r // n]
                        states = kv.take(cache, i, slice(fed, fed + t))  # generated[r][:-1], fed so far
                        prefixes.insert(prompt + generated[r][:-1], len(prompt), states)
            keep = [i for i, r in enumerate(active) if finish[r] is None]
            if not keep:
                break
            if len(keep) < len(active):
                index = torch.tensor(keep, device=device)
                cache.batch_select_indices(index)
                mask = mask[index]
                active = [active[i] for i in keep]
            cache, logits, mask = self._feed([generated[r][-1] for r in active], cache, mask)
        return generated, texts, finish

    def _feed(self, tokens: list[int], cache: Any, mask: Any) -> tuple[Any, Any, Any]:
        """One new token per row through the model; returns the cache, the next logits and the mask grown by it."""
        import torch

        device = mask.device
        step = torch.tensor([[token] for token in tokens], device=device)
        mask = torch.cat([mask, torch.ones((len(tokens), 1), dtype=mask.dtype, device=device)], 1)
        out = self.model(
            input_ids=step,
            attention_mask=mask,
            position_ids=mask.sum(-1, keepdim=True) - 1,
            cache=cache,
            use_cache=True,
        )
        return out.cache, out.logits[:, -1].float(), mask

    def _completions(
        self,
        encoded: list[list[int]],
        n: int,
        generated: list[list[int]],
        texts: list[str],
        finish: list[tuple[str, str | None] | None],
    ) -> list[list[Completion]]:
        """The `n` completions of each prompt: a row unfinished when its budget ran out was cut by "length"; an
        EOS token is not part of the text, a stop string's text is what came before it."""
        completions = []
        for r in range(len(generated)):
            reason, stop_string = finish[r] or ("length", None)
            body = generated[r][:-1] if reason == "eos" else generated[r]
            text = texts[r] if reason == "stop" else self.tokenizer.decode(body, skip_special_tokens=True)
            completions.append(Completion(text, generated[r], reason, stop_string, len(encoded[r // n])))
        return [completions[i * n : (i + 1) * n] for i in range(len(encoded))]

    def _check_stops(
        self,
        rows: list[int],
        generated: list[list[int]],
        texts: list[str],
        finish: list[tuple[str, str | None] | None],
        stop: list[str],
    ) -> None:
        """Finish the rows whose text now holds a stop string. A new match must end in the newest token, so only
        the last few tokens are decoded each step (a token is at least one character); the whole text is decoded
        only for a row that matched."""
        if not rows:
            return
        tail = max(len(s) for s in stop) + 1
        decoded = self.tokenizer.batch_decode([generated[r][-tail:] for r in rows], skip_special_tokens=True)
        for r, text in zip(rows, decoded, strict=True):
            if find_stop(text, stop) is None:
                continue
            full = self.tokenizer.decode(generated[r], skip_special_tokens=True)
            found = find_stop(full, stop)
            if found is not None:
                texts[r] = full[: found[0]]
                finish[r] = ("stop", found[1])


def _prefill_inputs(encoded: list[list[int]], matched: list[tuple[Any, int]], pad_id: int) -> tuple[Any, Any]:
    """Input ids and attention mask of the prefill. Reused states are right-aligned in the past columns and new tokens
    left-padded after them, so every row's next token goes in the last column; the attention mask skips the padding
    between."""
    import torch

    past = max(c for _, c in matched)
    fresh = [ids[c:] for ids, (_, c) in zip(encoded, matched, strict=True)]
    width = max(len(f) for f in fresh)
    ids = torch.full((len(encoded), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(encoded), past + width), dtype=torch.long)
    for row, (f, (_, c)) in enumerate(zip(fresh, matched, strict=True)):
        ids[row, width - len(f) :] = torch.tensor(f)
        mask[row, past - c : past] = 1
        mask[row, past + width - len(f) :] = 1
    return ids, mask


def _sample_uniforms(seeds: list[int], n: int, max_tokens: int, first: int = 0) -> Any:
    """Every sample's random numbers for the whole call, drawn up front from its own seed: one uniform per token, so
    sampling is one vectorised inverse-CDF step for all rows, yet no row depends on another."""
    import torch

    return torch.stack(
        [
            torch.rand(max_tokens, generator=torch.Generator().manual_seed(derive_seed(s, j)), dtype=torch.float64)
            for s in seeds
            for j in range(first, first + n)
        ]
    )


def _positions(mask: Any) -> Any:
    return (mask.cumsum(-1) - 1).clamp(min=0)


def _sample(logits: Any, uniforms: Any, temperature: float, top_p: float) -> list[int]:
    """Next token of every row: argmax at temperature 0, else an inverse-CDF draw from softmax(logits / T)
    restricted to the top-p nucleus, with the row's own uniform for this step.

    On CPU, rows go through in small groups: a (rows x vocabulary) float tensor per group stays in cache, where one
    for the whole batch (50 MB for 256 rows of a 49k vocabulary) is a fresh allocation per token and runs 3x slower.
    On a GPU all rows go at once, as kernel launches are what costs there."""
    import torch

    if temperature == 0:
        return logits.argmax(-1).tolist()
    group = CPU_SAMPLE_ROWS if logits.device.type == "cpu" else len(logits)
    picked = [
        _draw(logits[s : s + group], uniforms[s : s + group], temperature, top_p) for s in range(0, len(logits), group)
    ]
    return torch.cat(picked).tolist()


CPU_SAMPLE_ROWS = 16


def _draw(logits: Any, uniforms: Any, temperature: float, top_p: float) -> Any:
    # Unnormalised probabilities: the draw scales the uniform by each row's total instead of dividing the row by it.
    weights = logits - logits.amax(-1, keepdim=True)
    if temperature != 1:
        weights.div_(temperature)
    weights.exp_()
    if top_p < 1:
        return _draw_nucleus(weights, uniforms, top_p)
    return _draw_blocked(weights, uniforms)


BLOCK = 256


def _draw_blocked(weights: Any, uniforms: Any) -> Any:
    """Inverse CDF in two levels: which block of 256 tokens (from block sums), then which token in it. A running sum
    over the whole vocabulary is a sequential scan; block sums are a reduction and run ~10x faster."""
    import torch

    rows, vocab = weights.shape
    whole = vocab - vocab % BLOCK
    sums = weights[:, :whole].view(rows, -1, BLOCK).sum(-1)
    if whole < vocab:
        sums = torch.cat([sums, weights[:, whole:].sum(-1, keepdim=True)], 1)
    cdf = sums.cumsum_(-1)
    block, u = _search(cdf, uniforms)
    below = torch.where(block > 0, cdf.gather(1, (block - 1).clamp(min=0)[:, None])[:, 0], 0.0)
    fraction = ((u - below) / (cdf.gather(1, block[:, None])[:, 0] - below)).clamp_(0, 1)
    index = block[:, None] * BLOCK + torch.arange(BLOCK, device=weights.device)
    inside = weights.gather(1, index.clamp(max=vocab - 1)).masked_fill_(index >= vocab, 0.0)  # a short last block
    return index.gather(1, _search(inside.cumsum_(-1), fraction)[0][:, None])[:, 0]


NUCLEUS_PREFILTER = 256


def _draw_nucleus(weights: Any, uniforms: Any, top_p: float) -> Any:
    """The draw over the top-p nucleus, in descending-probability order. Sorting a whole 49k-token row costs ~2 ms;
    the nucleus nearly always lies within the top few hundred tokens, so those are found with `topk` and the full sort
    is kept for rows whose nucleus is wider. Which path a row takes depends only on that row."""
    import torch

    total = weights.sum(-1, keepdim=True)
    ranked, order = weights.topk(min(NUCLEUS_PREFILTER, weights.shape[-1]), -1)
    mass = ranked.cumsum(-1)
    wide = mass[:, -1] < top_p * total[:, 0]

    def pick(ranked: Any, order: Any, mass: Any, rows: Any) -> Any:
        kept = ranked.masked_fill(mass - ranked >= top_p * total[rows], 0.0)  # the smallest prefix reaching p
        return order.gather(-1, _search(kept.cumsum_(-1), uniforms[rows])[0][:, None])[:, 0]

    picked = torch.empty(len(weights), dtype=torch.long, device=weights.device)
    if not wide.all():
        narrow = ~wide
        picked[narrow] = pick(ranked[narrow], order[narrow], mass[narrow], narrow)
    if wide.any():
        ranked, order = weights[wide].sort(-1, descending=True)
        picked[wide] = pick(ranked, order, ranked.cumsum(-1), wide)
    return picked


def _search(cdf: Any, fraction: Any) -> tuple[Any, Any]:
    """Index of the first cdf entry above u = fraction x total, and u. u < total strictly, so that entry always adds
    positive probability."""
    import torch

    total = cdf[:, -1]
    u = torch.minimum(fraction.to(cdf.dtype) * total, torch.nextafter(total, torch.zeros_like(total)))
    return torch.searchsorted(cdf, u[:, None], right=True)[:, 0], u
