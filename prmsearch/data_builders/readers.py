"""The readers of public formats, in one registry, and the options that choose one and say how it reads: the part of
`prmsearch build`'s and `prmsearch label`'s configs that reads `--input`.

A reader is a function `(path, *, skip_bad, report, split, **its options) -> Iterator[Trace]` in its own module;
adding one is its file, its line in `READERS` and, where it takes options, its line in `OPTIONS`.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, ClassVar

from ..recipes import option
from ..records import Trace
from ..rows import ReadReport
from .champ import read_champ
from .math_shepherd import read_math_shepherd
from .prm800k import NEUTRAL_POLICIES, read_prm800k
from .processbench import AFTER_ERROR, read_processbench
from .stepwise import read_stepwise
from .traces import read_traces_file

READERS = {
    "prm800k": read_prm800k,
    "math-shepherd": read_math_shepherd,
    "stepwise": read_stepwise,
    "processbench": read_processbench,
    "champ": read_champ,
    "traces": read_traces_file,
}
# The options each reader takes, by name: fields of `ReaderOptions`, or the keywords `read_source` is given.
OPTIONS = {
    "prm800k": ("neutral", "branches"),
    "processbench": ("after_error",),
    "champ": ("after_error",),
    "traces": ("prompt_field", "solution_fields", "solution_key", "outcome_key", "gold_field", "separator"),
}


@dataclass
class ReaderOptions:
    """Which reader reads `input`, and the options of the readers that take some."""

    source: str = option(
        "traces",
        "reader of --input: prm800k, math-shepherd, stepwise (TRL's format, what `prmsearch label` writes), "
        "processbench, champ, traces (raw solutions, graded or not)",
    )
    input: str = option("", "data to read: a .jsonl/.json/.parquet/.csv file, a save_to_disk folder or a hub id")
    skip_bad: bool = option(False, "count and skip malformed input rows instead of stopping at the first")
    # PRM800K
    neutral: str = option(
        "three-class", "prm800k: a 0 rating becomes positive (1), negative (0) or stays 0 (three-class)"
    )
    branches: bool = option(True, "prm800k: every rated alternative at a step also becomes its own trace")
    # ProcessBench, CHAMP (and `prmsearch label`'s first-error and judge labels: one meaning, the steps after a
    # first error, annotated or found)
    after_error: str = option(
        "negative",
        "steps after the first error (annotated or found) are negative (0), unlabelled, or truncate (cut off)",
    )
    # raw traces
    prompt_field: str = option("question", "traces: field of the prompt (dotted paths reach nested fields: a.b)")
    solution_fields: list[str] = option(
        ["solution"], "traces: fields holding a solution string, a {solution_key, outcome_key} object, or a list"
    )
    solution_key: str = option("solution", "traces: key of the solution text in a solution object")
    outcome_key: str = option("is_correct", "traces: key of the true/false outcome in a solution object")

    CHOICES: ClassVar[dict[str, tuple[str, ...]]] = {
        "source": tuple(READERS),
        "neutral": tuple(NEUTRAL_POLICIES),
        "after_error": AFTER_ERROR,
    }

    def check_reader(self) -> None:
        """What `CHOICES` cannot say; `solution_fields` may come as "a,b" from a flag."""
        if isinstance(self.solution_fields, str):
            self.solution_fields = [f for f in self.solution_fields.split(",") if f]


def read_source(
    opts: ReaderOptions,
    report: ReadReport,
    *,
    split: str,
    separator: str,
    gold_field: str | None = None,
) -> Iterator[Trace]:
    """The traces of `opts.input` through `opts.source`'s reader, given the options that reader takes."""
    given: dict[str, Any] = {"gold_field": gold_field, "separator": separator}
    values = {name: given[name] if name in given else getattr(opts, name) for name in OPTIONS.get(opts.source, ())}
    if "solution_fields" in values:
        values["solution_fields"] = tuple(values["solution_fields"])
    return READERS[opts.source](opts.input, skip_bad=opts.skip_bad, report=report, split=split, **values)
