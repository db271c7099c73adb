"""The in-process grading paths against the worker paths they stand in for: every answer `answers.in_process`
decides is the one `answers.in_worker` (math-verify's pick, with sympy) gives; every shape `simple_latex` accepts
parses in latex2sympy; every verdict `_fast_verdict` gives is the one sympy's comparison (`_compare`) gives."""

import json
import random
from pathlib import Path

import pytest

from prmsearch.verifiers import answers
from prmsearch.verifiers import math as mv
from prmsearch.verifiers.latex_shapes import simple_latex

FIXTURES = Path(__file__).parent / "fixtures"
DATA = Path(__file__).resolve().parents[2] / "shared" / "data"

# Shapes that need care: nearby boxes read together, percent after a box, "final answer" phrases, text answers,
# intervals, matrices, a plain-box match that runs to the text's last "}", \fbox, decimal commas, LaTeX-free text.
TRICKY = [
    "The roots are \\boxed{1} and \\boxed{2}.",
    "First \\boxed{3}, but checking again, \\boxed{4}.",
    "\\boxed{3} was wrong. Checking again gives \\boxed{4}",
    "So $x = \\boxed{1}$ or $x = \\boxed{2}$.",
    "The discount is \\boxed{20}\\%.",
    "The discount is $\\boxed{20}$ percent.",
    "The final answer is $\\boxed{5}$. I hope it is correct.",
    "Final Answer: the total is $\\boxed{\\frac{3}{4}}$ and $y^{2}$ was used.",
    "Thus \\boxed{\\frac{3}{4}} since $\\{1\\}$ and $x^{2}$ hold.",
    "\\fbox{42}",
    "$\\fbox{\\sqrt{3}}$",
    "The answer is $\\boxed{\\text{(C)}}$.",
    "The answer is $\\boxed{\\text{Evelyn}}$.",
    "$\\boxed{\\left( 3, \\frac{\\pi}{2} \\right)}$",
    "So $x \\in \\boxed{(-\\infty, 3]}$.",
    "The domain is $(-\\infty, -2) \\cup (2, \\infty)$.",
    "$\\boxed{\\begin{pmatrix} 1 & 2 \\\\ 3 & 4 \\end{pmatrix}}$",
    "$\\boxed{\\begin{pmatrix} 1 & 2 \\\\ 3 \\end{pmatrix}}$",  # rows of unequal width: a worker decides
    "The roots are $1 \\pm \\sqrt{19}$.",
    "We get \\[x^2+1\\]",
    "$$\\boxed{-\\frac{24}{25}}$$",
    "So the answer is $\\boxed{145^\\circ}$.",
    "The answer is $\\boxed{(i, 2)}$.",  # letters in an interval: a worker decides
    "Therefore $\\boxed{x \\in [-2,7]}$.",
    "so the answer is \\boxed{3,5}",
    "It costs 3,5 euros.",
    "It costs 0,500 euros.",
    "It costs 1,234 dollars in all.",
    "The answer is 3/4.",
    "So the rate rose by 12.5%.",
    "So \\boxed{1.}",
    "So $\\boxed{\\frac{1}{0}}$.",
    "An unclosed \\boxed{4 and a closed \\boxed{5}",
    "$\\boxed{}$ is empty, so 7.",
]


def _corpus() -> list[str]:
    """MATH-500 reference solutions (with the shared data, also ending as models end theirs), the graded samples
    among the fixtures, the tricky cases above."""
    texts = list(TRICKY)
    texts += [json.loads(line)["output"] for line in (FIXTURES / "freeform_answers.jsonl").open()]
    texts += [json.loads(line)["completion"] for line in (FIXTURES / "chains_samples.jsonl").open()]
    for row in map(json.loads, (FIXTURES / "traces_math.jsonl").open()):
        texts += [s for s in row["samples"] if isinstance(s, str)]
    for row in map(json.loads, (FIXTURES / "processbench.jsonl").open()):
        texts.append("\n\n".join(row["steps"]))
    if (DATA / "math500_test.jsonl").exists():
        rows = [json.loads(line) for line in open(DATA / "math500_test.jsonl")]
        texts += [row["solution"] for row in rows]
        # the same solutions ending as models end theirs, every fifth one in each way
        for k, row in enumerate(rows[::5]):
            texts.append(row["solution"].split("\\boxed")[0] + MODEL_ENDINGS[k % len(MODEL_ENDINGS)] % row["answer"])
    return texts


MODEL_ENDINGS = [
    " The final answer is $%s$. I hope it is correct.",
    "\n\n**Final Answer**\n\\[ \\boxed{%s} \\]",
    " So the answer is \\(\\boxed{%s}\\).",
    "\nAnswer: $%s$",
    " Thus $x = %s$.",
]


def test_in_process_extraction_is_the_worker_paths():
    decided = 0
    for text in _corpus():
        done, answer = answers.in_process(text)
        if done and answers.gsm8k_answer(text) is None:
            decided += 1
            assert answer == answers.in_worker(text), text
    assert decided >= 500  # most texts are decided in process (the speed of grade_many rests on it)


@pytest.mark.skipif(not (DATA / "math500_test.jsonl").exists(), reason="needs ../shared/data")
def test_most_math500_solutions_are_decided_in_process():
    texts = [json.loads(line)["solution"] for line in open(DATA / "math500_test.jsonl")]
    assert sum(answers.in_process(t)[0] for t in texts) >= 490


@pytest.mark.parametrize(
    "latex",
    ["3", "-\\frac{24}{25}", "3\\sqrt{13}", "\\frac{\\sqrt{3}}{2}", "6+9i", "x^2+1", "1 \\pm \\sqrt{19}",
     "145^\\circ", "\\text{(C)}", "\\text{Evelyn}", "(3, \\frac{\\pi}{2})", "(6,31,-1)", "(-\\infty, 3]",
     "(0,9) \\cup (9,36)", "\\{1, 2\\}", "x = 3", "y \\geq 3", "3, 5, 7", "50\\%", "288 \\pi", "1\\frac{4}{5}",
     "\\begin{pmatrix} -1 & 0 \\\\ 0 & -1 \\end{pmatrix}", "15x - 80", "\\sqrt[3]{2}", "52_8", "4210_{5}",
     "\\cot x", "x \\in [-2,7]", "\\{1\\pm\\sqrt{5},-2\\}", "[\\frac{\\pi^2}{8}, \\frac{5 \\pi^2}{4}]"],
)  # fmt: skip
def test_common_answer_shapes_are_simple(latex):
    assert simple_latex(latex)


@pytest.mark.parametrize(
    "latex",
    ["", "1.", "x^", "1,", "()", "(1,2,3]", "(i, 2)", "x \\cup 3", "x = 1 \\pm 2", "\\frac{1}{2", "e^ x",
     "\\begin{pmatrix} 1 & 2 \\\\ 3 \\end{pmatrix}", "(\\sqrt{-2}, 1)", "[1/0, 2]", "\\cdot 3", "x \\in 3",
     "1 \\pm 2 \\pm 3", "0^{-1} \\pm 1", "e_1", "\\sin", "0 \\%", "(1 \\pm 2, 3)"],
)  # fmt: skip
def test_shapes_that_may_not_parse_are_not_simple(latex):
    assert not simple_latex(latex)


_VALUES = ["1", "23", "4.5", "0", "0.0", "x", "y", "i", "e", "E", "I", "\\pi", "\\infty", "\\text{(C)}", "\\text{a b}"]
_JOINS = ["+", "-", "\\pm", " \\cdot ", "\\times", "/", "*", "\\div", "", " "]
_SCRIPTS = ["2", "x", "\\circ", "{\\circ}", "{ \\circ}", "\\pi", " 2"]
_RELATIONS = ["=", "<", ">", "\\le", "\\geq", "\\neq", "\\lt"]


def _random_latex(rng: random.Random, depth: int) -> str:
    """A random string near `simple_latex`'s grammar: most are in it, many just outside it."""
    if depth <= 0 or rng.random() < 0.3:
        return rng.choice(_VALUES)
    a = lambda: _random_latex(rng, depth - 1)  # noqa: E731
    shapes = [
        lambda: f"\\frac{{{a()}}}{{{a()}}}",
        lambda: f"\\sqrt{{{a()}}}",
        lambda: f"\\sqrt[{rng.choice(['3', a()])}]{{{a()}}}",
        lambda: f"({a()})",
        lambda: f"{{{a()}}}",
        lambda: a() + rng.choice(_JOINS) + a(),
        lambda: f"-{a()}",
        lambda: a() + "^" + rng.choice([*_SCRIPTS, "{" + a() + "}", "{3}", "{2.5}", "{-1}"]),
        lambda: a() + "\\%",
        lambda: a() + "_" + rng.choice(["1", "8", "{5}", "{12}", "x", " 2", "{x+1}", "{}"]),
        lambda: rng.choice(["\\sin", "\\cos", "\\cot", "\\ln", "\\log"]) + rng.choice([" ", "", "^2 "]) + a(),
        lambda: f"{a()} \\in {a()}",
        lambda: f"{a()} \\pm {a()}",
        lambda: f"\\{{{a()} \\pm {a()}, {a()}\\}}",
        lambda: f"[{a()}]",
        lambda: f"{a()} {rng.choice(_RELATIONS)} {a()}",
        lambda: f"({a()}, {a()}{rng.choice(')]')}",
        lambda: f"[{a()}, {a()}{rng.choice(')]')}",
        lambda: ", ".join(a() for _ in range(rng.randint(2, 4))),
        lambda: "\\{" + ", ".join(a() for _ in range(rng.randint(1, 3))) + "\\}",
        lambda: " \\cup ".join(f"({a()}, {a()}]" for _ in range(2)),
        lambda: (
            "\\begin{pmatrix}"
            + " \\\\ ".join(" & ".join(a() for _ in range(2)) for _ in range(rng.randint(1, 2)))
            + "\\end{pmatrix}"
        ),
    ]
    text = rng.choice(shapes)()
    if rng.random() < 0.2:  # a slip: a character dropped or added
        k = rng.randrange(len(text) + 1)
        text = text[:k] + rng.choice(["", "(", "}", ",", "-", "^", ".", "\\", " "]) + text[k + 1 :]
    return text


def test_every_simple_shape_parses():
    """A seeded random search for a string `simple_latex` accepts and latex2sympy cannot parse."""
    from math_verify.parser import parse_latex_cached

    rng = random.Random(31)
    simple = 0
    for _ in range(4000):
        latex = _random_latex(rng, 4)
        if simple_latex(latex):
            simple += 1
            parse_latex_cached(latex)  # raises where it does not parse
    assert simple >= 800


FAST_PAIRS = [
    ("\\frac{1}{2}", "0.5"),
    ("-3/4", "-0.75"),
    ("\\dfrac{3}{6}", "1/2"),
    ("\\frac{4}{2}", "2"),
    ("\\frac{4}{2}", "3"),
    ("\\tfrac{1}{3}", "0.333"),
    ("\\frac{1}{0}", "1"),
    ("0,500", "0.5"),
    ("0,500", "500"),  # a decimal comma (0.5), not a thousands separator
    ("500", "0,500"),
    ("0.1666666666666667", "\\frac{1}{6}"),  # unequal values math-verify calls equal (its float precision)
    ("3,5", "3.5"),
    ("1,234", "1234"),
    ("18 dollars", "18"),
    ("$5", "5"),
    ("7", "8"),
    ("-3", "3"),
    ("5.00", "5"),
    ("0.333", "\\frac{1}{3}"),
]


@pytest.fixture(scope="module")
def math500_pairs():
    if not (DATA / "math500_test.jsonl").exists():
        return []
    rows = [json.loads(line) for line in open(DATA / "math500_test.jsonl")]
    extracted = mv.extract_many([r["solution"] for r in rows])
    # each answer against its own gold and against the next problem's (mostly different values)
    nexts = rows[1:] + rows[:1]
    return [(a, r["answer"]) for a, r in zip(extracted, rows, strict=True)] + [
        (a, r["answer"]) for a, r in zip(extracted, nexts, strict=True)
    ]


def test_in_process_verdicts_are_sympys(math500_pairs):
    pairs = [(p, g) for p, g in FAST_PAIRS + math500_pairs if mv._fast_verdict(p, g) is not None]
    mv.clear_cache()
    slow = mv.compare_many([p for p, _ in pairs], [g for _, g in pairs], fast=False)
    fast = [mv._fast_verdict(p, g) for p, g in pairs]
    assert [(p, g) for (p, g), f, s in zip(pairs, fast, slow, strict=True) if f[0] != s[0]] == []
    assert len(pairs) >= 10


@pytest.mark.parametrize(
    "text",
    [
        "$$" + "\\boxed{a}" * 550,  # a display environment that never closes, around boxes
        "\\[" + "\\boxed{x}" * 550,
        "\\(x \\boxed{" * 450,
    ],
    ids=["dollars", "brackets", "parentheses"],
)
def test_in_process_scanning_of_hostile_latex_stays_fast(text):
    """math-verify's patterns backtrack cubically on these (20 s and more at 5,000 characters, 81 s at 8,000); the
    main process has no deadline, so such a text goes to a worker without being scanned here."""
    import time

    start = time.perf_counter()
    assert answers.in_process(text) == (False, None)
    assert time.perf_counter() - start < 1.0
