"""Which LaTeX answers latex2sympy surely parses, read without sympy: `simple_latex`, a deliberately narrow grammar
(numbers, letters, `\\frac`, `\\sqrt`, `\\pi`, tuples, intervals, sets, matrices, choices, one relation) that lets
`answers.in_process` take math-verify's first match as its answer without a worker, since a match that parses is
the one math-verify keeps. What the grammar refuses goes to a worker, which parses it; tests/test_grading_paths.py
checks every shape it accepts against latex2sympy.
"""

from __future__ import annotations

import re

MAX_SHAPE_CHARS = 200  # a longer answer is not checked for a simple shape: a worker parses it


_TOKEN = re.compile(
    r"""\s*(
      \d+(?:\.\d+)?                                     # a number ("1." and ".5" are not: they may not parse)
    | \\text\{[A-Za-z0-9 ()]+\}                         # a word or a choice: "\text{Evelyn}", "\text{(C)}"
    | \\(?:begin|end)\{[pb]matrix\}
    | \\(?:frac|sqrt|pi|infty|circ|cdot|times|div|pm|cup|in|leq?|geq?|neq?|lt|gt)(?![a-zA-Z])
    | \\(?:sin|cos|tan|cot|sec|csc|ln|log)(?![a-zA-Z])
    | \\[{}%] | \\\\ | [a-zA-Z] | [-+*/^_=<>,()\[\]{}&]
    )""",
    re.VERBOSE,
)
_RELATIONS = {"=", "<", ">", "\\le", "\\leq", "\\ge", "\\geq", "\\ne", "\\neq", "\\lt", "\\gt"}
_SIGNS = {"+", "-", "\\pm"}
_PRODUCTS = {"*", "/", "\\cdot", "\\times", "\\div"}
_MATRICES = ("\\begin{pmatrix}", "\\begin{bmatrix}")
_FUNCTIONS = ("\\sin", "\\cos", "\\tan", "\\cot", "\\sec", "\\csc", "\\ln", "\\log")
_MAX_DEPTH = 12


def simple_latex(latex: str) -> bool:
    """Whether `latex` (normalized as math-verify normalizes it) has a shape latex2sympy always parses: a comma list
    of items, each a word or choice (`\\text{(C)}`), a tuple, interval, set or matrix, a variable in an interval
    or set ("x \\in [-2,7]"), or a sum of products and powers of numbers (a base's subscript too: "52_8"), single
    letters, `\\pi`, `\\infty`, `\\frac{}{}`, `\\sqrt{}` and functions ("\\cot x"), with at most one relation ("x = 3",
    "y \\geq 3") or one "\\pm"; or a union of intervals; a number may end with "\\%". Deliberately narrow (no
    letters inside a tuple or interval: "(i, 2)" is refused as an interval), checked against latex2sympy by
    tests/test_grading_paths.py: what it refuses goes to a worker, which parses it."""
    if len(latex) > MAX_SHAPE_CHARS or re.search(r"[\^_]\s|\{\s+\\circ|\\circ\s+\}", latex):  # "e^ x", "^{ \\circ}"
        return False
    tokens, at = [], 0
    while at < len(latex.rstrip()):
        m = _TOKEN.match(latex, at)
        if m is None:
            return False
        tokens.append(m.group(1))
        at = m.end()
    if len(tokens) > 1 and tokens[-1] == "\\%" and re.search(r"\d\\%$", latex.rstrip()):
        tokens.pop()  # "50\\%"
    shape = _Shape(tokens)
    try:
        shape.top()
    except _NotSimple:
        return False
    return shape.at == len(tokens)


class _NotSimple(Exception):
    pass


class _Shape:
    """A recursive-descent reader of `simple_latex`'s grammar over tokens. Each rule reads its part or raises
    `_NotSimple`; `relation`, `sum`, `product`, `power` and `atom` return whether what they read is a collection (a
    tuple, interval, set or matrix), which may only stand alone as an item: "(1,2)(3,4)", "x = (1,2)" are refused."""

    def __init__(self, tokens: list[str]) -> None:
        self.tokens, self.at, self.depth = tokens, 0, 0
        self.unreal = 0  # how many parts read so far might not be real: letters, powers, roots of a difference

    def peek(self, ahead: int = 0) -> str | None:
        return self.tokens[self.at + ahead] if self.at + ahead < len(self.tokens) else None

    def take(self, *options: str) -> bool:
        if self.peek() in options:
            self.at += 1
            return True
        return False

    def need(self, *options: str) -> None:
        if not self.take(*options):
            raise _NotSimple

    def top(self) -> None:
        if "\\cup" not in self.tokens:
            self.items(top=True)
            return
        while self.peek() in ("(", "["):  # a union of intervals, nothing else
            if not self.atom():
                raise _NotSimple
            if not self.take("\\cup"):
                return

    def items(self, top: bool = False) -> tuple[int, bool]:
        """A comma list: (how many items, whether one is a collection)."""
        count, collection = 0, False
        while count == 0 or self.take(","):
            start = self.at
            collection |= self.relation(top)
            count += 1
            item = self.tokens[start : self.at]
            self.unreal += "\\infty" in item and (item[-1] != "\\infty" or len(item) > 2)  # "-\\infty" alone
        return count, collection

    def relation(self, top: bool) -> bool:
        if top and (self.peek() or "").startswith("\\text") and self.peek(1) in (",", None):
            self.at += 1  # a word stands only as a whole item of the answer
            return False
        start = self.at
        collection = self.sum()
        if self.take("\\in"):
            variable = len(self.tokens[start : self.at]) == 2 and self.tokens[start].isalpha()
            if not (top and variable and self.peek() in ("(", "[", "\\{") and self.atom()) or "\\pm" in self.tokens:
                raise _NotSimple  # "x \\in [-2, 7]": a variable in an interval or set, nothing else
        elif self.take(*_RELATIONS):
            if not top or collection or self.sum():
                raise _NotSimple  # "x = 3", not "x = (1, 2)" or "x = 1 \\pm 2"
        return collection

    def sum(self) -> bool:
        """Terms joined by signs; "1 \\pm \\sqrt{2}" reads as a set of two, so it counts as a collection."""
        signed, unreal = self.take("-", "+"), self.unreal
        collection = self.product()
        if collection and (signed or self.peek() in _SIGNS):
            raise _NotSimple
        plus_minus = False
        while self.peek() in _SIGNS:
            if self.peek() == "\\pm" and plus_minus:
                raise _NotSimple  # one "\\pm" a term
            plus_minus |= self.peek() == "\\pm"
            self.at += 1
            if self.product():
                raise _NotSimple
        if plus_minus and self.unreal > unreal:
            raise _NotSimple  # "0^{-1} \\pm 1" fails as latex2sympy builds both values
        return collection or plus_minus

    def product(self) -> bool:
        collection = self.power()
        while self.peek() in _PRODUCTS or self.starts_atom():
            self.unreal += self.peek() in ("/", "\\div")  # "(1/0, 2)" is no interval
            self.take(*_PRODUCTS)  # or an implicit product: "3x", "2\\sqrt{2}", "x(x+1)"
            if collection or self.power():
                raise _NotSimple
        return collection

    def starts_atom(self) -> bool:
        token = self.peek()
        return token is not None and (_is_value(token) or token in ("(", "\\frac", "\\sqrt", *_MATRICES, *_FUNCTIONS))

    def power(self) -> bool:
        collection = self.atom()
        if self.take("^"):
            if collection:
                raise _NotSimple
            start = self.at
            self.script()
            power = self.tokens[start : self.at]
            self.unreal += power not in (["\\circ"], ["{", "\\circ", "}"]) and not (
                len(power) in (1, 3) and power[len(power) // 2].isdigit()  # a real number to a whole power is real
            )  # "(-1)^{\\frac{1}{2}}" is not
        return collection

    def script(self) -> None:
        """An exponent: one digit or letter, `\\circ`, `\\pi`, or a braced sum ("{-2}", "{\\circ}")."""
        if self.take("{"):
            if not self.take("\\circ") and self.sum():
                raise _NotSimple
            self.need("}")
        elif self.take("\\circ", "\\pi"):
            pass
        elif self.peek() is not None and len(self.peek()) == 1 and self.peek().isalnum():
            self.at += 1
        else:
            raise _NotSimple

    def atom(self) -> bool:
        token, unreal = self.peek(), self.unreal
        self.depth += 1
        if token is None or self.depth > _MAX_DEPTH:
            raise _NotSimple
        self.at += 1
        collection = token in ("[", "\\{", *_MATRICES)
        if token == "\\frac":
            self.braced()
            self.unreal += self.tokens[self.at : self.at + 3] != ["{", self.peek(1), "}"] or not _nonzero(self.peek(1))
            self.braced()
        elif token == "\\sqrt":
            if self.take("["):
                self.need(*[t for t in [self.peek()] if t and t.isdigit()])  # "\\sqrt[3]{2}"
                self.need("]")
            start = self.at
            self.braced()
            self.unreal += "-" in self.tokens[start : self.at]
        elif token in ("(", "[", "\\{"):
            count, inner = self.items()
            closing = self.peek()
            self.need(*((")", "]") if token != "\\{" else ("\\}",)))
            collection |= count > 1
            if (token != "\\{" and closing != {"(": ")", "[": "]"}[token] or token == "[") and count != 2:
                raise _NotSimple  # "[1, 2)" is an interval, "(1, 2, 3]" nothing
            if (collection and self.unreal > unreal) or (inner and token != "\\{"):
                raise _NotSimple  # an interval must be real to latex2sympy: "(i, 2)", "(\\sqrt{-2}, 1)" fail
        elif token in _MATRICES:
            self.matrix(token)
        elif token in _FUNCTIONS:  # "\\cot x", "\\sin \\frac{\\pi}{2}", "\\ln(2)": the product that follows
            self.unreal += 1
            if self.product():
                raise _NotSimple
        elif len(token) == 1 and token.isalpha():
            self.unreal += 1
            self.subscript(token)
        elif _is_value(token):
            self.subscript(token)
        else:
            raise _NotSimple
        self.depth -= 1
        return collection

    def subscript(self, token: str) -> None:
        """ "_1", "_{12}" after a number or a variable: "x_1", "52_8" (a number in base 8), "4210_{5}"."""
        if token in ("e", "E", "\\pi", "\\infty") or not self.take("_"):
            return
        self.need(*[t for t in [self.peek()] if t and len(t) == 1 and t.isalnum()], "{")
        if self.tokens[self.at - 1] == "{":
            self.need(*[t for t in [self.peek()] if t and t.isalnum()])
            self.need("}")

    def braced(self) -> None:
        """ "{", a sum that is not a collection, "}": a fraction's parts, a root's argument."""
        self.need("{")
        if self.sum():
            raise _NotSimple
        self.need("}")

    def matrix(self, begin: str) -> None:
        """Rows of sums split by "&" and "\\\\\\\\", all rows as wide, up to the matching `\\\\end{...}`."""
        widths = []
        while True:
            widths.append(1)
            if self.sum():
                raise _NotSimple
            while self.take("&"):
                if self.sum():
                    raise _NotSimple
                widths[-1] += 1
            if not self.take("\\\\"):
                break
        self.need(begin.replace("begin", "end"))
        if len(set(widths)) != 1:
            raise _NotSimple


def _nonzero(token: str | None) -> bool:
    return token is not None and token[0].isdigit() and float(token) != 0


def _is_value(token: str) -> bool:
    """A number, a single letter or a constant: what needs no further reading."""
    return token[0].isdigit() or (len(token) == 1 and token.isalpha()) or token in ("\\pi", "\\infty")
