"""PRM800K (openai/prm800k): human -1/0/+1 ratings of MATH solution steps, with rated alternatives per step.

A row is one labelling session. The labeller walked one path (the chosen completion at each step, or their own
`human_completion` when every candidate was wrong) and rated the alternatives met on the way; the session ends at
a step with neither (phase 2 stops at the first error, whose -1 completion is then not "chosen"). So the chosen path
alone misses that error: with `branches=True` each rated alternative yields its own trace, prefix + alternative.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from ..records import Trace
from ..rows import ReadReport, RowError, get, read_traces, stable_id

# What a 0 ("neither helps nor hurts") becomes is a modelling choice, so it is an explicit option.
NEUTRAL_POLICIES = {
    "positive": {-1: 0.0, 0: 1.0, 1: 1.0},
    "negative": {-1: 0.0, 0: 0.0, 1: 1.0},
    "three-class": {-1: -1.0, 0: 0.0, 1: 1.0},
}
FINISH_REASONS = {"solution", "found_error", "give_up", "bad_problem"}


def read_prm800k(
    source: str,
    *,
    neutral: str = "three-class",
    branches: bool = True,
    skip_bad: bool = False,
    report: ReadReport | None = None,
    split: str = "train",
) -> Iterator[Trace]:
    """Traces of a PRM800K file or hub dataset: the chosen path first, then (with `branches`) one per alternative."""
    if neutral not in NEUTRAL_POLICIES:
        raise ValueError(f"neutral={neutral!r}: expected one of {sorted(NEUTRAL_POLICIES)}")
    to_label = NEUTRAL_POLICIES[neutral]
    return read_traces(
        source, lambda row: _parse_session(row, to_label, branches), skip_bad=skip_bad, report=report, split=split
    )


def _rating(completion: Any, at: str, to_label: dict[int, float], required: bool) -> int | None:
    """The -1/0/+1 rating of a completion, or None where it has none and need not."""
    r = get(completion, "rating", int, optional=True, at=at)
    if r is None and required:
        raise RowError(f"{at}.rating", "missing on a step that must be labelled")
    if r is not None and r not in to_label:
        raise RowError(f"{at}.rating", f"expected -1, 0 or 1, got {r}")
    return r


def _rated_alternatives(
    completions: list, chosen: int | None, at: str, to_label: dict[int, float]
) -> Iterator[tuple[str, int]]:
    """(text, rating) of each rated, non-blank completion at a step other than the chosen one."""
    for j, c in enumerate(completions):
        c_at = f"{at}.completions[{j}]"
        if j == chosen or (r := _rating(c, c_at, to_label, required=False)) is None:
            continue  # an unrated alternative teaches nothing
        text = get(c, "text", str, at=c_at)
        if text.strip():
            yield text, r


def _parse_session(row: dict[str, Any], to_label: dict[int, float], branches: bool) -> list[Trace]:
    """The traces of one labelling session: its chosen path (if it has steps), then each rated alternative's."""
    prompt = get(row, "question.problem", str)
    steps = get(row, "label.steps", list)
    finish = get(row, "label.finish_reason", str)
    if finish not in FINISH_REASONS:
        raise RowError("label.finish_reason", f"expected one of {sorted(FINISH_REASONS)}, got {finish!r}")
    group_id = stable_id(prompt)

    def trace(path: list[tuple[str, int]], branch: bool) -> Trace:
        path = [(text, r) for text, r in path if text.strip()]
        # From ratings, not labels: the answer's correctness must not depend on how neutral steps are mapped.
        if any(r == -1 for _, r in path):
            outcome = False
        elif finish == "solution" and not branch:
            outcome = True
        else:
            outcome = None
        labels = [to_label[r] for _, r in path]
        meta = {"finish_reason": finish, "branch": branch}
        return Trace(prompt, [text for text, _ in path], labels, outcome, group_id, meta=meta)

    path: list[tuple[str, int]] = []
    alternatives: list[Trace] = []
    for i, step in enumerate(steps):
        at = f"label.steps[{i}]"
        if not isinstance(step, dict):
            raise RowError(at, f"expected an object, got {type(step).__name__}")
        completions = get(step, "completions", list, optional=True, at=at) or []
        chosen = get(step, "chosen_completion", int, optional=True, at=at)
        for alternative in _rated_alternatives(completions if branches else [], chosen, at, to_label):
            alternatives.append(trace(path + [alternative], branch=True))
        human = get(step, "human_completion", dict, optional=True, at=at)
        if chosen is not None:
            if not 0 <= chosen < len(completions):
                raise RowError(f"{at}.chosen_completion", f"{chosen} is not an index of the completions")
            c_at = f"{at}.completions[{chosen}]"
            path.append(
                (
                    get(completions[chosen], "text", str, at=c_at),
                    _rating(completions[chosen], c_at, to_label, required=True),
                )
            )
        elif human is not None:  # written by the labeller because every candidate was wrong: a good step
            path.append((get(human, "text", str, at=f"{at}.human_completion"), 1))
        else:
            break
    chosen_trace = trace(path, branch=False)
    return ([chosen_trace] if chosen_trace.steps else []) + alternatives
