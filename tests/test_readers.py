"""Readers of public formats (PRM800K, Math-Shepherd, TRL stepwise, ProcessBench, raw traces) and the math answer
checks they grade with. Each fixture holds exactly one malformed row, so every reader is tested both ways."""

import os

os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import json  # noqa: E402
from collections import Counter  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

from prmsearch.data_builders import (  # noqa: E402
    READERS,
    BadRowError,
    ReadReport,
    read_champ,
    read_math_shepherd,
    read_prm800k,
    read_processbench,
    read_stepwise,
    read_traces_file,
)
from prmsearch.rows import stable_id  # noqa: E402
from prmsearch.verifiers import extract_answer, is_equivalent  # noqa: E402

FIXTURES = Path(__file__).parent / "fixtures"
GSM8K_SOLUTIONS = Path("/work/shared/data/gsm8k_test_model_solutions.jsonl")
GSM8K_SYSTEMS = ("6b_finetuning", "6b_verification", "175b_finetuning", "175b_verification")
GSM8K_KW = {"solution_fields": GSM8K_SYSTEMS}
MATH_KW = {"prompt_field": "problem", "solution_fields": ("samples",), "gold_field": "answer", "separator": "\n\n"}


def read(reader, source, **kw):
    report = ReadReport()
    traces = list(reader(str(source), skip_bad=True, report=report, **kw))
    return traces, report


def write_jsonl(path, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


# (reader, fixture, options, line of the bad row, field it names, traces from the good rows)
MALFORMED = [
    (read_prm800k, "prm800k.jsonl", {}, 3, "label.steps[1].completions[0].rating", 8),
    (read_math_shepherd, "math_shepherd.jsonl", {}, 3, "label", 3),
    (read_stepwise, "stepwise.jsonl", {}, 3, "labels[1]", 3),
    (read_processbench, "processbench.jsonl", {}, 4, "label", 4),
    (read_traces_file, "traces_gsm8k.jsonl", GSM8K_KW, 3, "175b_verification", 12),
    (read_traces_file, "traces_math.jsonl", MATH_KW, 3, "samples[1]", 6),
]


@pytest.mark.parametrize("reader, name, kw, line, field, n", MALFORMED, ids=[m[1] for m in MALFORMED])
def test_strict_read_names_file_line_and_field(reader, name, kw, line, field, n):
    path = str(FIXTURES / name)
    with pytest.raises(BadRowError) as e:
        list(reader(path, **kw))
    assert str(e.value).startswith(f"{path}:{line}: field '{field}': ")
    assert (e.value.path, e.value.line, e.value.field) == (path, line, field)


@pytest.mark.parametrize("reader, name, kw, line, field, n", MALFORMED, ids=[m[1] for m in MALFORMED])
def test_skip_bad_counts_the_bad_row_and_keeps_the_rest(reader, name, kw, line, field, n):
    traces, report = read(reader, FIXTURES / name, **kw)
    rows = len((FIXTURES / name).read_text().splitlines())
    assert (report.rows, report.bad_rows, report.traces, len(traces)) == (rows, 1, n, n)
    assert report.bad_fields == {field: 1}
    assert f":{line}:" in report.bad_examples[0]
    assert all(t.source.startswith(f"{name}:") for t in traces)


def test_readers_registry():
    assert READERS == {
        "prm800k": read_prm800k,
        "math-shepherd": read_math_shepherd,
        "stepwise": read_stepwise,
        "processbench": read_processbench,
        "champ": read_champ,
        "traces": read_traces_file,
    }


# ---- PRM800K -------------------------------------------------------------------------------------------------

A = "We need the power of $2$ that gives $64$."
# (line, steps, ratings, outcome, branch): the chosen path of a row first, then one trace per rated alternative.
PRM800K = [
    (1, ["I want the largest integer that divides both $20 !$ and $200,\\!000$.",
         "One way is to factor both numbers into primes."], [1, 0], None, False),
    (1, ["I want the largest integer that divides both $20 !$ and $200,\\!000$.",
         "One way is to factor both numbers into primes.",
         "I know that $200,\\!000 = 2^5\\cdot 10^4 = 2^9\\cdot 5^4$."], [1, 0, -1], False, True),
    # the empty step is dropped with its label; the human completion is a +1 step
    (2, [A, "$2^6 = 64$.", "So $\\log_2 64 = 6$.\n\n# Answer\n\n6"], [1, 1, 1], True, False),
    (2, ["$\\log_2 64 = 8$."], [-1], False, True),
    (2, ["Let me recall what a logarithm is."], [0], None, True),
    (2, [A, "$2^5 = 64$."], [1, -1], False, True),
    (2, [A, "$2^7 = 64$."], [1, -1], False, True),
    (4, ["Collect the $k$ terms: $-k + 3k = 2k$."], [0], None, False),
]  # fmt: skip


@pytest.mark.parametrize(
    "neutral, zero, bad", [("three-class", 0.0, -1.0), ("positive", 1.0, 0.0), ("negative", 0.0, 0.0)]
)
def test_prm800k_paths_branches_and_neutral_policy(neutral, zero, bad):
    traces, _ = read(read_prm800k, FIXTURES / "prm800k.jsonl", neutral=neutral)
    got = [(int(t.source.split(":")[1]), t.steps, t.step_labels, t.outcome, t.meta["branch"]) for t in traces]
    to_label = {1: 1.0, 0: zero, -1: bad}
    assert got == [(line, s, [to_label[r] for r in rs], o, b) for line, s, rs, o, b in PRM800K]
    assert [t.meta["finish_reason"] for t in traces] == ["found_error"] * 2 + ["solution"] * 5 + ["give_up"]
    assert len({t.group_id for t in traces[2:7]}) == 1 and traces[0].group_id != traces[2].group_id


def test_prm800k_without_branches_keeps_chosen_paths():
    traces, _ = read(read_prm800k, FIXTURES / "prm800k.jsonl", branches=False)
    assert [t.steps for t in traces] == [s for _, s, _, _, b in PRM800K if not b]


def test_prm800k_rejects_unknown_neutral_policy_at_call_time():
    with pytest.raises(ValueError, match="neutral"):
        read_prm800k(str(FIXTURES / "prm800k.jsonl"), neutral="ignore")


def test_prm800k_outcome_does_not_depend_on_neutral_policy(tmp_path):
    """A solution that reached the right answer through a neutral (0) step is still a correct solution."""
    row = json.loads((FIXTURES / "prm800k.jsonl").read_text().splitlines()[1])
    row["label"]["steps"][0]["completions"][0]["rating"] = 0
    path = write_jsonl(tmp_path / "p.jsonl", [row])
    for neutral in ("three-class", "positive", "negative"):
        chosen = next(read_prm800k(str(path), neutral=neutral, branches=False))
        assert chosen.outcome is True and chosen.step_labels[0] == {"positive": 1.0}.get(neutral, 0.0)


def test_prm800k_rating_out_of_range(tmp_path):
    row = json.loads((FIXTURES / "prm800k.jsonl").read_text().splitlines()[0])
    row["label"]["steps"][1]["completions"][0]["rating"] = 2
    path = write_jsonl(tmp_path / "p.jsonl", [row])
    with pytest.raises(BadRowError, match=r"label\.steps\[1\]\.completions\[0\]\.rating.*-1, 0 or 1"):
        list(read_prm800k(str(path)))


# ---- Math-Shepherd -------------------------------------------------------------------------------------------

JANET = (
    "Janet’s ducks lay 16 eggs per day. She eats three for breakfast every morning and bakes muffins for her friends "
    "every day with four. She sells the remainder at the farmers' market daily for $2 per fresh duck egg. How much in "
    "dollars does she make every day at the farmers' market?"
)


def test_math_shepherd_aligns_marks_with_tags():
    traces, _ = read(read_math_shepherd, FIXTURES / "math_shepherd.jsonl")
    assert [(t.prompt, t.steps, t.step_labels, t.outcome, t.meta) for t in traces] == [
        (
            JANET,
            [
                "Step 1: Janet's ducks lay 16 eggs per day.",
                "Step 2: She eats 3 for breakfast, so she has 16 - 3 = 13 eggs left.",
                "Step 3: She bakes muffins with 4 eggs, so she has 13 - 4 = 9 eggs left.",
                "Step 4: She sells 9 eggs at $2 each, so she makes 9 * 2 = $18. The answer is: 18",
            ],
            [1.0, 1.0, 1.0, 1.0],
            True,
            {"task": "GSM8K"},
        ),
        (
            JANET,
            [
                "Step 1: Janet's ducks lay 16 eggs per day.",
                "Step 2: She uses 3 + 4 = 8 eggs every day.",
                "Step 3: She sells 16 - 8 = 8 eggs, so she makes 8 * 2 = $16. The answer is: 16",
            ],
            [1.0, 0.0, 0.0],
            False,
            {"task": "GSM8K"},
        ),
        ("Compute $3 + 4 - 2$.", ["Step 1: 3 + 4 = 7.", "Step 2: 7 - 2 = 5. The answer is: 5"], [1.0, 1.0], True, {}),
    ]
    assert traces[0].group_id == traces[1].group_id == stable_id(JANET)


def test_math_shepherd_rejects_a_mark_that_is_not_plus_or_minus(tmp_path):
    row = {"input": "Q? Step 1: a ки\nStep 2: b ки", "label": "Q? Step 1: a +\nStep 2: b ?"}
    path = write_jsonl(tmp_path / "s.jsonl", [row])
    with pytest.raises(BadRowError, match=r":1: field 'label': expected '\+' or '-' where step 2"):
        list(read_math_shepherd(str(path)))


# ---- TRL stepwise --------------------------------------------------------------------------------------------


def test_stepwise_hard_and_soft_labels():
    traces, _ = read(read_stepwise, FIXTURES / "stepwise.jsonl")
    assert [(t.prompt, t.steps, t.step_labels, t.outcome) for t in traces] == [
        ("What is 2 + 3 * 4?", ["3 * 4 = 12.", "2 + 12 = 14.", "The answer is 15."], [1.0, 1.0, 0.0], None),
        (
            "Evaluate $\\log_264$.",
            ["$2^6 = 64$.", "So $\\log_2 64 = 6$.", "Check: $2^5 = 32$."],
            [1.0, 0.37, 0.0],
            None,
        ),
        ("What is 7 - 9?", ["7 - 9 = 2."], [0.0], None),
    ]
    assert all(type(y) is float for t in traces for y in t.step_labels)


def test_stepwise_length_mismatch(tmp_path):
    path = write_jsonl(tmp_path / "s.jsonl", [{"prompt": "p", "completions": ["a", "b"], "labels": [True]}])
    with pytest.raises(BadRowError, match=r":1: field 'labels': 1 labels for 2 completions"):
        list(read_stepwise(str(path)))


def test_stepwise_keeps_an_outcome_and_group_when_given(tmp_path):
    rows = [
        {"prompt": "p", "completions": ["a"], "labels": [True], "outcome": True, "group_id": "g1"},
        {"prompt": "p", "completions": ["b"], "labels": [False], "outcome": False},
    ]
    traces = list(read_stepwise(str(write_jsonl(tmp_path / "s.jsonl", rows))))
    assert [(t.outcome, t.group_id) for t in traces] == [(True, "g1"), (False, traces[1].group_id)]
    bad = write_jsonl(tmp_path / "bad.jsonl", [{**rows[0], "outcome": "yes"}])
    with pytest.raises(BadRowError, match=r":1: field 'outcome': expected true, false or null"):
        list(read_stepwise(str(bad)))


# ---- ProcessBench --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "after_error, wrong_at_1, wrong_at_0",
    [
        ("negative", [1.0, 0.0, 0.0, 0.0], [0.0, 0.0]),
        ("unlabelled", [1.0, 0.0, None, None], [0.0, None]),
        ("truncate", [1.0, 0.0], [0.0]),
    ],
)
def test_processbench_after_error(after_error, wrong_at_1, wrong_at_0):
    traces, _ = read(read_processbench, FIXTURES / "processbench.jsonl", after_error=after_error)
    assert [t.step_labels for t in traces] == [[1.0, 1.0, 1.0], wrong_at_1, wrong_at_0, [1.0, 1.0]]
    assert [len(t.steps) for t in traces] == [3, len(wrong_at_1), len(wrong_at_0), 2]
    assert [t.outcome for t in traces] == [True, False, True, True]
    assert traces[1].steps[:2] == ["Janet uses 3 + 4 = 7 eggs.", "She has 16 - 7 = 8 eggs left."]
    assert traces[0].meta == {"id": "gsm8k-0", "generator": "Qwen2-7B-Instruct"}
    assert traces[0].group_id == traces[1].group_id == stable_id(JANET)


def test_processbench_rejects_unknown_after_error():
    with pytest.raises(ValueError, match="after_error"):
        read_processbench(str(FIXTURES / "processbench.jsonl"), after_error="drop")


# ---- raw traces ----------------------------------------------------------------------------------------------


def test_traces_gsm8k_systems_with_their_outcomes():
    traces, _ = read(read_traces_file, FIXTURES / "traces_gsm8k.jsonl", **GSM8K_KW)
    rows = [json.loads(line) for line in (FIXTURES / "traces_gsm8k.jsonl").read_text().splitlines()]
    rows = rows[:2] + rows[3:]  # the third lacks a system
    expected = [
        (r["question"], r[s]["solution"].split("\n"), None, r[s]["is_correct"], stable_id(r["question"]), s)
        for r in rows
        for s in GSM8K_SYSTEMS
    ]
    got = [(t.prompt, t.steps, t.step_labels, t.outcome, t.group_id, t.meta["system"]) for t in traces]
    assert got == expected
    assert traces[0].steps[-1] == "A: 26"


def test_traces_graded_against_a_gold_solution_agree_with_the_released_grades():
    kw = {**GSM8K_KW, "outcome_key": "not_there", "gold_field": "ground_truth"}
    graded, _ = read(read_traces_file, FIXTURES / "traces_gsm8k.jsonl", **kw)
    given, _ = read(read_traces_file, FIXTURES / "traces_gsm8k.jsonl", **GSM8K_KW)
    assert [t.outcome for t in graded] == [t.outcome for t in given]
    assert True in {t.outcome for t in given}


def test_traces_math_samples_graded_against_answer():
    traces, _ = read(read_traces_file, FIXTURES / "traces_math.jsonl", **MATH_KW)
    got = [(t.group_id, t.meta["sample"], t.outcome) for t in traces]
    assert got == [
        ("test/algebra/1255.json", 0, True),
        ("test/algebra/1255.json", 1, False),
        ("test/prealgebra/1924.json", 0, True),
        ("test/prealgebra/1924.json", 1, True),  # \boxed{2 + 2k} is 2k+2
        ("test/prealgebra/1924.json", 2, False),
        ("test/intermediate_algebra/134.json", 0, True),
    ]
    assert traces[2].steps == [
        "Collect like terms.",
        "$-k + 3k = 2k$ and $4 - 2 = 2$.",
        "The answer is $\\boxed{2k+2}$.",
    ]
    assert {t.meta["system"] for t in traces} == {"samples"}


def test_real_gsm8k_model_solutions():
    rows = [json.loads(line) for line in GSM8K_SOLUTIONS.read_text().splitlines()]
    expected = Counter((s, r[s]["is_correct"]) for r in rows for s in GSM8K_SYSTEMS)
    report = ReadReport()
    traces = list(read_traces_file(str(GSM8K_SOLUTIONS), report=report, **GSM8K_KW))
    assert len(traces) == report.traces == 1319 * 4 and report.bad_rows == 0
    assert Counter((t.meta["system"], t.outcome) for t in traces) == expected
    assert all(t.steps and all(s == s.strip() and s for s in t.steps) for t in traces)


# ---- sources: bad JSON, hub-style folders, parquet -----------------------------------------------------------

ROW = {"prompt": "What is 1 + 1?", "completions": ["1 + 1 = 2.", "The answer is 2."], "labels": [1.0, 0.37]}


def test_a_line_that_is_not_json(tmp_path):
    path = write_jsonl(tmp_path / "s.jsonl", [ROW, '{"prompt": "half a row', ROW])
    with pytest.raises(BadRowError, match=r"s\.jsonl:2: field '<json>': invalid JSON"):
        list(read_stepwise(str(path)))
    traces, report = read(read_stepwise, path)
    assert (len(traces), report.rows, report.bad_rows) == (2, 3, 1)


@pytest.fixture
def datasets_cache(tmp_path, monkeypatch):
    """Keep `load_dataset`'s cache inside the test's folder, so runs leave nothing behind."""
    import datasets

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "cache")


def test_a_folder_of_data_files_goes_through_load_dataset(tmp_path, datasets_cache):
    """A local folder takes the same `datasets.load_dataset(id)` path as a hub id."""
    bad = {**ROW, "labels": [1.0, 1.5]}
    write_jsonl(tmp_path / "ds" / "train.jsonl", [ROW, bad, {**ROW, "labels": [0.0, 0.25]}])
    with pytest.raises(BadRowError, match=r"ds:2: field 'labels\[1\]'"):
        list(read_stepwise(str(tmp_path / "ds")))
    traces, report = read(read_stepwise, tmp_path / "ds")
    assert [t.step_labels for t in traces] == [[1.0, 0.37], [0.0, 0.25]]
    assert report.bad_rows == 1


def test_parquet(tmp_path, datasets_cache):
    import datasets

    rows = [json.loads(line) for line in (FIXTURES / "processbench.jsonl").read_text().splitlines()]
    path = tmp_path / "pb.parquet"
    datasets.Dataset.from_list(rows).to_parquet(str(path))
    with pytest.raises(BadRowError, match=r"pb\.parquet:4: field 'label'"):
        list(read_processbench(str(path)))
    traces, report = read(read_processbench, path)
    jsonl, _ = read(read_processbench, FIXTURES / "processbench.jsonl")
    assert [(t.steps, t.step_labels, t.outcome, t.meta) for t in traces] == [
        (t.steps, t.step_labels, t.outcome, t.meta) for t in jsonl
    ]


# ---- math answers --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, answer",
    [
        # several boxes are one answer, a set, as math-verify's `parse` reads them
        (
            "so $x = \\boxed{\\frac{1}{\\sqrt{2}}}$ and then \\boxed{\\dfrac{a^{2}}{b}}.",
            "\\frac{1}{\\sqrt{2}},\\dfrac{a^{2}}{b}",
        ),
        ("The area is \\fbox{12}.", "12"),
        ("She has 1234 - 0 = 1,234 left.\n#### 1,234", "1,234"),
        ("16 - 3 - 4 = 9\n9 * 2 = 18\nA: 18", "18"),
        ("So 2 + 3 = 5. The answer is 5.", "5"),
        ("The answer is $\\frac{1}{2}$.", "\\frac{1}{2}"),
        ("I am not sure what the total is.", None),
        ("", None),
    ],
)
def test_extract_answer(text, answer):
    assert extract_answer(text) == answer


@pytest.mark.parametrize(
    "pred, gold, same",
    [
        ("1,000", "1000", True),
        ("\\frac{1}{2}", "0.5", True),
        ("2k + 2", "2k+2", True),
        ("\\left( 3, \\frac{\\pi}{2} \\right)", "(3, \\frac{\\pi}{2})", True),
        ("3", "4", False),
        (None, "4", False),
        ("\\frac{1}{", "1", False),
    ],
)
def test_is_equivalent(pred, gold, same):
    assert is_equivalent(pred, gold) is same


def test_read_source_passes_each_reader_its_own_options(monkeypatch):
    """`read_source` gives every reader the options it takes, from the shared `ReaderOptions` part of the build and
    label configs (or its keywords), and nothing else."""
    import inspect

    from prmsearch.data_builders import readers

    seen = {}
    for name, reader in list(readers.READERS.items()):
        taken = inspect.signature(reader).parameters
        assert set(readers.OPTIONS.get(name, ())) <= set(taken), name  # the table names options the reader takes
        monkeypatch.setitem(readers.READERS, name, lambda path, name=name, **kw: seen.setdefault(name, kw))
    opts = readers.ReaderOptions(
        input="in.jsonl", skip_bad=True, neutral="negative", branches=False, after_error="truncate", prompt_field="q",
        solution_fields=["a", "b"], solution_key="s", outcome_key="o",
    )  # fmt: skip
    for name in readers.READERS:
        opts.source = name
        readers.read_source(opts, ReadReport(), split="dev", separator="\n", gold_field="g")
    common = {"skip_bad": True, "split": "dev"}
    assert seen["prm800k"] == {**common, "report": seen["prm800k"]["report"], "neutral": "negative", "branches": False}
    assert seen["processbench"]["after_error"] == seen["champ"]["after_error"] == "truncate"
    traces = {k: v for k, v in seen["traces"].items() if k not in ("report", "skip_bad", "split")}
    assert traces == {
        "prompt_field": "q", "solution_fields": ("a", "b"), "solution_key": "s", "outcome_key": "o",
        "gold_field": "g", "separator": "\n",
    }  # fmt: skip
    assert set(seen["stepwise"]) == set(seen["math-shepherd"]) == {"report", "skip_bad", "split"}
