"""`prmsearch eval canary`: the kind's metrics on a held-out set match the model's own scores, the reliability bins
add up to the ECE, drift against a baseline exits 1, and bad input is one line with exit 2."""

import json

import pytest
import torch

from prmsearch.cli import main
from prmsearch.eval.canary import CanaryConfig, read_canary, run_canary
from prmsearch.models.reward_model import RewardModel
from prmsearch.tasks.chains import generate, step_correct
from prmsearch.train import metrics as M


def _slipped(steps, k):
    head, _, result = steps[k].rpartition(" = ")
    return [*steps[:k], f"{head} = {int(result) + 1}", *steps[k + 1 :]]


@pytest.fixture(scope="module")
def solutions():
    """(prompt, steps, step labels) of held-out chains problems: the worked solution, and one with a slip."""
    out = []
    for i, p in enumerate(generate("test", 24)):
        steps = list(p.meta["steps"])
        wrong = _slipped(steps, i % (len(steps) - 1))
        for s in (steps, wrong):
            out.append((p.prompt, s, step_correct(p, s)))
    return out


def _write(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def _canary(tmp_path, model, name, rows):
    """run_canary on `rows`, written to NAME.jsonl, into the folder NAME."""
    data = _write(tmp_path / f"{name}.jsonl", rows)
    return run_canary(CanaryConfig(model=model, data=data, output=str(tmp_path / name), device="cpu"))


def _stepwise(tmp_path, solutions, flip=False):
    rows = [{"prompt": q, "completions": s, "labels": [y != flip for y in ys]} for q, s, ys in solutions]
    return _write(tmp_path / ("flipped.jsonl" if flip else "steps.jsonl"), rows)


def test_a_prm_on_its_canary_set_and_drift_against_a_baseline(tmp_path, solutions):
    data = _stepwise(tmp_path, solutions)
    first = run_canary(CanaryConfig(model="embedded:prm", data=data, output=str(tmp_path / "a"), device="cpu"))
    rm = RewardModel.from_pretrained("embedded:prm", device="cpu")
    probs = torch.tensor([x for q, s, _ in solutions for x in rm.score_steps(q, s)])
    labels = torch.tensor([float(y) for *_, ys in solutions for y in ys])
    assert first["steps"] == len(labels) and first["solutions"] == len(solutions)
    assert first["accuracy"] == pytest.approx(M.binary_accuracy(probs, labels), abs=1e-6)
    assert first["auroc"] == pytest.approx(M.auroc(probs, labels), abs=1e-6) and first["auroc"] > 0.7
    bins = first["reliability"]
    assert sum(b["count"] for b in bins) == len(labels)
    gap = sum(b["count"] * abs(b["accuracy"] - b["confidence"]) for b in bins if b["count"]) / len(labels)
    assert first["ece"] == pytest.approx(gap, abs=1e-9)
    assert (tmp_path / "a" / "reliability.png").stat().st_size > 10_000

    baseline = str(tmp_path / "a" / "canary.json")
    same = ["eval", "canary", "--model", "embedded:prm", "--device", "cpu", "--baseline", baseline]
    assert main([*same, "--data", data, "--output", str(tmp_path / "b")]) == 0
    assert json.loads((tmp_path / "b" / "canary.json").read_text())["drift"] == []
    # the same model on labels turned upside down: accuracy falls and calibration breaks
    flipped = _stepwise(tmp_path, solutions, flip=True)
    assert main([*same, "--data", flipped, "--output", str(tmp_path / "c")]) == 1
    drifted = json.loads((tmp_path / "c" / "canary.json").read_text())
    assert [d.split()[0] for d in drifted["drift"]] == ["accuracy", "ECE"]
    # the result never overwrites the baseline it is compared with
    assert main([*same, "--data", data, "--output", str(tmp_path / "a")]) == 2
    assert json.loads(open(baseline).read()) == json.loads(json.dumps(first))


def test_a_bt_model_ties_are_wrong_and_both_orders_calibrate(tmp_path, smollm2_tokenizer):
    from transformers import Qwen2Config

    from prmsearch.models.tiny import SIZES

    config = Qwen2Config(**SIZES, num_key_value_heads=1, vocab_size=len(smollm2_tokenizer))
    RewardModel.from_backbone(config, smollm2_tokenizer, "bt").save_pretrained(str(tmp_path / "bt"))
    rows = [{"prompt": f"Q{i}", "chosen": f"answer {i}", "rejected": f"answer {i}"} for i in range(6)]
    tied = _canary(tmp_path, str(tmp_path / "bt"), "t", rows)
    # the same text on both sides: every pair ties, so nothing is right, and P = 0.5 either way is calibrated
    assert (tied["pairs"], tied["accuracy"], tied["margin"]) == (6, 0.0, 0.0)
    assert tied["ece"] == pytest.approx(0.0, abs=1e-6)
    rows = [{"prompt": f"Q{i}", "chosen": "yes " * (i + 1), "rejected": "no"} for i in range(6)]
    got = _canary(tmp_path, str(tmp_path / "bt"), "p", rows)
    rm = RewardModel.from_pretrained(str(tmp_path / "bt"), device="cpu")
    margins = [rm.score(r["prompt"], r["chosen"]) - rm.score(r["prompt"], r["rejected"]) for r in rows]
    assert got["accuracy"] == pytest.approx(sum(m > 0 for m in margins) / 6)
    assert got["margin"] == pytest.approx(sum(margins) / 6, abs=1e-5)
    # each pair is read in both orders: the bins are mirror images, 12 predictions in all
    counts = [b["count"] for b in got["reliability"]]
    assert sum(counts) == 12 and counts == counts[::-1]


def test_an_orm_on_outcome_rows(tmp_path, solutions):
    rows = [{"prompt": q, "completion": "\n\n".join(s), "label": all(ys)} for q, s, ys in solutions]
    got = _canary(tmp_path, "embedded:orm", "o", rows)
    assert got["solutions"] == len(rows) and got["auroc"] > 0.7 and 0 <= got["ece"] <= 1


def test_bad_canary_input_is_one_line_naming_file_row_and_field(tmp_path, solutions, capsys):
    data = _stepwise(tmp_path, solutions)
    with open(data, "a") as f:
        f.write(json.dumps({"prompt": "Q", "completions": ["a"], "labels": [1]}) + "\n")
    bad = ["eval", "canary", "--model", "embedded:prm", "--device", "cpu", "--output", str(tmp_path / "x")]
    assert main([*bad, "--data", data]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"row {len(solutions) + 1}" in err and "'labels'" in err
    assert read_canary(_stepwise(tmp_path, solutions))[0] == "prm"
    assert main([*bad, "--data", _stepwise(tmp_path, solutions), "--model", "embedded:orm"]) == 2
    assert "is of kind ORM, evaluated on outcome rows (prompt, completion, label)" in capsys.readouterr().err
    assert main([*bad, "--data", str(tmp_path / "missing.jsonl")]) == 2
    assert "cannot read the canary set" in capsys.readouterr().err
    baseline = tmp_path / "baseline.json"
    baseline.write_text(json.dumps({"kind": "prm", "accuracy": "0.9", "ece": 0.1}))
    assert main([*bad, "--data", _stepwise(tmp_path, solutions), "--baseline", str(baseline)]) == 2
    assert "baseline.json: field 'accuracy' must be a number, got '0.9'" in capsys.readouterr().err
