"""Readers that turn public formats into `Trace`s, and the label builders that turn `Trace`s into examples.
(Automatic process labels from policy rollouts are `prmsearch.label`.)"""

from ..rows import BadRowError, ReadReport
from .build import BuildConfig, run_build
from .champ import read_champ
from .labels import BuildReport, build_orm, build_prm, build_stepwise
from .math_shepherd import read_math_shepherd
from .pairs import build_pairs
from .prm800k import read_prm800k
from .processbench import read_processbench
from .readers import READERS, ReaderOptions, read_source
from .stepwise import read_stepwise
from .traces import read_traces_file

__all__ = [
    "READERS",
    "BadRowError",
    "BuildConfig",
    "BuildReport",
    "ReadReport",
    "ReaderOptions",
    "build_orm",
    "build_pairs",
    "build_prm",
    "build_stepwise",
    "run_build",
    "read_champ",
    "read_math_shepherd",
    "read_prm800k",
    "read_source",
    "read_processbench",
    "read_stepwise",
    "read_traces_file",
]
