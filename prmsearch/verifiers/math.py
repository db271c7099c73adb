"""Math answers: pull the final answer out of a solution, and decide whether it is the gold answer.

Equivalence is math-verify's (HuggingFace's maintained grader on top of sympy and latex2sympy2_extended): it already
knows `\\frac`/`\\dfrac`, `\\sqrt`, `\\pi`, percentages, `\\text{}` units, intervals, sets, tuples, matrices and
"x = 3" vs "3", and is kept up to date with the models' output habits. We add what it cannot give: a hard time limit
enforced from outside (worker processes killed at their deadline, so it works from any thread and never hangs), a
cache, batching over cores, and an exact in-process fast path for plain numbers (most GSM8K-style answers never
reach sympy).

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
from dataclasses import dataclass
from fractions import Fraction

from .workers import Outcome, WorkerPool, default_workers

DEFAULT_TIMEOUT = 5.0  # seconds per comparison, math-verify's own default

_BOXED = re.compile(r"\\(?:boxed|fbox)\s*\{")
_THE_ANSWER_IS = re.compile(r"the (?:final )?answer is:?[ \t]*([^\n]+)", re.IGNORECASE)
_HASHES = re.compile(r"####[ \t]*([^\n]+)")
_A_LINE = re.compile(r"^A:[ \t]*(.+)$")
_NUMBER = re.compile(r"[-+]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|[-+]?\.\d+")
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


def extract_answer(text: str) -> str | None:
    """The final answer of a solution, or None when it states none.

    Tried in order: the last `\\boxed{}`/`\\fbox{}` (MATH), "The answer is X" (Math-Shepherd, few-shot prompts),
    "#### N" (GSM8K gold), a last line "A: N" (GSM8K model solutions), and as a fallback what follows the last "="
    of the last line that has one. Within a kind the last match wins, because solutions restate intermediate results
    before the final one. Every pattern is linear-time, so a 1-MB string is read in milliseconds.
    """
    strong = _strong_answer(text)
    if strong is not None:
        return strong
    for line in reversed(text.strip().splitlines()):
        if "=" in line:
            answer = _clean(line.rsplit("=", 1)[1])
            return answer or None
    return None


def gold_answer(gold: str) -> str:
    """The answer inside a gold field, which may be a bare answer ("18", "\\frac{1}{2}") or a whole reference
    solution ("... #### 18", "... \\boxed{18}"). No "=" fallback here: a bare gold "x = 3" is the answer itself."""
    return _strong_answer(gold) or gold.strip()


def _strong_answer(text: str) -> str | None:
    boxed = _last_boxed(text)
    if boxed is not None:
        return boxed.strip()
    for pattern in (_THE_ANSWER_IS, _HASHES):
        last = None
        for last in pattern.finditer(text):  # noqa: B007 -- the loop is how to reach the last match
            pass
        if last is not None:
            return _clean(last.group(1))
    lines = text.strip().splitlines()
    m = _A_LINE.match(lines[-1].strip()) if lines else None
    return _clean(m.group(1)) if m else None


def _last_boxed(text: str) -> str | None:
    """The inside of the last `\\boxed{...}` whose brace closes. One pass with a stack, so "\\boxed{" repeated
    100,000 times without a closing brace costs one read of the string, not one per opening."""
    starts = {m.end() - 1 for m in _BOXED.finditer(text)}  # positions of the boxes' "{"
    if not starts:
        return None
    open_at: list[int] = []
    best: tuple[int, int] | None = None
    for m in re.finditer(r"[{}]", text):
        if m.group() == "{":
            open_at.append(m.start())
        elif open_at:
            start = open_at.pop()
            if start in starts and (best is None or start > best[0]):
                best = (start, m.start())
    return text[best[0] + 1 : best[1]] if best else None


def _clean(answer: str) -> str:
    """Drop the sentence's full stop and a `$...$` wrapper: "The answer is $\\frac{1}{2}$." -> "\\frac{1}{2}"."""
    answer = answer.strip().rstrip(".").strip()
    if len(answer) > 1 and answer.startswith("$") and answer.endswith("$"):
        answer = answer[1:-1].strip()
    return answer


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


def _fast_verdict(pred: str, gold: str) -> tuple[bool, str] | None:
    """A sound verdict without sympy, or None when sympy must decide."""
    if " ".join(pred.split()) == " ".join(gold.split()):
        return True, "identical"
    p, g = _plain_number(pred), _plain_number(gold)
    if p is None or g is None:
        return None
    if p == g:
        return True, "equivalent"
    if p.denominator == 1 and g.denominator == 1:  # integers: no rounding question, math-verify would agree
        return False, "not equivalent"
    return None


def _compare(pred: str, gold: str) -> bool:
    """The comparison itself, with no time limit: run it only inside a worker (`_POOL`)."""
    from math_verify import parse, verify

    pred = _strip_unit_words(pred.strip())  # math-verify reads "18 dollars" as a product of symbols
    # Wrapping in \boxed{} makes math-verify take the whole string as one answer (LaTeX or plain).
    gold_parsed = parse(f"\\boxed{{{gold}}}", parsing_timeout=None)
    pred_parsed = parse(f"\\boxed{{{pred}}}", parsing_timeout=None)
    return bool(verify(gold_parsed, pred_parsed, timeout_seconds=None))


def _warm_up() -> None:
    """Run once in the pool's supervisor, before it forks the workers: silence math-verify's "timeout disabled"
    warning (the pool is the timeout) and build its parser tables outside any call's time."""
    import logging

    logging.getLogger("math_verify").setLevel(logging.ERROR)
    _compare("\\frac{1}{2}", "0.5")


@dataclass(frozen=True)
class Grade:
    """`answer`: what was extracted (None if nothing); `reason`: "identical", "equivalent", "not equivalent",
    "no answer", "timeout", or "error: ..." (the comparison raised or its worker crashed)."""

    answer: str | None
    correct: bool
    reason: str


_POOL: WorkerPool | None = None
_POOL_LOCK = threading.Lock()
_CACHE: OrderedDict[tuple[str, str], tuple[bool, str]] = OrderedDict()
_CACHE_SIZE = 200_000


def _pool(workers: int) -> WorkerPool:
    global _POOL
    with _POOL_LOCK:
        if _POOL is None or _POOL.size < workers:
            if _POOL is not None:
                _POOL.close()
            _POOL = WorkerPool(f"{__name__}:_compare", workers, init_ref=f"{__name__}:_warm_up")
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
        if fast:
            with _POOL_LOCK:
                cached = _CACHE.get(key)
            verdicts[i] = cached or _fast_verdict(pred, gold)
        if verdicts[i] is None:
            todo.setdefault(key, []).append(i)
    if todo:
        keys = list(todo)
        bar = _progress_bar(len(keys), progress)
        outcomes = _pool(workers or default_workers()).map(
            keys, timeout, on_done=(lambda _i, _o: bar.update()) if bar else None
        )
        if bar:
            bar.close()
        for key, outcome in zip(keys, outcomes, strict=True):
            verdict = _verdict(outcome)
            if outcome.status != "timeout":  # a timeout can be the machine's load, not the answer's fault
                _remember(key, verdict)
            for i in todo[key]:
                verdicts[i] = verdict
    return verdicts  # type: ignore[return-value]


def _verdict(outcome: Outcome) -> tuple[bool, str]:
    if outcome.status == "ok":
        return (True, "equivalent") if outcome.value else (False, "not equivalent")
    if outcome.status == "timeout":
        return False, "timeout"
    return False, f"error: {outcome.value}"


def _remember(key: tuple[str, str], verdict: tuple[bool, str]) -> None:
    with _POOL_LOCK:
        _CACHE[key] = verdict
        _CACHE.move_to_end(key)
        while len(_CACHE) > _CACHE_SIZE:
            _CACHE.popitem(last=False)


def _progress_bar(total: int, enabled: bool):
    if not enabled or total < 50:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc="comparing answers", unit="pair")


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
    answers = [extract_answer(s) for s in solutions]
    verdicts = compare_many(
        answers, [gold_answer(g) for g in golds], timeout=timeout, workers=workers, progress=progress, fast=fast
    )
    return [Grade(a, ok, why) for a, (ok, why) in zip(answers, verdicts, strict=True)]


def start_workers(workers: int | None = None) -> None:
    """Start the comparison workers now rather than at the first comparison that needs them (about a second:
    sympy's import). A server calls this at startup so its first request is not the slow one."""
    _pool(workers or default_workers()).map([("1", "1")], timeout=60)


def clear_cache() -> None:
    """Forget every cached verdict (benchmarks and tests that must compare again)."""
    with _POOL_LOCK:
        _CACHE.clear()


def shutdown() -> None:
    """Stop the comparison workers now (they also stop at exit); the next comparison starts new ones."""
    global _POOL
    with _POOL_LOCK:
        pool, _POOL = _POOL, None
    if pool is not None:
        pool.close()
