"""The training side refuses data that does not fit the training asked for, in one line, before a model is loaded.

The data is what `prmsearch build` really writes (the CLI, on the GSM8K fixture); the calls are the real `train()`
(or `prmsearch train`), or the data-loading functions it runs (`inspect_data`, `load_data`).
"""

import json
import os
from pathlib import Path

import datasets
import pytest
from conftest import TINY_SIZES

import prmsearch.train.run as run
from prmsearch.cli import main
from prmsearch.errors import PrmsearchError
from prmsearch.train.config import TrainConfig, TrainConfigError
from prmsearch.train.data import inspect_data, label_shape, load_data
from prmsearch.train.run import train

FIXTURES = Path(__file__).resolve().parent / "fixtures"
ROOT = Path(__file__).resolve().parent.parent
TINY = {"model_type": "qwen2", **TINY_SIZES}
TARGET = {"prm": "prm", "orm": "orm", "bt": "pairs"}


@pytest.fixture(scope="module")
def built(tmp_path_factory, smollm2_tokenizer):
    """{target: folder} for every `prmsearch build` target, from the 4-problem GSM8K traces fixture (one bad row,
    skipped), plus the prm and orm sets re-saved as plain .jsonl without a build.json (data made elsewhere)."""
    root = tmp_path_factory.mktemp("built")
    out = {}
    for target in ("prm", "orm", "pairs", "stepwise"):
        out[target] = str(root / target)
        argv = ["build", target, "--config", str(ROOT / "data_builders" / "gsm8k_solutions.yaml")]
        argv += ["--input", str(FIXTURES / "traces_gsm8k.jsonl"), "--output", out[target], "--skip-bad", "--quiet"]
        assert main(argv) == 0
    for target in ("prm", "orm"):
        out[f"user_{target}"] = str(root / f"user_{target}.jsonl")
        datasets.load_from_disk(out[target]).to_json(out[f"user_{target}"])
    return out


def config(kind, train_data, tmp_path, **kw):
    values = {"kind": kind, "model_config": dict(TINY), "train_data": train_data, "output_dir": str(tmp_path / "out")}
    return TrainConfig.from_dict({**values, **kw})


def refusal(excinfo) -> str:
    """The message, checked to be one line from the package's own error family."""
    message = str(excinfo.value)
    assert isinstance(excinfo.value, PrmsearchError) and "\n" not in message, message
    return message


@pytest.fixture
def no_model(monkeypatch):
    """Fail the test if the model is built: these refusals must come before anything costly is loaded."""

    def refuse(*args, **kwargs):
        raise AssertionError("the model was built before the data was refused")

    monkeypatch.setattr(run, "build_reward_model", refuse)


# ---- data whose build.json says it was built for another kind ----------------------------------------------------

WRONG_KIND = [
    ("prm", "orm", "orm"),  # (training, data built for, the kind that data does train)
    ("orm", "prm", "prm"),
    ("bt", "prm", "prm"),
    ("bt", "orm", "orm"),
    ("bt", "stepwise", None),
    ("prm", "pairs", "bt"),
    ("orm", "stepwise", None),
]


@pytest.mark.parametrize(("kind", "data", "fits"), WRONG_KIND)
def test_train_refuses_data_built_for_another_kind(built, tmp_path, no_model, kind, data, fits):
    """Before: prm on orm data and orm on prm data trained without a word (the loss reads outcome labels as step
    labels, or step labels as outcomes); bt on token data failed on missing columns only after the model was
    loaded. After: one line naming the data, what it was built for, the training asked for, and what to do."""
    with pytest.raises(TrainConfigError) as e:
        train(config(kind, built[data], tmp_path), progress=False)
    message = refusal(e)
    assert message.startswith(f"{built[data]}: data built for {data} (its build.json), training {kind}, which needs")
    assert f"rebuild with `prmsearch build {TARGET[kind]} …`" in message
    assert (f"or train {fits}" in message) if fits else ("or train" not in message)


def test_cli_refuses_prm_training_on_orm_data(built, tmp_path, capsys, no_model):
    """`prmsearch train prm RECIPE train_data=<orm data>`: exit 2 and the one line, instead of a trained model."""
    recipe, data, out = ROOT / "train" / "tiny_prm.yaml", built["orm"], tmp_path / "out"
    rc = main(["train", "prm", str(recipe), f"train_data={data}", f"output_dir={out}"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and not out.exists()
    assert err == (
        f"prmsearch train: error: {built['orm']}: data built for orm (its build.json), training prm, which needs "
        "input_ids + labels columns with one label per step end; rebuild with `prmsearch build prm …` or train orm"
    )


def test_eval_data_built_for_another_kind_is_refused_too(built, tmp_path, no_model):
    with pytest.raises(TrainConfigError) as e:
        train(config("prm", built["prm"], tmp_path, eval_data=built["orm"]), progress=False)
    assert refusal(e).startswith(f"{built['orm']}: data built for orm (its build.json), training prm")


@pytest.mark.parametrize("kind", ["prm", "orm", "bt"])
def test_data_built_for_the_kind_is_accepted(built, tmp_path, smollm2_tokenizer, kind):
    cfg = config(kind, built[TARGET[kind]], tmp_path, eval_fraction=0.0)
    spec = inspect_data(cfg)
    assert spec.tokenizer == "smollm2" and spec.step_format.separator == "\n"
    train_set, eval_set = load_data(cfg, spec, len(smollm2_tokenizer))
    assert len(train_set) > 0 and eval_set is None


# ---- data without a build.json: judged by the shape of its labels ------------------------------------------------


@pytest.mark.parametrize(("kind", "data", "shape"), [("prm", "user_orm", "orm"), ("orm", "user_prm", "prm")])
def test_without_build_json_labels_of_the_other_kind_are_refused(built, tmp_path, kind, data, shape):
    """Before: trained without a word. After: refused by the shape of the labels (ORM: the outcome on every
    completion token, one run to the row's end; PRM: single labels at step ends)."""
    assert not os.path.exists(built[data] + ".build.json")
    with pytest.raises(TrainConfigError) as e:
        train(config(kind, built[data], tmp_path, tokenizer="smollm2"), progress=False)
    message = refusal(e)
    assert message.startswith(f"{built[data]}: labels that look like {shape} data")
    assert f"training {kind}" in message and f"`prmsearch build {kind} …` or train {shape}" in message


@pytest.mark.parametrize("kind", ["prm", "orm"])
def test_without_build_json_labels_of_the_kind_are_accepted(built, tmp_path, smollm2_tokenizer, kind):
    cfg = config(kind, built[f"user_{kind}"], tmp_path, tokenizer="smollm2", eval_fraction=0.0)
    train_set, _ = load_data(cfg, inspect_data(cfg), len(smollm2_tokenizer))
    assert len(train_set) == len(datasets.load_from_disk(built[kind]))


def test_label_shape_decides_only_when_the_labels_tell():
    ignore = -100
    assert label_shape([[ignore, ignore, 1, 1, 1], [ignore, 0, 0]]) == "orm"
    assert label_shape([[ignore, 1, ignore, ignore, 0], [ignore, 1]]) == "prm"
    assert label_shape([[ignore, ignore, 1], [ignore, 0]]) is None  # one-token completions or one-step solutions
    assert label_shape([[ignore, 1, 1, ignore]]) is None  # a run that stops before the end: neither
    assert label_shape([[ignore, ignore]]) is None


# ---- the data itself missing or unreadable ------------------------------------------------------------------------


def test_recipe_without_train_data_is_refused_in_one_line(tmp_path, capsys):
    """`prmsearch train prm RECIPE` whose recipe has no train_data: TrainConfig refuses it (train/config.py); one
    line, exit 2, before anything is loaded."""
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"model_config: {json.dumps(TINY)}\noutput_dir: {tmp_path / 'out'}\n")
    assert main(["train", "prm", str(recipe)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("prmsearch train: error: ") and "train_data" in err and "\n" not in err


def test_train_data_neither_local_nor_on_the_hub(tmp_path, monkeypatch):
    """Before: a `datasets` ConnectionError traceback ("Couldn't reach 'out/gsm8k_prm' on the Hub"). After: one
    line saying it is neither a local path nor a hub dataset, and how to build it."""
    monkeypatch.chdir(tmp_path)  # no out/ here; conftest keeps the hub offline
    with pytest.raises(PrmsearchError) as e:
        train(config("prm", "out/gsm8k_prm", tmp_path, tokenizer="smollm2"), progress=False)
    message = refusal(e)
    assert message.startswith("out/gsm8k_prm: not a local folder or file") and "prmsearch build prm" in message


def test_a_broken_build_json_is_named(built, tmp_path, no_model):
    data = tmp_path / "prm.jsonl"
    data.write_text(Path(built["user_prm"]).read_text())
    (tmp_path / "prm.jsonl.build.json").write_text('{"target": "prm",')
    with pytest.raises(TrainConfigError) as e:
        train(config("prm", str(data), tmp_path), progress=False)
    assert refusal(e).startswith(f"{data}.build.json: not valid JSON")
