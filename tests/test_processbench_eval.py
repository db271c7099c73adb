"""ProcessBench-style evaluation: the CHAMP reader against the package's own annotations, the F1 of an oracle
(100) and of constant scorers (0: each is right on only one class), the exact threshold search against a brute-force
sweep, and a trained PRM (the embedded one) on the bundled task's solutions with known first errors."""

import json
import random

import pytest

from benchmarks.reference_scorers import Constant, Oracle
from prmsearch.data_builders.champ import paragraphs, read_champ
from prmsearch.data_builders.processbench import read_processbench
from prmsearch.eval.processbench import (
    Annotated,
    annotated,
    best_threshold,
    correct_interval,
    evaluate,
    held_out,
)
from prmsearch.train.metrics import first_error, processbench_f1


@pytest.fixture(scope="module")
def champ():
    return annotated(read_champ())


def test_champ_reader_places_the_first_error_in_the_annotated_paragraph(champ):
    import champ_dataset

    notes = [n for p in champ_dataset.load("v0").problems.values() for n in p.fws_annotations.values()]
    assert len(champ) == len(notes) == 540
    assert sum(a.first_error < 0 for a in champ) == sum(n.start_idx is None for n in notes) == 96
    for a, note in zip(champ, notes, strict=True):
        assert a.steps == [p.strip() for p in note.text.split("\n\n") if p.strip()]
        if note.start_idx is not None:
            # paragraphs wholly before the span's start, counted another way: the text before it, split
            before = note.text[: note.start_idx].split("\n\n")
            whole = sum(1 for p in before[:-1] if p.strip())
            assert a.first_error == whole, (a.id, note.start_idx)


def test_paragraph_offsets():
    text = "\n\n  a\n\nb c\n\n\n\nd"
    assert paragraphs(text) == [(4, "a"), (7, "b c"), (14, "d")]
    assert [text[i] for i, _ in paragraphs(text)] == ["a", "b", "d"]


def test_oracle_scores_f1_100_and_constants_score_0(champ):
    oracle = evaluate(Oracle(champ), champ)
    assert oracle["processbench_f1"] == 1.0 and oracle["solutions"] < len(champ)  # the rest tuned the threshold
    assert evaluate(Oracle(champ), champ, threshold=0.5)["processbench_f1"] == 1.0
    high = evaluate(Constant(0.9), champ, threshold=0.5)  # never flags an error: right on correct solutions only
    assert (high["correct_accuracy"], high["error_accuracy"], high["processbench_f1"]) == (1.0, 0.0, 0.0)
    low = evaluate(Constant(0.1), champ, threshold=0.5)  # flags step 0 of everything
    zero = sum(a.first_error == 0 for a in champ) / sum(a.first_error >= 0 for a in champ)
    assert low["correct_accuracy"] == 0.0 and low["error_accuracy"] == pytest.approx(zero)
    assert low["solutions"] == len(champ) and low["erroneous"] + low["correct"] == len(champ)


def test_the_threshold_search_is_exact():
    rng = random.Random(0)
    scores = [[round(rng.random(), 2) for _ in range(rng.randint(1, 6))] for _ in range(60)]
    golds = [rng.choice([-1, *range(len(s))]) for s in scores]

    def f1(t):
        return processbench_f1([first_error(s, t) for s in scores], golds)["processbench_f1"]

    sweep = max(f1(k / 1000) for k in range(0, 1002))
    found = best_threshold(scores, golds)
    assert f1(found) == pytest.approx(sweep) and f1(found) >= max(f1(0.5), f1(0.3))
    for s, g in zip(scores, golds, strict=True):
        low, high = correct_interval(s, g)
        for t in (0.0, 0.25, 0.5, 0.75, 1.0):
            assert (first_error(s, t) == g) == (low < t <= high)


def test_the_held_out_split_is_fixed_by_ids():
    items = [Annotated(f"s{i}", "p", ["a"], -1) for i in range(200)]
    tune, test = held_out(items)
    assert sorted(tune + test) == list(range(200)) and 70 < len(tune) < 130
    assert held_out(list(reversed(items)))[0] == sorted(199 - i for i in tune)


def test_processbench_files_read_through_the_reader(tmp_path):
    rows = [
        {"id": "a", "problem": "1+1?", "steps": ["1+1=3", "so 3"], "label": 0, "final_answer_correct": False},
        {"id": "b", "problem": "2+2?", "steps": ["2+2=4", "so 4"], "label": -1, "final_answer_correct": True},
    ]
    path = tmp_path / "pb.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    items = annotated(read_processbench(str(path), after_error="unlabelled"))
    assert [(a.steps, a.first_error) for a in items] == [(["1+1=3", "so 3"], 0), (["2+2=4", "so 4"], -1)]
    assert evaluate(Oracle(items), items, threshold=0.5)["processbench_f1"] == 1.0


def test_the_embedded_prm_finds_first_errors_on_the_bundled_task():
    from prmsearch import RewardModel
    from prmsearch.tasks.chains import generate, step_correct

    items = []
    for p in generate("test", 80, seed=3):
        steps = list(p.meta["steps"])
        items.append(Annotated(f"{p.id}:right", p.prompt, steps, -1))
        k = len(steps) // 2
        left, value = steps[k].rsplit("= ", 1)
        wrong = [*steps[:k], f"{left}= {int(value) + 10}", *steps[k + 1 :]]
        assert step_correct(p, wrong).index(False) == k
        items.append(Annotated(f"{p.id}:wrong", p.prompt, wrong, k))
    result = evaluate(RewardModel.from_pretrained("embedded:prm"), items)
    assert result["processbench_f1"] > 0.8, result


def test_a_causal_lm_is_evaluated_as_the_critic_judge_from_the_command_line(tmp_path, capsys):
    """`--judge`: the embedded policy (a real causal LM, no judge) as the step critic; its verdicts are counted,
    nearly all invalid, and the threshold is the verdicts' 0.5."""
    from prmsearch.cli import main

    rows = [
        {
            "id": "a",
            "problem": "Compute 1 + 1.",
            "steps": ["1 + 1 = 3", "so 3"],
            "label": 0,
            "final_answer_correct": False,
        },
        {
            "id": "b",
            "problem": "Compute 2 + 2.",
            "steps": ["2 + 2 = 4", "so 4"],
            "label": -1,
            "final_answer_correct": True,
        },
    ]
    path = tmp_path / "pb.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "result.json"
    argv = ["eval", "processbench", "--judge", "embedded:policy", "--data", str(path), "--device", "cpu"]
    assert main([*argv, "--output", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["verdicts"] == 2 and 0 <= result["invalid_verdicts"] <= 2 and result["threshold"] == 0.5
    assert f"{result['invalid_verdicts']} of 2 verdicts invalid" in capsys.readouterr().out
    assert main([*argv, "--scorer", "embedded:prm"]) == 2
    assert "not both" in capsys.readouterr().err


def test_labels_prmsearch_wrote_are_read_for_their_first_errors_from_the_command_line(tmp_path):
    """`--source stepwise`: rows as `prmsearch label --after-error unlabelled` writes them (completions cut at the
    first error, the whole solution in `steps`, null labels after the error) give their first errors, and the
    embedded PRM finds them."""
    from prmsearch.cli import main
    from prmsearch.eval.processbench import read_annotated
    from prmsearch.tasks.chains import generate

    rows, firsts = [], []
    for p in generate("test", 40, seed=5):
        steps = list(p.meta["steps"])
        rows.append({"prompt": p.prompt, "completions": steps, "labels": [True] * len(steps), "outcome": True})
        k = len(steps) // 2
        left, value = steps[k].rsplit("= ", 1)
        wrong = [*steps[:k], f"{left}= {int(value) + 10}", *steps[k + 1 :]]
        cut = [True] * k + [False]
        step_labels = [*cut, *[None] * (len(wrong) - k - 1)]
        rows.append({"prompt": p.prompt, "completions": wrong[: k + 1], "labels": cut, "steps": wrong,
                     "step_labels": step_labels, "outcome": False})  # fmt: skip
        firsts += [-1, k]
    path = tmp_path / "labels.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    items = read_annotated(str(path), source="stepwise")
    assert [a.first_error for a in items] == firsts and items[1].steps == rows[1]["steps"]
    out = tmp_path / "result.json"
    argv = ["eval", "processbench", "--scorer", "embedded:prm", "--data", str(path), "--source", "stepwise"]
    assert main([*argv, "--output", str(out)]) == 0
    assert json.loads(out.read_text())["processbench_f1"] > 0.8
