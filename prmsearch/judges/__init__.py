"""Generative judges (LLM-as-a-judge): a causal LM prompted to judge, through the same `Generator` backends as the
policy (transformers, vLLM), at temperature 0 by default. Three protocols: pointwise (a verdict or a rating per
solution), the step critic (the earliest wrong step, ProcessBench's protocol) and pairwise (both orders, a
Bradley-Terry fit). Verdicts are parsed strictly (`verdicts`): an output with no parseable verdict is counted as
invalid, never read as a default. Each judge plugs in where a scorer does (best-of-N, weighted best-of-N, rerank;
the critic also steers beam search, DVTS and MCTS, and is evaluated by `prmsearch eval processbench`). A judge
needs only a `Generator` and the `scoring` contracts; `search.load.load_judge` loads one by name."""

from .critic import CRITIC_TEMPLATE, CriticJudge
from .pairwise import PAIRWISE_TEMPLATE, PairVerdict, PairwiseJudge, bradley_terry
from .pointwise import POINTWISE_TEMPLATE, RATING_TEMPLATE, PointwiseJudge
from .verdicts import parse_critic, parse_pairwise, parse_pointwise

__all__ = [
    "CRITIC_TEMPLATE",
    "PAIRWISE_TEMPLATE",
    "POINTWISE_TEMPLATE",
    "RATING_TEMPLATE",
    "CriticJudge",
    "PairVerdict",
    "PairwiseJudge",
    "PointwiseJudge",
    "bradley_terry",
    "parse_critic",
    "parse_pairwise",
    "parse_pointwise",
]
