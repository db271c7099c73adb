"""`prmsearch verify math`: grades a results file, names bad rows, keeps what was graded before one."""

import json
import os

import pytest

from prmsearch.cli import main
from prmsearch.rows import BadRowError
from prmsearch.verifiers.results import VerifyMathConfig, verify_math_file

ROWS = [
    {"id": 1, "out": "so \\boxed{\\frac{1}{2}}", "gold": "0.5", "ok": True},
    {"id": 2, "out": "A: 17", "gold": "Janet ... #### 18", "ok": False},
    {"id": 3, "out": ["The answer is 4.", "The answer is 5."], "gold": 4, "ok": [True, False]},
    {"id": 4, "out": "nothing", "gold": "1", "ok": True},  # a wrong label, to be reported as a disagreement
]


def write(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def read(path):
    return [json.loads(line) for line in open(path)]


def test_cli_grades_and_reports_agreement(tmp_path, capsys):
    src, out = write(tmp_path / "in.jsonl", ROWS), str(tmp_path / "out" / "graded.jsonl")
    code = main(
        [
            "verify",
            "math",
            "--input",
            src,
            "--output",
            out,
            "--pred-field",
            "out",
            "--gold-field",
            "gold",
            "--label-field",
            "ok",
            "--quiet",
        ]
    )
    assert code == 0
    rows = read(out)
    assert [r["grade_correct"] for r in rows] == [True, False, [True, False], False]
    assert rows[0]["grade_reason"] == "equivalent" and rows[1]["grade_answer"] == "17"
    assert rows[3]["grade_reason"] == "no answer" and rows[0]["id"] == 1  # input fields carried through
    printed = capsys.readouterr().out
    assert "correct 2/5" in printed and "agreement with ok: 4/5" in printed and "in.jsonl:4[0]" in printed


def test_pred_is_answer(tmp_path):
    src = write(tmp_path / "in.jsonl", [{"answer": "1,000", "gold": "1000"}, {"answer": "x = 3", "gold": "3"}])
    out = str(tmp_path / "o.jsonl")
    verify_math_file(
        VerifyMathConfig(input=src, output=out, pred_field="answer", gold_field="gold", pred_is_answer=True),
        progress=False,
    )
    assert [r["grade_correct"] for r in read(out)] == [True, True]


def test_bad_row_names_file_line_field_and_keeps_earlier_rows(tmp_path):
    bad = [ROWS[0], ROWS[1], {"out": 7, "gold": "1"}, ROWS[0]]
    src, out = write(tmp_path / "in.jsonl", bad), str(tmp_path / "o.jsonl")
    cfg = VerifyMathConfig(input=src, output=out, pred_field="out", gold_field="gold", chunk_size=1)
    with pytest.raises(
        BadRowError, match=r"in.jsonl:3: field 'out': expected str or list, got int '7' \(the 2 answers"
    ):
        verify_math_file(cfg, progress=False)
    assert len(read(out + ".partial")) == 2  # graded before the bad row: kept, not lost
    assert not os.path.exists(out) and sorted(os.listdir(tmp_path)) == ["in.jsonl", "o.jsonl.partial"]
    cfg.skip_bad = True
    summary = verify_math_file(cfg, progress=False)
    assert summary["bad_rows"] == 1 and summary["graded"] == 3 and len(read(out)) == 3


def test_cli_errors_are_clear(tmp_path, capsys):
    src = write(tmp_path / "in.jsonl", ROWS)
    assert main(["verify", "math", "--input", src, "--output", src, "--quiet"]) == 2
    assert "must differ from --input" in capsys.readouterr().err
    assert main(["verify", "math", "--input", src, "--output", str(tmp_path / "o.jsonl"), "--quiet"]) == 2
    assert "in.jsonl:1: field 'solution': missing" in capsys.readouterr().err
