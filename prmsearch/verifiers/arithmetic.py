"""Check the arithmetic of each step: a cheap, exact source of process labels for arithmetic traces.

GSM8K-style solutions state their computations, either as calculator annotations (`<<48/2=24>>`) or as plain
equations ("16 - 3 - 4 = 9"). Each one is evaluated exactly (sympy rationals) and compared with the value the step
claims, so a step whose arithmetic is wrong is found without any rollouts. It says nothing about whether a step is
the right thing to compute: a correct equation in a wrong plan passes.

Expressions are parsed here by a small grammar (numbers, + - * / ^, parentheses, %), never by `sympify`, which
evaluates Python and must not see model output.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # sympy takes ~0.4 s to import: paid by the first check, not by `import prmsearch`
    from sympy import Rational

_ANNOTATION = re.compile(r"<<([^<>]*)>>")
_TOKEN = re.compile(
    r"(?P<num>\$?(?:(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|\.\d+)(?:\.\.\.|…)?%?|[¼½¾])"  # 1,234.5 $18 20% .5 3.33...
    r"|(?P<op>[-+*/×÷^·−–])"
    r"|(?P<lp>\()|(?P<rp>\))"
    r"|(?P<eq>=)"
    r"|(?P<space>\s+)"
    r"|(?P<word>[^\W\d_]+)"
    r"|(?P<other>.)",
    re.DOTALL,
)
_OPS = {"×": "*", "·": "*", "x": "*", "X": "*", "÷": "/", "−": "-", "–": "-"}
_VULGAR = {"¼": "1/4", "½": "1/2", "¾": "3/4"}
_ARITH = ("num", "op", "lp", "rp")
_MAX_EXPONENT = 100
_MAX_DIGITS = 30  # longer literals are not arithmetic a step would state


@dataclass(frozen=True)
class Equation:
    """One stated computation: `expression` = `claimed`. `value` is the exact value of the expression as a string
    ("24", "10/3") and `correct` whether the claim matches it (None when the expression could not be evaluated:
    division by zero, a huge power). A claimed decimal with d places may be rounded or truncated (`10/3 = 3.33`),
    and a calculator's float noise is forgiven (`4.20 + 9.45 + 1.35 = 14.999999999999998`)."""

    expression: str
    claimed: str
    value: str | None
    correct: bool | None


@dataclass(frozen=True)
class StepCheck:
    """`correct`: False if any equation of the step is wrong, True if it has equations and all are right, None when
    it states no checkable arithmetic."""

    step: str
    equations: tuple[Equation, ...]
    correct: bool | None


def check_arithmetic_steps(solution: str | Sequence[str], separator: str = "\n") -> list[StepCheck]:
    """One `StepCheck` per step of `solution` (a list of steps, or text split on `separator`; empty steps dropped,
    as `StepFormat.split` does)."""
    steps = [s.strip() for s in solution.split(separator)] if isinstance(solution, str) else list(solution)
    checks = []
    for step in steps:
        if isinstance(solution, str) and not step:
            continue
        equations: dict[tuple[str, str], Equation] = {}
        for m in _ANNOTATION.finditer(step):
            for eq in _equations(m.group(1)):
                equations.setdefault(_key(eq), eq)
        for eq in _equations(_ANNOTATION.sub(" ", step)):  # the visible text restates the annotation: counted once
            equations.setdefault(_key(eq), eq)
        found = tuple(equations.values())
        verdicts = [e.correct for e in found if e.correct is not None]
        correct = None if not verdicts else all(verdicts)
        checks.append(StepCheck(step, found, correct))
    return checks


def _key(eq: Equation) -> tuple[str, str]:
    return re.sub(r"[\s$,]", "", eq.expression), re.sub(r"[\s$,]", "", eq.claimed)


def _tokens(text: str) -> list[tuple[str, str]]:
    tokens = [(m.lastgroup, m.group()) for m in _TOKEN.finditer(text) if m.lastgroup != "space"]
    for k in range(1, len(tokens) - 1):
        if tokens[k] in (("word", "x"), ("word", "X")) and tokens[k - 1][0] in ("num", "rp", "word"):
            if tokens[k + 1][0] in ("num", "lp"):
                tokens[k] = ("op", "x")  # "3 x 4", "15 pages x 1/3"; "3x + 4" keeps its variable
    return tokens


def _is_unit(word: str) -> bool:
    """ "hours", "slices", "cm" stand for units after a number; one letter ("3B", "2x") is taken for a variable."""
    return len(word) > 1


def _run(tokens: list[tuple[str, str]], i: int, step: int) -> list[tuple[str, str]] | None:
    """The arithmetic next to the "=" at `i`, going left (`step` -1) or right (+1), passing over unit words
    between a number and an operator ("9 hours * 2/3"). None when a variable takes part ("3B - 30 = 45")."""
    run: list[tuple[str, str]] = []
    j = i + step
    while 0 <= j < len(tokens):
        kind, value = tokens[j]
        if kind in _ARITH:
            run.append(tokens[j])
        elif kind == "word":
            end = j
            while 0 <= end + step < len(tokens) and tokens[end + step][0] == "word" and abs(end - j) < 2:
                end += step
            lo, hi = min(j, end), max(j, end)  # up to three words: "32 water type / 96"
            if not (lo > 0 and hi < len(tokens) - 1 and tokens[lo - 1][0] == "num" and tokens[hi + 1][0] == "op"):
                break  # a word that ends the arithmetic
            if not all(_is_unit(w) for _, w in tokens[lo : hi + 1]):
                return None
            j = end
        else:
            break
        j += step
    return run[::-1] if step < 0 else run


def _equations(text: str) -> list[Equation]:
    """Every "arithmetic = arithmetic" in `text` where the left side computes something. The right side may go on
    computing ("2 * 3 = 6 * 2 = 12"): each "=" is checked between what stands just before and just after it, and a
    right side that is a running computation is also accepted when its first number is the left side's value."""
    tokens = _tokens(text)
    found = []
    for i, (kind, _) in enumerate(tokens):
        if kind != "eq":
            continue
        left, right = _run(tokens, i, -1), _run(tokens, i, +1)
        if not left or not right:
            continue
        first = i - len(left)  # where the left side starts among the tokens
        if left[0][0] == "op" and first > 0 and tokens[first - 1][0] == "word":
            continue  # "X*4 + 240 = 1920", "B - 10 = 45": the left operand is a variable
        while left and (left[0][0] == "rp" or (left[0][0] == "op" and left[0][1] not in "-−–")):
            left = left[1:]
        if not any(k == "op" for k, _ in left) or not any(k == "num" for k, _ in left):
            continue  # "x = 5", "12 = 12": nothing computed
        expression = " ".join(t for _, t in left)
        claimed = " ".join(t for _, t in right)
        value = _evaluate(left)
        if value is None and left[0][0] == "lp":  # "costs (3 + 4 = 7": a parenthesis opened before the equation
            value = _evaluate(left[1:])
        found.append(Equation(expression, claimed, None if value is None else str(value), _matches(value, right)))
    return found


def _number(text: str) -> Rational | None:
    from sympy import Rational

    if text in _VULGAR:
        return Rational(_VULGAR[text])
    percent = text.endswith("%")
    digits = text.strip("$%").replace(",", "").replace("...", "").replace("…", "")
    if len(digits) > _MAX_DIGITS:
        return None
    value = Rational(digits)
    return value / 100 if percent else value


def _matches(value: Rational | None, right: list[tuple[str, str]]) -> bool | None:
    from sympy import Rational

    if value is None:
        return None
    claims = []
    whole = _mixed_number(right) or _evaluate(right)
    if whole is not None:
        claims.append((whole, right))
    if right[0][0] == "num" and len(right) > 1:  # a running computation goes on from its first number
        claims.append((_number(right[0][1]), right[:1]))
    if right[0][0] == "op" and right[0][1] in "-−–" and len(right) > 1 and right[1][0] == "num":
        number = _number(right[1][1])
        claims.append((None if number is None else -number, right[1:2]))
    claims = [(c, toks) for c, toks in claims if c is not None]
    if not claims:
        return None
    for claim, toks in claims:
        last = toks[-1][1]
        digits = last.rstrip("%").replace("...", "").replace("…", "")
        places = len(digits.split(".")[1]) if "." in digits and len(toks) == 1 else 0
        candidates = [claim, claim * 100] if last.endswith("%") else [claim]  # "= 20%" may mean 20 or 0.2
        unit = Rational(1, 10**places)
        for c in candidates:
            if value == c or abs(value - c) <= abs(c) * Rational(1, 10**9):  # a calculator's float noise
                return True
            rounded = abs(value - c) <= unit / 2
            truncated = 0 <= abs(value) - abs(c) < unit and (value >= 0) == (c >= 0)
            if places and (rounded or truncated):
                return True
    return False


def _mixed_number(tokens: list[tuple[str, str]]) -> Rational | None:
    """ "3 1/2" (three and a half), as GSM8K solutions write it."""
    kinds = [k for k, _ in tokens]
    if kinds != ["num", "num", "op", "num"] or tokens[2][1] != "/":
        return None
    whole, num, den = (_number(tokens[k][1]) for k in (0, 1, 3))
    if None in (whole, num, den) or den == 0 or not whole.is_integer:
        return None
    return whole + num / den


def _evaluate(tokens: list[tuple[str, str]]) -> Rational | None:
    """Exact value of a token list by precedence climbing; None if it is not a well-formed expression or cannot be
    evaluated safely."""
    parser = _Parser([(kind, _OPS.get(text, text) if kind == "op" else text) for kind, text in tokens])  # "×" -> "*"
    try:
        value = parser.sum_()
    except ValueError:
        return None
    return value if parser.pos == len(parser.tokens) else None


class _Parser:
    """The grammar's rules (sum of products of powers of signed atoms), reading on from one shared position; a rule
    raises ValueError where the tokens are not a well-formed expression or cannot be evaluated safely."""

    def __init__(self, tokens: list[tuple[str, str]]) -> None:
        self.tokens = tokens
        self.pos = 0

    def peek(self) -> tuple[str, str] | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def take(self) -> tuple[str, str]:
        self.pos += 1
        return self.tokens[self.pos - 1]

    def atom(self) -> Rational:
        tok = self.peek()
        if tok is None:
            raise ValueError("expression ends early")
        if tok[0] == "op" and tok[1] in "+-":
            self.take()
            value = self.atom()
            return -value if tok[1] == "-" else value
        if tok[0] == "lp":
            self.take()
            value = self.sum_()
            if self.peek() is None or self.peek()[0] != "rp":
                raise ValueError("unclosed parenthesis")
            self.take()
            return value
        if tok[0] == "num":
            self.take()
            value = _number(tok[1])
            if value is None:
                raise ValueError("number too long")
            return value
        raise ValueError(f"unexpected {tok[1]!r}")

    def power(self) -> Rational:
        base = self.atom()
        tok = self.peek()
        if tok is not None and tok[0] == "op" and tok[1] == "^":
            self.take()
            exponent = self.power()
            if not exponent.is_integer or abs(exponent) > _MAX_EXPONENT or (base == 0 and exponent < 0):
                raise ValueError("power out of range")
            return base**exponent
        return base

    def product(self) -> Rational:
        value = self.power()
        while (tok := self.peek()) is not None and tok[0] == "op" and tok[1] in "*/":
            self.take()
            right = self.power()
            if tok[1] == "*":
                value = value * right
            elif right == 0:
                raise ValueError("division by zero")
            else:
                value = value / right
        return value

    def sum_(self) -> Rational:
        value = self.product()
        while (tok := self.peek()) is not None and tok[0] == "op" and tok[1] in "+-":
            self.take()
            right = self.product()
            value = value + right if tok[1] == "+" else value - right
        return value
