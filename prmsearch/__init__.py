"""prmsearch: reward models for reasoning (BT, ORM, PRM) and reward-guided test-time search."""

__version__ = "0.1.0"

from .data_builders import (  # noqa: E402
    READERS,
    BadRowError,
    BuildConfig,
    BuildReport,
    ReadReport,
    build_orm,
    build_pairs,
    build_prm,
    build_stepwise,
    run_build,
)
from .models.tokenizers import load_tokenizer  # noqa: E402
from .records import Problem, Trace  # noqa: E402
from .steps import EncodedSteps, StepFormat, StepFormatError, TooLongError  # noqa: E402

__all__ = [
    "READERS",
    "BadRowError",
    "BuildConfig",
    "BuildReport",
    "EncodedSteps",
    "Problem",
    "ReadReport",
    "StepFormat",
    "StepFormatError",
    "TooLongError",
    "Trace",
    "build_orm",
    "build_pairs",
    "build_prm",
    "build_stepwise",
    "load_tokenizer",
    "run_build",
]
