"""The policy and the reward model a run names, loaded: `--backend hf|vllm` for the policy, and for the reward model
the scorer that fits its kind (a PRM scores steps incrementally, an ORM / BT model whole solutions, a public PRM
through its adapter), or a causal LM as a generative judge. Under a multi-GPU launcher each process takes its own
GPU."""

from __future__ import annotations

import os
from typing import Any

from ..scoring import Scorer, ScorerError
from .generators import Generator

JUDGE_PROTOCOLS = ("critic", "pointwise", "pairwise")


def load_generator(cfg: Any) -> Generator:
    """The policy a run names: `cfg` is a `SearchConfig` or a `LabelConfig` (policy, backend, device, dtype, seed,
    the vLLM settings, generate_batch, policy_cache_tokens)."""
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
    agg: str = "last",
    max_cache_tokens: int = 2_000_000,
    max_batch_tokens: int = 16_384,
) -> Scorer:
    """A scorer for a reward model saved by `RewardModel.save_pretrained` (folder or hub id): PRMs score steps
    incrementally, ORM / BT models score whole solutions. With `adapter` (a name in `models.adapters.ADAPTERS`),
    `path` is a public PRM read in its own format, through `AdapterScorer`."""
    import torch

    from ..models.reward_model import RewardModel, RewardModelError
    from .scorer import OutcomeScorer, StepScorer

    if isinstance(dtype, str):
        dtype = getattr(torch, dtype)
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    if adapter is not None:
        from ..models.adapters import AdapterError, load_adapter
        from .adapter_scorer import AdapterScorer

        try:
            return AdapterScorer(load_adapter(adapter, path, device=device, dtype=dtype), agg=agg)
        except AdapterError as e:
            raise ScorerError(str(e)) from e
    try:
        rm = RewardModel.from_pretrained(path, device=device, dtype=dtype)
    except RewardModelError as e:
        raise ScorerError(str(e)) from e
    if rm.kind == "prm":
        return StepScorer(
            rm, full_rescore=full_rescore, agg=agg, max_cache_tokens=max_cache_tokens, max_batch_tokens=max_batch_tokens
        )
    return OutcomeScorer(rm)


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
