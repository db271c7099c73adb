"""Rows to `Problem`s: local files, `save_to_disk` folders, hub datasets and in-memory rows, with flexible field
names. Named datasets and files go through the same row conversion (`problems_from_rows`), so
`load_problems("math500")` and `load_problems("math500_test.jsonl")` give the same problems, and a run can switch
from the hub to a local copy (a machine without network) without changing its results. A bad row stops the load
with file, line and field.

The two row shapes are the two tasks that read files: a row with `test` and `entry_point` is a code problem, any
other a math problem (with or without a gold answer).
"""

from __future__ import annotations

import itertools
import math
import numbers
import os
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from ..errors import PrmsearchError, loading
from ..records import Problem
from ..rows import BadRowError, RowError, parse_rows
from ..verifiers.math import gold_answer

ID_FIELDS = ("id", "problem_id", "unique_id", "task_id")
PROMPT_FIELDS = ("prompt", "problem", "question")
ANSWER_FIELDS = ("answer", "gold", "ground_truth")
CODE_FIELDS = ("test", "entry_point")  # a row with both is a code task (HumanEval's convention)


class DatasetUnavailableError(PrmsearchError):
    """A named dataset could not be fetched (no network, no cache, a missing package); the message says what to
    install or which local file to pass instead."""


def load_path(path: str, split: str | None, limit: int | None) -> list[Problem]:
    """The problems of a local .jsonl/.json/.parquet/.csv file, or of a folder written by `datasets.save_to_disk`
    (its "test" split, or its only split, unless `split` names one). See `problems_from_rows` for the fields."""
    if os.path.isdir(path):
        split = _folder_split(path, split)
    elif split is not None:
        raise ValueError(f"{path} is a single file, which has no splits; drop split={split!r}")
    counter = itertools.count()
    parsed = parse_rows(path, lambda row: _to_problem(row, next(counter)), split=split or "train")
    return _collect(((line, converted) for line, _row, converted in parsed), path, limit)


def problems_from_rows(rows: Iterable[Mapping[str, Any]], *, source: str, limit: int | None = None) -> list[Problem]:
    """`Problem`s from rows (dicts, or a `datasets.Dataset`); `source` names them in error messages.

    Fields, the first one present wins:
      id: id / problem_id / unique_id / task_id, else the row number (0-based), so ids are stable across copies.
      prompt: prompt / problem / question (a non-empty string).
      answer: answer / gold / ground_truth, passed through `gold_answer`: a bare answer stays as it is, a
        reference solution ("... #### 18", "... \\boxed{18}", "...\\nA: 18") gives its final answer, and the
        whole solution is kept as meta["solution"]. A number becomes its string; missing means no gold (None).
    A row with `test` and `entry_point` is a code task: answer None, meta["task"] = "code" with both fields;
    every other row has meta["task"] = "math". Remaining fields are kept in meta (MATH's subject and level, ...).
    Ids must be unique.
    """
    return _collect(_numbered(rows, source), source, limit)


def _numbered(rows: Iterable[Mapping[str, Any]], source: str) -> Iterator[tuple[int, tuple[Problem, str]]]:
    """(line, converted row) for in-memory rows, numbered from 1 as `parse_rows` numbers a file's rows."""
    for index, row in enumerate(rows):
        try:
            if not isinstance(row, Mapping):
                raise RowError("<row>", f"expected a mapping of fields, got {type(row).__name__}")
            yield index + 1, _to_problem(dict(row), index)
        except RowError as e:
            raise BadRowError(source, index + 1, e.field, e.message) from None


def _collect(converted: Iterator[tuple[int, tuple[Problem, str]]], source: str, limit: int | None) -> list[Problem]:
    problems: list[Problem] = []
    first_line: dict[str, int] = {}
    if limit == 0:
        return problems
    for line, (problem, id_field) in converted:
        if problem.id in first_line:
            raise BadRowError(
                source, line, id_field, f"duplicate id {problem.id!r} (first at line {first_line[problem.id]})"
            )
        first_line[problem.id] = line
        problems.append(problem)
        if limit is not None and len(problems) >= limit:
            break
    return problems


def _to_problem(row: dict[str, Any], index: int) -> tuple[Problem, str]:
    """The Problem of one row, and the field its id came from (for error messages); raises RowError."""
    rest = dict(row)
    id_field = next((f for f in ID_FIELDS if rest.get(f) is not None), None)
    if id_field is None:
        problem_id, id_field = str(index), "<row number>"
    else:
        value = rest.pop(id_field)
        if isinstance(value, bool) or not isinstance(value, (str, numbers.Integral)):
            raise RowError(id_field, f"an id must be a string or an integer, got {type(value).__name__} ({value!r})")
        problem_id = str(value)
        if not problem_id.strip():
            raise RowError(id_field, "the id is empty")

    prompt_field = next((f for f in PROMPT_FIELDS if f in rest), None)
    if prompt_field is None:
        raise RowError(
            "prompt", f"no prompt: expected one of the fields {', '.join(PROMPT_FIELDS)}; the row has {sorted(row)}"
        )
    prompt = rest.pop(prompt_field)
    if not isinstance(prompt, str):
        raise RowError(prompt_field, f"the prompt must be a string, got {type(prompt).__name__} ({prompt!r:.80})")
    if not prompt.strip():
        raise RowError(prompt_field, "the prompt is empty")

    if all(f in rest for f in CODE_FIELDS):
        for f in CODE_FIELDS:
            if not isinstance(rest[f], str):
                raise RowError(f, f"a code task's {f} must be a string, got {type(rest[f]).__name__}")
        if not rest["entry_point"].isidentifier():
            raise RowError("entry_point", f"not a Python identifier: {rest['entry_point']!r}")
        test, entry_point = rest.pop("test"), rest.pop("entry_point")
        meta = {**rest, "task": "code", "test": test, "entry_point": entry_point}
        return Problem(id=problem_id, prompt=prompt, answer=None, meta=meta), id_field

    answer_field = next((f for f in ANSWER_FIELDS if f in rest), None)
    answer = None
    if answer_field is not None:
        answer = _answer(rest.pop(answer_field), answer_field, rest)
    return Problem(id=problem_id, prompt=prompt, answer=answer, meta={**rest, "task": "math"}), id_field


def _answer(value: Any, field: str, rest: dict[str, Any]) -> str | None:
    """The gold answer of a field; a whole reference solution is reduced to its answer and kept in `rest`."""
    if value is None:
        return None
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        if not math.isfinite(value):
            raise RowError(field, f"the answer must be finite, got {value!r}")
        return str(int(value)) if float(value).is_integer() else repr(float(value))
    if not isinstance(value, str):
        raise RowError(field, f"the answer must be a string or a number, got {type(value).__name__}")
    answer = gold_answer(value)
    if not answer:
        raise RowError(field, "the answer is empty (leave the field out for a problem without a gold answer)")
    if answer != value.strip():
        rest.setdefault("solution", value)
    return answer


def _folder_split(path: str, split: str | None) -> str | None:
    """The split to read from a `save_to_disk` folder: `split`, else "test", else its only split."""
    import datasets

    saved = [n for n in ("dataset_info.json", "dataset_dict.json") if os.path.exists(os.path.join(path, n))]
    if not saved:
        raise ValueError(
            f"{path} is a folder but not one written by datasets.save_to_disk (no dataset_info.json or "
            "dataset_dict.json); pass the data file itself (.jsonl, .json, .parquet, .csv)"
        )
    with loading(path, "dataset", also=(OSError,)):
        ds = datasets.load_from_disk(path)
    if not isinstance(ds, datasets.DatasetDict):
        if split is not None:
            raise ValueError(f"{path} holds a single dataset, which has no splits; drop split={split!r}")
        return None
    if split is None:
        split = "test" if "test" in ds else next(iter(ds)) if len(ds) == 1 else None
        if split is None:
            raise ValueError(f"{path} has splits {sorted(ds)} and none is 'test'; pass split= to choose one")
    elif split not in ds:
        raise ValueError(f"{path} has no split {split!r}; it has {sorted(ds)}")
    return split


def load_hub(repo: str, config: str | None, split: str, limit: int | None) -> list[Problem]:
    """A dataset on the hub through `datasets.load_dataset`, converted as a local file's rows are."""
    return problems_from_rows(_hub_rows(repo, config, split), source=repo, limit=limit)


def _hub_rows(repo: str, config: str | None, split: str) -> Iterable[Mapping[str, Any]]:
    import datasets

    try:
        return datasets.load_dataset(repo, config, split=split)
    except Exception as e:  # no network, gated, renamed, unknown split: all worth the same advice
        raise DatasetUnavailableError(
            f"could not load {repo}{f' ({config})' if config else ''} split {split!r} through datasets.load_dataset: "
            f"{type(e).__name__}: {e}. Without network, pass the path of a local copy instead (a .jsonl or .parquet "
            "file, or a save_to_disk folder)"
        ) from e
