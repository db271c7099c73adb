"""Math answers: run answer extraction (`verifiers.answers`) and comparison under hard time limits, and grade.

Equivalence is math-verify's (HuggingFace's maintained grader on top of sympy and latex2sympy2_extended): it already
knows `\\frac`/`\\dfrac`, `\\sqrt`, `\\pi`, percentages, `\\text{}` units, intervals, sets, tuples, matrices and
"x = 3" vs "3", and is kept up to date with the models' output habits. We add what it cannot give: a hard time limit
enforced from outside (worker processes killed at their deadline, so it works from any thread and never hangs), a
cache, batching over cores, and exact in-process fast paths: an answer is extracted in process wherever that is
sure to give math-verify's pick (`answers.in_process`: 499 of MATH-500's 500 reference solutions), and the same
string, plain numbers and plain fractions are compared without sympy. Extraction that needs sympy runs in the same
workers as comparisons. Where our rules run before or instead of math-verify's (GSM8K's formats, units, golds
that are whole solutions), they keep its "right" right: tests/test_math_verifier.py sweeps a corpus for that.

The comparison is gold-directed, like math-verify's: the prediction may say more than the gold ("x = 3" and
"2x + z = 3" both match gold "3": the answer is what stands after the last "="), but a gold equation that is not an
assignment is not matched by its right-hand side alone. Swap the arguments and the verdict can change; to group
predictions among themselves (weighted best-of-N), compare each with a fixed representative.
"""

from __future__ import annotations

import re
import threading
from collections import OrderedDict
from collections.abc import Sequence
from fractions import Fraction

from ..records import Grade
from . import answers
from .workers import Outcome, WorkerPool, default_workers

DEFAULT_TIMEOUT = 5.0  # seconds per comparison, math-verify's own default

# thousands separators as math-verify reads them ("0,500" is 0.5 there, not 500: a decimal comma)
_NUMBER = re.compile(r"[-+]?(?:[1-9]\d{0,2}(?:,\d{3})+|\d+)(?:\.\d+)?|[-+]?\.\d+")
_FRACTION = re.compile(r"([-+]?)(?:\\[dt]?frac\{(\d+)\}\{(\d+)\}|(\d+)/(\d+))")  # "\frac{1}{2}", "-3/4"
_WORDS = re.compile(r"(?<!\\)\b[a-zA-Z]{3,}")
_TEXT = re.compile(r"\\text\{[^{}]*\}")
_SOLUTION_MARK = re.compile(r"\\boxed|\\fbox|\banswer\b", re.IGNORECASE)
_SOLUTION_WORDS = 4  # a gold with this many words (outside \text{}) is a sentence: a worked solution
_UNIT_WORDS = re.compile(r"(\$?[-+]?[\d.,]*\d)((?:\s+[a-zA-Z]{2,}\.?){1,3})")  # "18 dollars", "$5 per day."
_NOT_UNITS = {
    "pi",
    "sqrt",
    "frac",
    "sin",
    "cos",
    "tan",
    "log",
    "ln",
    "exp",
    "mod",
    "inf",
    "infty",
    "and",
    "or",
    "percent",
    "degrees",
    "radians",
    "times",
    "over",
    "plus",
    "minus",
}
_MAX_FAST_CHARS = 60  # longer answers go to sympy (and its time limit), never to int() or a regex here


def extract_answer(text: str, *, timeout: float = DEFAULT_TIMEOUT) -> str | None:
    """The final answer of a solution, or None when it states none: "#### N" or a last line "A: N" (GSM8K), else
    the answer math-verify's own extraction picks (`verifiers.answers`), else what follows "The answer is".

    Never takes much longer than `timeout`: extraction that needs sympy runs in a killable worker, and an
    extraction that overruns counts as no answer. For many solutions, `extract_many` shares one batch.
    """
    return extract_many([text], timeout=timeout)[0]


def gold_answer(gold: str, *, timeout: float = DEFAULT_TIMEOUT) -> str:
    """The answer inside a gold field. A bare answer ("18", "\\frac{1}{2}", "x = 3", "y \\geq 3", "\\text{(C)}") is
    the answer itself; a whole reference solution ("... #### 18", "... \\boxed{18}", "... The answer is 18 because
    ...", "Answer: 18", a sentence of several words) gives the answer `extract_answer` finds in it, as in a model's
    solution: math-verify's own pick, so that a gold it reads right is not read otherwise here. For many golds,
    `gold_answers` shares one batch."""
    return gold_answers([gold], timeout=timeout)[0]


def gold_answers(golds: Sequence[str], *, timeout: float = DEFAULT_TIMEOUT, workers: int | None = None) -> list[str]:
    """`gold_answer` for many golds: the solutions among them extracted in one batch (in process where the text
    allows, as `extract_many`); a solution with no answer in it stays whole."""
    solutions = [i for i, gold in enumerate(golds) if is_solution(gold)]
    reduced = [gold.strip() for gold in golds]
    found = _extract([golds[i] for i in solutions], timeout, workers, progress=False)
    for i, (answer, _status) in zip(solutions, found, strict=True):
        reduced[i] = answer or reduced[i]
    return reduced


def is_solution(gold: str) -> bool:
    """Whether a gold field is a worked solution rather than a bare answer: it boxes its answer, has GSM8K's
    "#### N" or "A: N", says "answer", or is a sentence (4 or more words outside `\\text{}`)."""
    if _SOLUTION_MARK.search(gold) or answers.gsm8k_answer(gold) is not None:
        return True
    return len(_WORDS.findall(_TEXT.sub("", gold))) >= _SOLUTION_WORDS


def _plain_number(answer: str) -> Fraction | None:
    """The exact value of a plain number ("1,234", "-0.50", "$18", "18 dollars"), or None for anything else."""
    if len(answer) > _MAX_FAST_CHARS:
        return None
    text = _strip_unit_words(answer.strip().replace("\\$", "$").replace("\\!", "")).lstrip("$").strip()
    if not _NUMBER.fullmatch(text):
        return None
    return Fraction(text.replace(",", ""))


def _strip_unit_words(answer: str) -> str:
    """ "18 dollars" -> "18": a plain number followed by up to three words that are not math ("3 x", "2 pi" stay)."""
    m = _UNIT_WORDS.fullmatch(answer) if len(answer) <= _MAX_FAST_CHARS else None
    if m is None or any(w.rstrip(".").lower() in _NOT_UNITS for w in m.group(2).split()):
        return answer
    return m.group(1)


def _exact_value(answer: str) -> Fraction | None:
    """The exact value of a plain number or a plain fraction ("\\frac{3}{4}", "-3/4"), or None."""
    m = _FRACTION.fullmatch(answer.strip()) if len(answer) <= _MAX_FAST_CHARS else None
    if m is None:
        return _plain_number(answer)
    top, bottom = (int(m.group(2) or m.group(4)), int(m.group(3) or m.group(5)))
    return Fraction(-top if m.group(1) == "-" else top, bottom) if bottom else None


def _fast_verdict(pred: str, gold: str) -> tuple[bool, str] | None:
    """A sound verdict without sympy, or None when sympy must decide: the same string, the same exact value (which
    math-verify always finds equal), or two different integers (which it never does)."""
    if " ".join(pred.split()) == " ".join(gold.split()):
        return True, "identical"
    p, g = _exact_value(pred), _exact_value(gold)
    if p is None or g is None:
        return None
    if p == g:
        return True, "equivalent"
    if p.denominator == 1 and g.denominator == 1:  # integers: no rounding question, math-verify would agree
        return False, "not equivalent"
    return None


def _compare(pred: str, gold: str) -> bool:
    """The comparison itself, with no time limit: run it only inside a worker (`_POOL`)."""
    from math_verify import verify

    pred = _strip_unit_words(pred.strip())  # math-verify reads "18 dollars" as a product of symbols
    gold_parsed = _parse_answer(gold)
    if answers.decimal_point(gold) != gold:  # "3,5": the set {3, 5} in a box, 3.5 as math-verify reads it bare
        gold_parsed += _parse_answer(answers.decimal_point(gold))
    pred_parsed = _parse_answer(pred)
    if pred.endswith("%"):  # "12.5%" also stands for the number of percent, as math-verify's own parse lets it
        pred_parsed += _parse_answer(pred.removesuffix("%").removesuffix("\\"))
    return bool(verify(gold_parsed, pred_parsed, timeout_seconds=None))


def _parse_answer(answer: str) -> list:
    """math-verify's reading of one answer: wrapped in \\boxed{}, so that it takes the whole string (LaTeX or
    plain). Where the box does not parse, math-verify reads a match inside it instead ("3" of "х = 3", with a
    Cyrillic "х"), except for an answer nested too deep for latex2sympy (`answers.too_deep`): its innermost
    "\\frac{1}{2}" does not stand for it, so only the box is read (and, unparsed, equals only itself)."""
    from math_verify import parse
    from math_verify.parser import LatexExtractionConfig

    if answers.too_deep(answer):
        only_boxes = [LatexExtractionConfig(try_extract_without_anchor=False)]
        return parse(f"\\boxed{{{answer}}}", extraction_config=only_boxes, parsing_timeout=None)
    return parse(f"\\boxed{{{answer}}}", parsing_timeout=None)


def _work(op: str, *args: str) -> object:
    """What a worker runs: a comparison (pred, gold) or an extraction (text), with no time limit of its own."""
    return _compare(*args) if op == "compare" else answers.in_worker(*args)


def _warm_up() -> None:
    """Run once in the pool's supervisor, before it forks the workers: silence math-verify's "timeout disabled"
    warning (the pool is the timeout) and build its parser tables and patterns outside any call's time."""
    import logging

    logging.getLogger("math_verify").setLevel(logging.ERROR)
    _compare("\\frac{1}{2}", "0.5")
    answers.in_worker("so $x = \\frac{1}{2}$")


_POOL: WorkerPool | None = None
_POOL_LOCK = threading.Lock()
_CACHE: OrderedDict[tuple[str, str], tuple[bool, str]] = OrderedDict()
_CACHE_SIZE = 200_000
_ANSWERS: OrderedDict[bytes, str | None] = OrderedDict()  # extractions, keyed by a digest of the text


def _pool(workers: int) -> WorkerPool:
    global _POOL
    with _POOL_LOCK:
        if _POOL is None or _POOL.size < workers:
            if _POOL is not None:
                _POOL.close()
            _POOL = WorkerPool(f"{__name__}:_work", workers, init_ref=f"{__name__}:_warm_up")
        return _POOL


def compare_many(
    preds: Sequence[str | None],
    golds: Sequence[str],
    *,
    timeout: float = DEFAULT_TIMEOUT,
    workers: int | None = None,
    progress: bool = False,
    fast: bool = True,
) -> list[tuple[bool, str]]:
    """(correct, reason) for every (pred, gold): the cache and exact in-process checks first (`fast=False` skips
    both, so every pair goes through sympy: for benchmarks and for checking the fast path), worker processes for the
    rest."""
    if len(preds) != len(golds):
        raise ValueError(f"got {len(preds)} predictions but {len(golds)} gold answers")
    verdicts: list[tuple[bool, str] | None] = [None] * len(preds)
    todo: dict[tuple[str, str], list[int]] = {}
    for i, (pred, gold) in enumerate(zip(preds, golds, strict=True)):
        if pred is None:
            verdicts[i] = (False, "no answer")
            continue
        key = (pred, gold)
        if fast:  # the exact checks first, so a verdict's reason does not depend on what was compared before
            verdicts[i] = _fast_verdict(pred, gold)
            if verdicts[i] is None:
                with _POOL_LOCK:
                    verdicts[i] = _CACHE.get(key)
        if verdicts[i] is None:
            todo.setdefault(key, []).append(i)
    if todo:
        keys = list(todo)
        bar = _progress_bar(len(keys), progress)
        outcomes = _pool(workers or default_workers()).map(
            [("compare", *k) for k in keys], timeout, on_done=(lambda _i, _o: bar.update()) if bar else None
        )
        if bar:
            bar.close()
        for key, outcome in zip(keys, outcomes, strict=True):
            verdict = _verdict(outcome)
            if outcome.status != "timeout":  # a timeout can be the machine's load, not the answer's fault
                _remember(_CACHE, key, verdict)
            for i in todo[key]:
                verdicts[i] = verdict
    return verdicts  # type: ignore[return-value]


def _verdict(outcome: Outcome) -> tuple[bool, str]:
    if outcome.status == "ok":
        return (True, "equivalent") if outcome.value else (False, "not equivalent")
    if outcome.status == "timeout":
        return False, "timeout"
    return False, f"error: {outcome.value}"


def _remember(cache: OrderedDict, key: object, value: object) -> None:
    with _POOL_LOCK:
        cache[key] = value
        cache.move_to_end(key)
        while len(cache) > _CACHE_SIZE:
            cache.popitem(last=False)


def _progress_bar(total: int, enabled: bool, desc: str = "comparing answers", unit: str = "pair"):
    if not enabled or total < 50:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit=unit)


def extract_many(
    texts: Sequence[str], *, timeout: float = DEFAULT_TIMEOUT, workers: int | None = None, progress: bool = False
) -> list[str | None]:
    """`extract_answer` for many solutions: decided in process where the text allows (`answers.in_process`),
    in one batch of worker calls for the rest; cached."""
    return [a for a, _ in _extract(texts, timeout, workers, progress)]


def _extract(texts: Sequence[str], timeout: float, workers: int | None, progress: bool) -> list[tuple[str | None, str]]:
    """(answer, status) per text; status "ok", "timeout" or "error: ..." (the extraction's worker failed)."""
    import hashlib

    found: list[tuple[str | None, str] | None] = [None] * len(texts)
    todo: dict[bytes, list[int]] = {}
    for i, text in enumerate(texts):
        key = hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).digest()
        with _POOL_LOCK:
            if key in _ANSWERS:
                found[i] = (_ANSWERS[key], "ok")
                continue
        decided, answer = answers.in_process(text)
        if decided:
            found[i] = (answer or answers.stated_answer(text), "ok")
            _remember(_ANSWERS, key, found[i][0])
        else:
            todo.setdefault(key, []).append(i)
    if todo:
        keys = list(todo)
        bar = _progress_bar(len(keys), progress, "extracting answers", "solution")
        outcomes = _pool(workers or default_workers()).map(
            [("extract", texts[todo[k][0]]) for k in keys],
            timeout,
            on_done=(lambda _i, _o: bar.update()) if bar else None,
        )
        if bar:
            bar.close()
        for key, outcome in zip(keys, outcomes, strict=True):
            if outcome.status == "ok":
                text = texts[todo[key][0]]
                result = (outcome.value or answers.stated_answer(text), "ok")
                _remember(_ANSWERS, key, result[0])
            else:
                result = (None, "timeout" if outcome.status == "timeout" else f"error: {outcome.value}")
            for i in todo[key]:
                found[i] = result
    return found  # type: ignore[return-value]


def is_equivalent(pred: str | None, gold: str | None, *, timeout: float = DEFAULT_TIMEOUT) -> bool:
    """Whether `pred` is mathematically the gold answer ("1,000" == "1000", "0.5" == "\\frac{1}{2}").

    Never raises and never takes much longer than `timeout`: a parse failure or a timeout counts as not equivalent,
    so one odd answer cannot stop a run.
    """
    if pred is None or gold is None:
        return False
    return compare_many([pred], [gold], timeout=timeout)[0][0]


def grade(solution: str, gold: str, *, timeout: float = DEFAULT_TIMEOUT) -> Grade:
    """Extract the final answer of `solution` and compare it with `gold` (a bare answer or a whole reference
    solution, see `gold_answer`)."""
    return grade_many([solution], [gold], timeout=timeout, progress=False)[0]


def grade_many(
    solutions: Sequence[str],
    golds: Sequence[str],
    *,
    timeout: float = DEFAULT_TIMEOUT,
    workers: int | None = None,
    progress: bool = True,
    fast: bool = True,
) -> list[Grade]:
    """`grade` for many solutions at once, comparisons spread over `workers` processes (default: all usable
    cores). Equal (answer, gold) pairs are compared once; `fast` as in `compare_many`."""
    if len(solutions) != len(golds):
        raise ValueError(f"got {len(solutions)} solutions but {len(golds)} gold answers")
    extracted = _extract(solutions, timeout, workers, progress)
    verdicts = compare_many(
        [a for a, _ in extracted],
        gold_answers(golds, timeout=timeout, workers=workers),
        timeout=timeout,
        workers=workers,
        progress=progress,
        fast=fast,
    )
    return [
        Grade(a, ok, why if status == "ok" else status)
        for (a, status), (ok, why) in zip(extracted, verdicts, strict=True)
    ]


def start_workers(workers: int | None = None) -> None:
    """Start the comparison workers now rather than at the first comparison that needs them (about a second:
    sympy's import). A server calls this at startup so its first request is not the slow one."""
    _pool(workers or default_workers()).map([("compare", "1", "1")], timeout=60)


def clear_cache() -> None:
    """Forget every cached verdict (benchmarks and tests that must compare again)."""
    with _POOL_LOCK:
        _CACHE.clear()
        _ANSWERS.clear()


def shutdown() -> None:
    """Stop the comparison workers now (they also stop at exit); the next comparison starts new ones."""
    global _POOL
    with _POOL_LOCK:
        pool, _POOL = _POOL, None
    if pool is not None:
        pool.close()
