"""`prmsearch eval aggregation`: each step aggregation's best-of-N on graded samples is what `rerank` picks with it,
the best one is saved into the model when asked (and every consumer then uses it), and what cannot be written to
is refused in one line."""

import json
import shutil
from pathlib import Path

import pytest

from prmsearch.cli import main
from prmsearch.eval.aggregation import AggregationConfig, run_aggregation
from prmsearch.models.reward_model import RewardModel
from prmsearch.scoring import STEP_AGGREGATIONS
from prmsearch.search import load_scorer
from prmsearch.search.rerank import rerank
from prmsearch.shipped import resolve

FIXTURES = Path(__file__).parent / "fixtures"
SAMPLES = str(FIXTURES / "chains_samples.jsonl")  # 8 embedded-policy samples of 40 bundled problems, graded


@pytest.fixture(scope="module")
def prm():
    return RewardModel.from_pretrained("embedded:prm", device="cpu")


@pytest.fixture
def last_prm(tmp_path, prm):
    """A copy of the embedded PRM that says it was trained for `last`."""
    folder = tmp_path / "prm"
    shutil.copytree(resolve("embedded:prm"), folder)
    config = folder / "config.json"
    settings = json.loads(config.read_text())
    settings["prmsearch"]["step_aggregation"] = "last"
    config.write_text(json.dumps(settings))
    return str(folder)


def test_each_aggregation_scores_as_rerank_picks_and_min_beats_last(prm):
    result = run_aggregation(AggregationConfig(model="embedded:prm", data=SAMPLES), scorer=prm)
    rows = [json.loads(line) for line in open(SAMPLES)]
    ids = {p: i for i, p in enumerate(dict.fromkeys(r["prompt"] for r in rows))}
    frame = [
        {"problem_id": ids[r["prompt"]], "prompt": r["prompt"], "text": r["completion"], "right": r["label"]}
        for r in rows
    ]
    scorer = load_scorer("embedded:prm", device="cpu")
    assert (result["problems"], result["samples"]) == (40, 320)
    for how in STEP_AGGREGATIONS:
        chosen = rerank(frame, "best_of_n", how, scorer=scorer, gold_column=None)
        accuracy = sum(row["right"] for row in chosen) / len(chosen)
        assert result["aggregations"][how]["best_of_n"] == pytest.approx(accuracy), how
    table = result["aggregations"]
    assert result["best"] == "min"
    assert table["min"]["best_of_n"] >= table["last"]["best_of_n"] + 0.4  # measured 0.825 against 0.250
    assert table["min"]["auroc"] > table["last"]["auroc"]
    assert result["first_sample"] < table["min"]["best_of_n"] <= result["any_right"]
    assert table["min"]["pair_accuracy"] > 0.75 > 0.5 > table["last"]["pair_accuracy"]  # measured 0.808, 0.435


def test_write_saves_the_best_and_every_consumer_then_uses_it(last_prm, capsys):
    assert load_scorer(last_prm, device="cpu").agg == "last"
    code = main(["eval", "aggregation", "--model", last_prm, "--data", SAMPLES, "--device", "cpu", "--write"])
    out = capsys.readouterr().out
    assert code == 0
    assert "| last (saved) |" in out and "step_aggregation last -> min saved in" in out
    assert RewardModel.from_pretrained(last_prm).step_aggregation == "min"
    assert load_scorer(last_prm, device="cpu").agg == "min"
    assert load_scorer(last_prm, device="cpu", agg="last").agg == "last"  # a flag still wins


@pytest.mark.parametrize(
    "model, data, says",
    [
        ("embedded:prm", SAMPLES, "is not one (copy it to a folder first"),
        ("LAST", str(FIXTURES / "processbench.jsonl"), "no known format's fields"),
        ("LAST", "PREFERENCES", "holds preference rows; eval aggregation needs graded samples"),
    ],
)
def test_what_cannot_be_read_or_written_is_one_line(tmp_path, last_prm, capsys, model, data, says):
    if data == "PREFERENCES":
        data = str(tmp_path / "pairs.jsonl")
        (tmp_path / "pairs.jsonl").write_text(json.dumps({"prompt": "q", "chosen": "a", "rejected": "b"}) + "\n")
    model = last_prm if model == "LAST" else model
    before = (tmp_path / "prm" / "config.json").read_text()
    code = main(["eval", "aggregation", "--model", model, "--data", data, "--device", "cpu", "--write"])
    err = capsys.readouterr().err.strip().splitlines()[-1]  # after the weights' loading bar, if it loaded
    assert code == 2 and err.startswith("prmsearch eval: error: ") and says in err, err
    assert (tmp_path / "prm" / "config.json").read_text() == before


@pytest.mark.parametrize("write, says", [([], "is not a PRM"), (["--write"], "has no prmsearch PRM settings")])
def test_an_orm_is_refused_in_one_line(tmp_path, capsys, write, says):
    folder = tmp_path / "orm"
    shutil.copytree(resolve("embedded:orm"), folder)
    code = main(["eval", "aggregation", "--model", str(folder), "--data", SAMPLES, "--device", "cpu", *write])
    err = capsys.readouterr().err.strip().splitlines()[-1]  # after the weights' loading bar, if it loaded
    assert code == 2 and err.startswith("prmsearch eval: error: ") and says in err, err
