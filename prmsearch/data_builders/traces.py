"""Raw solution traces without step labels: one or more sampled solutions per problem, each maybe graded.

This is what a model's samples look like before any labelling (e.g. GSM8K's released model solutions, or a file of
K samples per MATH problem). Solutions become steps by splitting on `separator`; their outcome comes from the row
when it says so, else from grading the extracted answer against `gold_field`, so ORM/BT labels can be built.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from ..records import Trace
from ..rows import ReadReport, RowError, get, read_traces, stable_id
from ..steps import StepFormat
from ..verifiers.math import extract_answer, gold_answer, is_equivalent


def read_traces_file(
    source: str,
    *,
    prompt_field: str = "question",
    solution_fields: Sequence[str] = ("solution",),
    solution_key: str = "solution",
    outcome_key: str = "is_correct",
    gold_field: str | None = None,
    separator: str = "\n",
    skip_bad: bool = False,
    report: ReadReport | None = None,
    split: str = "train",
) -> Iterator[Trace]:
    """One trace per solution. A solution field holds a string, a `{solution_key, outcome_key}` dict, or a list of
    either (K samples); traces of one row share a `group_id` (the row's `id`/`unique_id`, else a hash of the prompt).

    `gold_field` may hold a bare answer or a whole gold solution ("... #### 18", "... A: 18"): its final answer is
    extracted when it has one.
    """
    if isinstance(solution_fields, str):  # ("solution") is a str, not a 1-tuple: a classic slip
        solution_fields = (solution_fields,)
    fmt = StepFormat(separator=separator)

    def parse(row: dict[str, Any]) -> list[Trace]:
        prompt = get(row, prompt_field, str)
        row_id = next((row[k] for k in ("id", "unique_id") if isinstance(row.get(k), (str, int))), None)
        group_id = str(row_id) if row_id is not None else stable_id(prompt)
        gold = None
        if gold_field is not None:
            raw_gold = str(get(row, gold_field, (str, int, float)))
            gold = gold_answer(raw_gold)

        traces = []
        for name in solution_fields:
            value = get(row, name, (str, dict, list))
            samples = value if isinstance(value, list) else [value]
            for k, sample in enumerate(samples):
                at = f"{name}[{k}]" if isinstance(value, list) else name
                if isinstance(sample, str):
                    text, outcome = sample, None
                elif isinstance(sample, dict):
                    text = get(sample, solution_key, str, at=at)
                    outcome = get(sample, outcome_key, bool, optional=True, at=at)
                else:
                    raise RowError(at, f"expected a solution string or object, got {type(sample).__name__}")
                if outcome is None and gold is not None:  # no answer found counts as wrong
                    outcome = is_equivalent(extract_answer(text), gold)
                traces.append(
                    Trace(prompt, fmt.split(text), None, outcome, group_id, meta={"system": name, "sample": k})
                )
        return traces

    return read_traces(source, parse, skip_bad=skip_bad, report=report, split=split)
