"""Readers that turn public formats into `Trace`s, the label builders that turn `Trace`s into examples, and
automatic process labels from policy rollouts (`autolabel`: Monte Carlo, first-error search, consensus)."""

from ..rows import BadRowError, ReadReport
from .autolabel import LabelConfig, LabelResult, label_traces, run_label
from .build import READERS, BuildConfig, run_build
from .champ import read_champ
from .labels import BuildReport, build_orm, build_prm, build_stepwise
from .math_shepherd import read_math_shepherd
from .pairs import build_pairs
from .prm800k import read_prm800k
from .processbench import read_processbench
from .stepwise import read_stepwise
from .traces import read_traces_file

__all__ = [
    "READERS",
    "BadRowError",
    "BuildConfig",
    "BuildReport",
    "LabelConfig",
    "LabelResult",
    "ReadReport",
    "build_orm",
    "build_pairs",
    "build_prm",
    "build_stepwise",
    "label_traces",
    "run_build",
    "run_label",
    "read_champ",
    "read_math_shepherd",
    "read_prm800k",
    "read_processbench",
    "read_stepwise",
    "read_traces_file",
]
