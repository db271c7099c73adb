"""prmsearch: reward models for reasoning (BT, ORM, PRM) and reward-guided test-time search."""

__version__ = "0.1.0"

from .data_builders import (  # noqa: E402
    READERS,
    BadRowError,
    BuildConfig,
    BuildReport,
    LabelConfig,
    ReadReport,
    build_orm,
    build_pairs,
    build_prm,
    build_stepwise,
    label_traces,
    run_build,
    run_label,
)
from .models import load_tokenizer  # noqa: E402
from .records import Problem, Trace  # noqa: E402
from .steps import EncodedSteps, StepFormat, StepFormatError, TooLongError  # noqa: E402
from .verifiers import (  # noqa: E402
    CodeLimits,
    CodeResult,
    Grade,
    check_arithmetic_steps,
    extract_answer,
    grade,
    grade_many,
    is_equivalent,
    pass_at_k,
    run_many,
    run_tests,
)

__all__ = [
    "READERS",
    "BadRowError",
    "BuildConfig",
    "BuildReport",
    "LabelConfig",
    "MemoGenerator",
    "QuickstartConfig",
    "CodeLimits",
    "CodeResult",
    "EncodedSteps",
    "Grade",
    "Problem",
    "ReadReport",
    "RewardModel",
    "StepFormat",
    "TrainConfig",
    "StepFormatError",
    "TooLongError",
    "Trace",
    "build_orm",
    "build_pairs",
    "build_prm",
    "build_stepwise",
    "check_arithmetic_steps",
    "extract_answer",
    "format_table",
    "grade",
    "grade_many",
    "is_equivalent",
    "label_traces",
    "load_adapter",
    "load_tokenizer",
    "pass_at_k",
    "plot",
    "rerank",
    "report",
    "run_build",
    "run_label",
    "run_quickstart",
    "run_many",
    "run_tests",
]


_LAZY = {
    "RewardModel": "prmsearch.models.reward_model",
    "load_adapter": "prmsearch.models.adapters",
    "TrainConfig": "prmsearch.train.config",
    "rerank": "prmsearch.search.rerank",
    "report": "prmsearch.bench.report",
    "MemoGenerator": "prmsearch.search.memo",
    "QuickstartConfig": "prmsearch.embedded.quickstart",
    "run_quickstart": "prmsearch.embedded.quickstart",
    "format_table": "prmsearch.bench.report",
    "plot": "prmsearch.bench.report",
}


def __getattr__(name: str):
    """Names that need torch are imported on first use, so `import prmsearch` stays fast."""
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
