"""Rerank samples you already have: a DataFrame of sampled solutions in, one chosen row per problem out.

The same selectors as the search strategies (`select.py`), so a notebook and a search run pick the same answer
from the same candidates. The scores are the frame's own, or come from any search scorer passed as `scorer=` (a
reward model through `load_scorer`, or a judge from `prmsearch.judges`), which scores every row in one call. The
answers of all problems are grouped in one batched pass (`group_answers_many`), because the math comparisons are
the slow part; every row is checked first, so a bad row fails in milliseconds, not after the comparisons, with its
column and row label in the message.
"""

from __future__ import annotations

import math
import numbers
from typing import TYPE_CHECKING, Any

from ..errors import PrmsearchError
from ..scoring import DEFAULT_STEP_AGGREGATION, STEP_AGGREGATIONS, aggregate_steps
from ..tasks import Task, get_task
from ..verifiers.math import DEFAULT_TIMEOUT
from .select import SELECTIONS, best_of_n, group_answers_many, select_from_groups

if TYPE_CHECKING:
    import pandas as pd

OUTPUT_COLUMNS = ("answer", "score", "votes", "weight", "candidates")


class RerankError(PrmsearchError):
    """The frame cannot be reranked as given; the message names the column (and row) to fix."""


def rerank(
    frame: pd.DataFrame | Any,
    method: str = "weighted_best_of_n",
    agg: str | None = None,
    *,
    task: str = "math",
    problem_column: str = "problem_id",
    answer_column: str | None = "answer",
    text_column: str | None = "text",
    score_column: str | None = "score",
    step_scores_column: str | None = "step_scores",
    prefix: str = "rerank_",
    timeout: float = DEFAULT_TIMEOUT,
    scorer: Any = None,
    prompt_column: str = "prompt",
    gold_column: str | None = "gold",
) -> pd.DataFrame:
    """One chosen row per problem, chosen by `method` among that problem's rows ("majority", "best_of_n",
    "weighted_best_of_n"; see `prmsearch.search.select` for the rules and tie-breaking). `frame` is a pandas
    DataFrame, a `datasets.Dataset` or a list of dicts (one a row); the result is of the same kind.

    Input columns (rename with the *_column arguments; None ignores a column):
      problem_id: which problem a row answers.
      answer, or else text: the final answer, or the solution it is extracted from (`Task.answers`: a math
        solution's final answer; for task="code" the program). None/NaN or "": no answer (it never wins a vote).
      step_scores, or else score: a list of step scores aggregated by `agg` (last/min/prod/mean; default min), or
        one float. Needed by best_of_n and weighted_best_of_n; majority works without.
      With `scorer=` (a search `Scorer`: `load_scorer(...)`, `StepScorer`, `OutcomeScorer`, a judge), the scores
        come from it instead: prompt (the problem, as the scorer reads it) and text (the solution, split into steps
        by `scorer.format`) are needed, and a step scorer's step scores are aggregated by `agg` (default: as the
        scorer does, its model's own). The frame's own score columns are then not read.
    Any other column is carried through unchanged.

    Output: the chosen rows with their original index labels (so `frame.loc[out.index]` finds them), problems in
    order of first appearance, and the columns {prefix}answer (the answer used), {prefix}score (the aggregated
    score; NaN without scores), {prefix}votes (rows whose answer is equivalent to the chosen one, counting the
    chosen row; 0 when it has no answer), {prefix}weight (the sum of their scores) and {prefix}candidates (the
    problem's row count). Answers are grouped by the task (math: by equivalence, "0.5" and "\\frac{1}{2}" are one).
    A problem where no row has an answer still gets a row: its best-scoring one (or its first, without scores).
    Where the frame has `gold_column`, {prefix}correct says whether the chosen row is right (graded by the task).
    """
    frame, same_kind = _as_frame(frame)
    agg = agg or getattr(scorer, "agg", None) or DEFAULT_STEP_AGGREGATION
    out_names = _check_arguments(frame, method, agg, task, prefix)
    if scorer is not None:
        score_column = step_scores_column = None
    columns = _Columns(
        frame, problem_column, answer_column, text_column, score_column, step_scores_column, method, scorer is not None
    )
    labels = list(frame.index)
    rows = _rows_by_problem(frame, labels, problem_column)
    answers = columns.answers(frame, labels, get_task(task), timeout)
    if scorer is None:
        scores = columns.scores(frame, labels, agg)
    else:
        scores = _score_rows(frame, labels, scorer, agg, prompt_column, text_column, method)
    groups = group_answers_many([[answers[p] for p in ps] for ps in rows], task, timeout=timeout)
    chosen, extra = _choose(method, rows, groups, answers, scores if columns.scored else None)
    out = _with_columns(frame.iloc[chosen].copy(), out_names, extra)
    return same_kind(_with_gold(out, gold_column, text_column, out_names["answer"], prefix, task, timeout))


def _with_gold(
    out: pd.DataFrame, gold: str | None, text: str | None, answer: str, prefix: str, task: str, timeout: float
) -> Any:
    """The chosen rows with `{prefix}correct`: each graded by the task against its gold answer (its text where the
    frame has one, else its answer; None where the gold answer is missing). Without a gold column, as they are."""
    if gold is None or gold not in out.columns:
        return out
    from ..records import Problem
    from ..tasks import Checks

    golds = out[gold].tolist()
    problems = [Problem(str(i), "", None if _missing(g) else str(g), {"task": task}) for i, g in enumerate(golds)]
    solved = out[text] if text is not None and text in out.columns else out[answer]
    solutions = [None if _missing(s) else str(s) for s in solved.tolist()]
    grades = get_task(task).grade(problems, solutions, Checks(timeout=timeout))
    out[prefix + "correct"] = [g.correct for g in grades]
    return out


def _as_frame(rows: Any) -> tuple[pd.DataFrame, Any]:
    """`rows` as a DataFrame, and how to turn the result back into what was given: a DataFrame as it is, a list
    of dicts (rows), a `datasets.Dataset`."""
    import pandas as pd

    if isinstance(rows, pd.DataFrame):
        return rows, lambda out: out
    if isinstance(rows, list) and all(isinstance(r, dict) for r in rows):
        return pd.DataFrame(rows), lambda out: out.to_dict("records")
    if hasattr(rows, "to_pandas") and hasattr(rows, "column_names"):
        from datasets import Dataset

        return rows.to_pandas(), lambda out: Dataset.from_pandas(out, preserve_index=False)
    raise RerankError(
        f"rerank takes a pandas DataFrame, a datasets.Dataset or a list of dicts, got {type(rows).__name__}"
    )


def _with_columns(out: pd.DataFrame, names: dict[str, str], values: dict[str, list[Any]]) -> pd.DataFrame:
    import pandas as pd

    for name, column in values.items():
        # same index object, so no alignment (duplicate labels are fine); answers stay str or None (object dtype)
        out[names[name]] = pd.Series(column, index=out.index, dtype=object if name == "answer" else None)
    return out


def _rows_by_problem(frame: pd.DataFrame, labels: list[Any], problem_column: str) -> list[list[int]]:
    """Each problem's row positions, problems in order of first appearance."""
    problems: dict[Any, list[int]] = {}
    for pos, pid in enumerate(frame[problem_column].tolist()):
        if _missing(pid):
            raise RerankError(f"column {problem_column!r}, row {labels[pos]!r}: the problem id is missing")
        problems.setdefault(pid, []).append(pos)
    return list(problems.values())


def _check_arguments(frame: pd.DataFrame, method: str, agg: str, task: str, prefix: str) -> dict[str, str]:
    """The output column names, once the arguments are known to be usable (before any row is read)."""
    if method not in SELECTIONS:
        raise RerankError(f"unknown method {method!r}; choose one of {', '.join(SELECTIONS)}")
    if agg not in STEP_AGGREGATIONS:
        raise RerankError(f"unknown agg {agg!r}; choose one of {', '.join(STEP_AGGREGATIONS)}")
    try:
        get_task(task)
    except ValueError as e:
        raise RerankError(str(e)) from None
    out_names = {name: f"{prefix}{name}" for name in OUTPUT_COLUMNS}
    taken = [c for c in out_names.values() if c in frame.columns]
    if taken:
        raise RerankError(
            f"the frame already has column(s) {taken}, which rerank would overwrite; pass another prefix= "
            f"(now {prefix!r}) or rename them"
        )
    return out_names


def _choose(
    method: str,
    rows: list[list[int]],
    groups: list[list[int | None]],
    answers: list[str | None],
    scores: list[float | None] | None,
) -> tuple[list[int], dict[str, list[Any]]]:
    """The chosen row position of each problem (`rows`: its row positions) and the output columns' values."""
    chosen: list[int] = []
    extra: dict[str, list[Any]] = {name: [] for name in OUTPUT_COLUMNS}
    for ps, gs in zip(rows, groups, strict=True):
        ss = [scores[p] for p in ps] if scores is not None else None
        pick = select_from_groups(method, gs, ss)
        if pick is None:  # no row of this problem has an answer: its best-scoring row, or its first
            best = best_of_n(ss) if ss is not None else None
            pick = best if best is not None else 0
        members = [i for i, g in enumerate(gs) if g is not None and g == gs[pick]]
        chosen.append(ps[pick])
        extra["answer"].append(answers[ps[pick]])
        extra["score"].append(ss[pick] if ss is not None else math.nan)
        extra["votes"].append(len(members))
        extra["weight"].append(math.fsum(ss[i] or 0.0 for i in members) if ss is not None else math.nan)
        extra["candidates"].append(len(ps))
    return chosen, extra


class _Columns:
    """Which input columns hold the answers and the scores, and how to read one row of each."""

    def __init__(
        self,
        frame: pd.DataFrame,
        problem: str,
        answer: str | None,
        text: str | None,
        score: str | None,
        step_scores: str | None,
        method: str,
        scored_elsewhere: bool = False,
    ):
        have = list(frame.columns)
        if problem not in have:
            raise RerankError(
                f"missing column {problem!r} (which problem each row answers); the frame has {have}; "
                "pass problem_column= to use another column"
            )
        self.answer_col = answer if answer is not None and answer in have else None
        self.text_col = text if self.answer_col is None and text is not None and text in have else None
        if self.answer_col is None and self.text_col is None:
            raise RerankError(
                f"missing column {answer!r} or {text!r} (the answer, or the solution to extract it from); the frame "
                f"has {have}; pass answer_column= or text_column= to use another column"
            )
        self.steps_col = step_scores if step_scores is not None and step_scores in have else None
        self.score_col = score if self.steps_col is None and score is not None and score in have else None
        self.scored = scored_elsewhere or self.steps_col is not None or self.score_col is not None
        if method != "majority" and not self.scored:
            raise RerankError(
                f"method {method!r} needs scores: missing column {step_scores!r} (a list of step scores per row, "
                f"aggregated by agg) or {score!r} (one float per row); the frame has {have}; only 'majority' works "
                "without scores"
            )
        self.summed = method == "weighted_best_of_n"
        used = [problem, self.answer_col or self.text_col, self.steps_col or self.score_col]
        twice = [c for c in used if c is not None and have.count(c) > 1]
        if twice:
            raise RerankError(f"column(s) {twice} appear more than once in the frame; rename the copies")

    def answers(self, frame: pd.DataFrame, labels: list[Any], task: Task, timeout: float) -> list[str | None]:
        """Each row's answer; what solutions answer (`Task.answers`) is found in one batch."""
        col = self.answer_col or self.text_col
        values = [self._answer(value, col, label) for value, label in zip(frame[col].tolist(), labels, strict=True)]
        if self.text_col is not None:
            texts = [i for i, v in enumerate(values) if v is not None]
            for i, answer in zip(texts, task.answers([values[i] for i in texts], timeout=timeout), strict=True):  # type: ignore[misc]
                values[i] = answer
        return [v.strip() or None if v is not None else None for v in values]

    def _answer(self, value: Any, col: str, label: Any) -> str | None:
        if _missing(value):
            return None
        if self.answer_col is not None and _is_number(value):  # an int or float column of answers
            return str(int(value)) if float(value).is_integer() else repr(float(value))
        if not isinstance(value, str):
            raise RerankError(f"column {col!r}, row {label!r}: expected a string, got {type(value).__name__}")
        return value

    def scores(self, frame: pd.DataFrame, labels: list[Any], agg: str) -> list[float | None]:
        if self.steps_col is not None:
            col, read = self.steps_col, lambda value, label: self._aggregate(value, label, agg)
        elif self.score_col is not None:
            col, read = self.score_col, self._score
        else:
            return [None] * len(labels)
        scores = [read(value, label) for value, label in zip(frame[col].tolist(), labels, strict=True)]
        if self.summed:
            for score, label in zip(scores, labels, strict=True):
                if score < 0:
                    raise RerankError(
                        f"column {col!r}, row {label!r}: score {score!r} is negative, but weighted_best_of_n sums "
                        "scores per answer, so they must be non-negative (probabilities); apply a sigmoid, or use "
                        "method='best_of_n'"
                    )
        return scores

    def _score(self, value: Any, label: Any) -> float:
        if not _is_number(value) or not math.isfinite(value):
            raise RerankError(f"column {self.score_col!r}, row {label!r}: expected a finite number, got {value!r}")
        return float(value)

    def _aggregate(self, value: Any, label: Any, agg: str) -> float:
        col = self.steps_col
        if isinstance(value, (str, bytes, dict)) or not hasattr(value, "__len__") or len(value) == 0:
            raise RerankError(f"column {col!r}, row {label!r}: expected a non-empty list of step scores, got {value!r}")
        bad = next((s for s in value if not _is_number(s) or not math.isfinite(s)), None)
        if bad is not None:
            raise RerankError(f"column {col!r}, row {label!r}: every step score must be a finite number, got {bad!r}")
        try:
            return aggregate_steps(value, agg)
        except ValueError as e:  # agg="prod" with a score outside [0, 1]
            raise RerankError(f"column {col!r}, row {label!r}: {e}") from None


def _score_rows(
    frame: pd.DataFrame,
    labels: list[Any],
    scorer: Any,
    agg: str,
    prompt_column: str,
    text_column: str | None,
    method: str,
) -> list[float | None]:
    """Every row scored by `scorer` in one `score_solutions` call: step scores aggregated by `agg` where the scorer
    gives them (a PRM, the critic judge), else its solution score; None for a row with no steps. Negative scores
    are refused where `method` sums them."""
    have = list(frame.columns)
    for col, what in ((prompt_column, "the problem, as the scorer reads it"), (text_column, "the solution to score")):
        if col is None or col not in have:
            raise RerankError(
                f"scorer= needs column {col!r} ({what}); the frame has {have}; pass prompt_column= / text_column="
            )
    prompts, steps = [], []
    for label, prompt, text in zip(labels, frame[prompt_column].tolist(), frame[text_column].tolist(), strict=True):
        for col, value in ((prompt_column, prompt), (text_column, text)):
            if not isinstance(value, str) and not (col == text_column and _missing(value)):
                raise RerankError(f"column {col!r}, row {label!r}: expected a string, got {type(value).__name__}")
        prompts.append(prompt)
        steps.append(scorer.format.split(text) if isinstance(text, str) else [])
    got = scorer.score_solutions(prompts, steps)
    scores = [
        None if score is None else aggregate_steps(per_step, agg) if per_step else float(score)
        for score, per_step in zip(got.scores, got.step_scores, strict=True)
    ]
    negative = next((label for label, s in zip(labels, scores, strict=True) if s is not None and s < 0), None)
    if method == "weighted_best_of_n" and negative is not None:
        raise RerankError(
            f"row {negative!r}: the scorer gave a negative score (a Bradley-Terry reward?), but weighted_best_of_n "
            "sums scores per answer, so they must be non-negative; use method='best_of_n'"
        )
    return scores


def _is_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _missing(value: Any) -> bool:
    """None, NaN, pandas NA/NaT: the cells pandas reads as empty (a list or a string never is)."""
    import pandas as pd

    return value is None or (not hasattr(value, "__len__") and bool(pd.isna(value)))
