"""`prmsearch report`: the summary of a search run (accuracy with its Wilson interval, mean compute, wall time) as
summary.json (a list of rows), summary.md and accuracy.png, from hand-written results and from a real tiny run."""

import json
import subprocess
import sys

import pytest

from prmsearch.search.report import FIELDS, format_table, plot, read_records, report, summarize, wilson_interval

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def rec(pid, strategy, n, correct, generated, scored=0, seconds=0.5):
    return {
        "problem_id": pid,
        "strategy": strategy,
        "n": n,
        "answer": "1",
        "correct": correct,
        "grade_reason": "equal" if correct else "different",
        "generated_tokens": generated,
        "scored_tokens": scored,
        "seconds": seconds,
    }


def synthetic():
    """Written in a scrambled order: the report orders greedy first, then by strategy and N."""
    rows = [rec(f"q{i}", "beam", 4, i % 2 == 0, 400 + i, 300 + i, 1.0) for i in range(10)]
    rows += [rec(f"q{i}", "greedy", 1, i < 8, 50, 0, 0.1) for i in range(10)]
    rows += [rec(f"q{i}", "majority", 4, c, 200) for i, c in enumerate([True, False, True, None])]
    rows += [rec(f"q{i}", "beam", 2, i < 3, 100 * (i + 1), 50, 0.25) for i in range(4)]
    rows += [rec(f"q{i}", "best_of_n", 4, True, 210, 180) for i in range(10)]
    return rows


@pytest.fixture
def run_dir(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    text = "".join(json.dumps(r) + "\n" for r in synthetic())
    text += '{"problem_id": "q11", "strategy": "beam", "n": 4, "answ'  # a run killed mid-write
    (run / "results.jsonl").write_text(text)
    (run / "trees.jsonl").write_text('{"problem_id": "q0", "strategy": "beam", "n": 4, "nodes": []}\n{"torn')
    return run


def test_wilson_interval_matches_known_values():
    low, high = wilson_interval(8, 10)  # the textbook example: 8 of 10, 95% -> [0.4902, 0.9433]
    assert low == pytest.approx(0.4902, abs=1e-4) and high == pytest.approx(0.9433, abs=1e-4)
    assert wilson_interval(0, 10) == (0.0, pytest.approx(0.2775, abs=1e-4))
    assert wilson_interval(10, 10) == (pytest.approx(0.7225, abs=1e-4), 1.0)
    assert wilson_interval(50, 100) == pytest.approx((0.4038, 0.5962), abs=1e-4)
    with pytest.raises(ValueError):
        wilson_interval(0, 0)


def test_report_rows_files_and_plot_leave_the_inputs_untouched(run_dir):
    before = {p.name: p.read_bytes() for p in run_dir.iterdir()}
    rows = report(run_dir)
    assert [(r["strategy"], r["n"]) for r in rows] == [
        ("greedy", 1),
        ("majority", 4),
        ("best_of_n", 4),
        ("beam", 2),
        ("beam", 4),
    ]
    assert all(tuple(r) == FIELDS for r in rows)
    by = {(r["strategy"], r["n"]): r for r in rows}
    greedy = by["greedy", 1]
    assert greedy["problems"] == 10 and greedy["accuracy"] == 0.8 and greedy["seconds"] == 1.0
    assert (greedy["accuracy_low"], greedy["accuracy_high"]) == (0.4902, 0.9433)
    assert greedy["generated_tokens"] == 50.0 and greedy["scored_tokens"] == 0.0
    majority = by["majority", 4]  # an ungraded record counts as a problem, not in the accuracy
    assert majority["problems"] == 4 and majority["accuracy"] == pytest.approx(2 / 3, abs=1e-4)
    beam4 = by["beam", 4]  # the torn line is skipped: 10 problems, not 11
    assert beam4["problems"] == 10 and beam4["accuracy"] == 0.5 and beam4["seconds"] == 10.0
    assert beam4["generated_tokens"] == 404.5 and beam4["scored_tokens"] == 304.5
    assert by["beam", 2]["generated_tokens"] == 250.0 and by["best_of_n", 4]["accuracy_high"] == 1.0
    for r in rows:
        assert 0 <= r["accuracy_low"] <= r["accuracy"] <= r["accuracy_high"] <= 1

    assert json.loads((run_dir / "summary.json").read_text()) == rows
    table = (run_dir / "summary.md").read_text()
    assert table == format_table(rows) + "\n"
    assert "| greedy | 1 | 10 | 0.800 | [0.490, 0.943] | 50 | 0 | 1 |" in table
    assert table.splitlines()[2].startswith("| greedy |") and table.count("\n") == 2 + len(rows)
    png = (run_dir / "accuracy.png").read_bytes()
    assert png.startswith(PNG_MAGIC) and len(png) > 20_000
    for name, data in before.items():  # results.jsonl (torn line included) and trees.jsonl byte for byte
        assert (run_dir / name).read_bytes() == data
    assert sorted(p.name for p in run_dir.iterdir()) == sorted([*before, "summary.json", "summary.md", "accuracy.png"])


def test_report_to_another_folder_and_from_the_results_file(run_dir, tmp_path):
    before = sorted(run_dir.iterdir())
    rows = report(run_dir / "results.jsonl", tmp_path / "out" / "deep")
    assert sorted(run_dir.iterdir()) == before  # nothing written next to the run
    assert json.loads((tmp_path / "out" / "deep" / "summary.json").read_text()) == rows
    assert (tmp_path / "out" / "deep" / "accuracy.png").read_bytes().startswith(PNG_MAGIC)


def test_report_of_several_runs_is_one_table(run_dir, tmp_path):
    other = tmp_path / "orm"
    other.mkdir()
    (other / "results.jsonl").write_text(
        "".join(json.dumps(rec(f"q{i}", "best_of_n", 16, i < 3, 900)) + "\n" for i in range(4))
    )
    rows = report([run_dir, other], tmp_path / "joint")
    keys = [(r["strategy"], r["n"]) for r in rows]
    assert ("best_of_n", 16) in keys and ("beam", 4) in keys
    assert next(r for r in rows if r["n"] == 16)["accuracy"] == 0.75
    assert json.loads((tmp_path / "joint" / "summary.json").read_text()) == rows
    with pytest.raises(ValueError, match="output folder"):
        report([run_dir, other])


def test_two_runs_of_one_strategy_keep_a_row_each(run_dir, tmp_path, capsys):
    """best-of-N of two reward models, each in its own folder, are two rows named by folder, never pooled; a
    strategy only one folder holds keeps its plain name; the over-optimization curve draws a line for each."""
    from prmsearch.cli import main

    for name, right, score in (("orm", 3, 0.9), ("bt", 1, 0.2)):
        (tmp_path / name).mkdir()
        rows = [{**rec(f"q{i}", "best_of_n", n, i < right + (n > 1), 900), "score": score * n / 4}
                for n in (1, 4) for i in range(4)]  # fmt: skip
        (tmp_path / name / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    rows = report([tmp_path / "orm", tmp_path / "bt", run_dir], tmp_path / "joint")
    named = {(r["strategy"], r.get("run"), r["n"]): r["accuracy"] for r in rows}
    assert named[("best_of_n", "orm", 4)] == 1.0 and named[("best_of_n", "bt", 4)] == 0.5
    assert named[("best_of_n", "run", 4)] == 1.0 and ("beam", None, 4) in named  # only run_dir holds beam
    table = (tmp_path / "joint" / "summary.md").read_text()
    assert "| best_of_n (orm) | 4 | 4 | 1.000 |" in table and "| best_of_n (bt) | 4 | 4 | 0.500 |" in table
    assert main(["report", str(tmp_path / "orm"), str(tmp_path / "bt"), "--output", str(tmp_path / "cli")]) == 0
    found = json.loads((tmp_path / "cli" / "overoptimization.json").read_text())
    assert {p["run"] for p in found["points"]} == {"orm", "bt"} and len(found["findings"]) == 2
    capsys.readouterr()


def test_summarize_edges(tmp_path):
    # a setting not run yet gets an empty row; a record without token counts does not break the means
    rows = summarize([rec("q0", "mcts", 8, None, None), rec("q0", "weird", 2, True, 5)], [("dvts", 4)])
    assert [(r["strategy"], r["n"], r["problems"]) for r in rows] == [("dvts", 4, 0), ("mcts", 8, 1), ("weird", 2, 1)]
    assert rows[0]["accuracy"] is None and rows[0]["seconds"] == 0 and rows[1]["accuracy_low"] is None
    assert rows[1]["generated_tokens"] is None and rows[2]["accuracy"] == 1.0
    table = format_table(rows)
    assert "| dvts | 4 | 0 | n/a | - | - | - | 0 |" in table and "| mcts | 8 | 1 | n/a |" in table
    assert table.endswith("no answer was graded (the problems have no gold answers), so accuracy is not available")
    plot(rows, tmp_path / "p.png")  # only one graded row and no greedy: still a plot
    assert (tmp_path / "p.png").read_bytes().startswith(PNG_MAGIC)
    # a complete last record without its newline is kept
    (tmp_path / "r.jsonl").write_text(json.dumps(rec("q0", "beam", 2, True, 3)))
    assert len(read_records(tmp_path / "r.jsonl")) == 1


def test_cli_report_and_its_errors(run_dir, tmp_path, capsys):
    from prmsearch.cli import main

    assert main(["report", str(run_dir), "--output", str(tmp_path / "o")]) == 0
    printed = capsys.readouterr().out
    assert "| beam | 4 | 10 | 0.500 |" in printed and str(tmp_path / "o") in printed
    assert (tmp_path / "o" / "accuracy.png").exists()

    bad = tmp_path / "bad"
    bad.mkdir()
    lines = [json.dumps(r) for r in synthetic()[:3]]
    (bad / "results.jsonl").write_text("\n".join([lines[0], "{not json", lines[1]]) + "\n")
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "results.jsonl").write_text("")
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "x.txt").write_text("x")
    (tmp_path / "nonresult").mkdir()
    (tmp_path / "nonresult" / "results.jsonl").write_text('{"a": 1}\n')
    cases = {
        tmp_path / "missing": "does not exist",
        tmp_path / "other": "has no results.jsonl",
        bad: "line 2: not JSON",
        tmp_path / "empty": "holds no results yet",
        tmp_path / "nonresult": "line 1: not a search result",
    }
    for path, message in cases.items():
        assert main(["report", str(path)]) == 2
        err = capsys.readouterr().err
        assert err.startswith("prmsearch report: error: ") and message in err and err.count("\n") == 1, err
    assert not (bad / "summary.json").exists()
    assert main(["report", str(run_dir), "--output", str(run_dir / "results.jsonl")]) == 2
    assert "must be a folder" in capsys.readouterr().err


def test_cli_error_in_a_fresh_process(tmp_path):
    """The entry point end to end: one line on stderr, exit 2; and `import prmsearch` does not pull in matplotlib."""
    code = (
        "import sys, prmsearch; prmsearch.report; assert 'matplotlib' not in sys.modules; "
        "from prmsearch.cli import main; sys.exit(main(sys.argv[1:]))"
    )
    failed = subprocess.run(
        [sys.executable, "-c", code, "report", str(tmp_path / "nowhere")], capture_output=True, text=True
    )
    assert failed.returncode == 2 and failed.stdout == ""
    assert failed.stderr.strip().splitlines() == [f"prmsearch report: error: {tmp_path / 'nowhere'} does not exist"]


def test_report_of_a_real_tiny_search(tmp_path, smollm2_tokenizer, capsys):
    from prmsearch.cli import main
    from prmsearch.models.tiny import tiny_policy, tiny_prm

    tiny_policy(smollm2_tokenizer).save_pretrained(tmp_path / "policy")
    smollm2_tokenizer.save_pretrained(tmp_path / "policy")
    tiny_prm(smollm2_tokenizer).save_pretrained(tmp_path / "prm")
    with open(tmp_path / "problems.jsonl", "w") as f:
        for i in range(3):
            f.write(json.dumps({"id": f"q{i}", "problem": f"What is {i} + 2?", "answer": str(i + 2)}) + "\n")
    run = tmp_path / "run"
    args = [
        "search", "--policy", str(tmp_path / "policy"), "--scorer", str(tmp_path / "prm"),
        "--dataset", str(tmp_path / "problems.jsonl"), "--output", str(run), "--prompt-template", "plain",
        "--max-steps", "3", "--max-step-tokens", "12", "--max-tokens", "40", "--width", "2", "--quiet",
        "--strategy", "beam,greedy,best_of_n", "--n", "2",
    ]  # fmt: skip
    assert main(args) == 0
    printed = capsys.readouterr().out
    searched = json.loads((run / "summary.json").read_text())  # the search writes the report's list format
    assert isinstance(searched, list) and all(tuple(r) == FIELDS for r in searched)
    assert [(r["strategy"], r["n"]) for r in searched] == [("greedy", 1), ("best_of_n", 2), ("beam", 2)]
    assert all(r["problems"] == 3 and r["generated_tokens"] > 0 for r in searched)
    assert "| beam | 2 | 3 |" in printed and (run / "accuracy.png").read_bytes().startswith(PNG_MAGIC)
    results = (run / "results.jsonl").read_bytes()

    assert main(["report", str(run), "--output", str(tmp_path / "rep")]) == 0
    assert json.loads((tmp_path / "rep" / "summary.json").read_text()) == searched
    assert (tmp_path / "rep" / "summary.md").read_text() == (run / "summary.md").read_text()
    png = (tmp_path / "rep" / "accuracy.png").read_bytes()
    assert png.startswith(PNG_MAGIC) and len(png) > 20_000
    assert (run / "results.jsonl").read_bytes() == results
