"""Math-Shepherd (peiyi9979/Math-Shepherd): automatically labelled GSM8K/MATH solutions.

`input` is the question followed by "Step 1: ... ки\\nStep 2: ... ки"; `label` is the same text with each tag
replaced by "+" or "-". The labels are read by walking both strings together rather than by searching for "+"/"-"
in `label`, because steps themselves contain "+" and "-" ("16 - 3 = 13").
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from ..records import Trace
from ..rows import ReadReport, RowError, get, read_traces, stable_id

_MARKS = {"+": 1.0, "-": 0.0}


def read_math_shepherd(
    source: str,
    *,
    tag: str = "ки",
    skip_bad: bool = False,
    report: ReadReport | None = None,
    split: str = "train",
) -> Iterator[Trace]:
    """One trace per row, hard labels (+ -> 1.0, - -> 0.0); the outcome is the last step's label."""

    def parse(row: dict[str, Any]) -> list[Trace]:
        text = get(row, "input", str)
        marked = get(row, "label", str)
        task = get(row, "task", str, optional=True)
        parts = text.split(tag)  # parts[i] ends where tag i sits; parts[-1] is what follows the last tag
        if len(parts) < 2:
            raise RowError("input", f"no step tag {tag!r}")
        if parts[-1].strip():
            raise RowError("input", f"text after the last step tag {tag!r}")
        prompt, step1, rest = parts[0].partition("Step 1:")
        if not step1:
            raise RowError("input", "no 'Step 1:' separating the question from the solution")

        labels, pos = [], 0
        for i, part in enumerate(parts[:-1], start=1):
            if marked[pos : pos + len(part)] != part:
                raise RowError("label", f"text before step {i}'s mark differs from 'input' (steps miscounted?)")
            pos += len(part)
            mark = marked[pos : pos + 1]
            if mark not in _MARKS:
                raise RowError("label", f"expected '+' or '-' where step {i}'s tag is, got {mark!r}")
            labels.append(_MARKS[mark])
            pos += 1
        if marked[pos:] != parts[-1]:
            raise RowError("label", f"{len(labels)} steps in 'input' but 'label' goes on after the last one")

        steps = [step1 + rest] + parts[1:-1]
        kept = [(s.strip(), y) for s, y in zip(steps, labels, strict=True) if s.strip()]
        meta = {"task": task} if task is not None else {}
        return [
            Trace(
                prompt=prompt.strip(),
                steps=[s for s, _ in kept],
                step_labels=[y for _, y in kept],
                outcome=kept[-1][1] > 0,
                group_id=stable_id(prompt.strip()),
                meta=meta,
            )
        ]

    return read_traces(source, parse, skip_bad=skip_bad, report=report, split=split)
