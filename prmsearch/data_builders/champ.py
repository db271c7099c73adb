"""CHAMP (the PyPI package `champ-dataset`): competition problems whose model-written solutions carry a human
first-wrong-step annotation, a character span in the solution's text (or none: the solution has no mistake).

A solution's steps are its paragraphs (blank-line separated, ProcessBench's convention); the first wrong step is
the paragraph where the annotated span starts. Steps before it are right (1.0), it is wrong (0.0), and the steps
after it follow `after_error`, as in the ProcessBench reader. `outcome` is True when no mistake is annotated.
"""

from __future__ import annotations

from collections.abc import Iterator

from ..errors import InputError
from ..records import Trace
from ..rows import ReadReport, stable_id
from .processbench import AFTER_ERROR, first_error_labels

PARAGRAPH = "\n\n"


def paragraphs(text: str) -> list[tuple[int, str]]:
    """The non-blank paragraphs of `text`, stripped, each with the offset where it starts in `text`."""
    out, at = [], 0
    for part in text.split(PARAGRAPH):
        if part.strip():
            out.append((at + len(part) - len(part.lstrip()), part.strip()))
        at += len(part) + len(PARAGRAPH)
    return out


def read_champ(
    source: str = "v0",
    *,
    after_error: str = "negative",
    skip_bad: bool = False,
    report: ReadReport | None = None,
    split: str = "train",
) -> Iterator[Trace]:
    """One trace per annotated solution of the `champ-dataset` package (`source`: the dataset version, "v0", or a
    path to a CHAMP JSON file). `meta` keeps the problem id, the model and annotator, and the wrong span's text."""
    if after_error not in AFTER_ERROR:
        raise ValueError(f"after_error={after_error!r}: expected one of {AFTER_ERROR}")
    try:
        import champ_dataset
    except ImportError as e:
        raise InputError("reading CHAMP needs the champ-dataset package: pip install champ-dataset") from e
    report = report if report is not None else ReadReport()
    dataset = champ_dataset.load(source)
    for pid, problem in dataset.problems.items():
        for setting, note in (problem.fws_annotations or {}).items():
            parts = paragraphs(note.text)
            steps = [p for _, p in parts]
            first = -1
            if note.start_idx is not None:
                first = max(i for i, (start, _) in enumerate(parts) if start <= note.start_idx or i == 0)
            steps, labels = first_error_labels(steps, first, after_error)
            report.traces += 1
            yield Trace(
                problem.text,
                steps,
                labels,
                first < 0,
                stable_id(problem.text),
                source=f"champ:{pid}:{setting}",
                meta={"problem_id": pid, "setting": setting, "author": note.author, "wrong_span": note.wrong_step()},
            )
