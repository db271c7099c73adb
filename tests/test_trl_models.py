"""Reward models TRL trains load unnamed through the format registry (`models.formats`) and score exactly as TRL's
trainers lay out their rows: a BT model trained here by TRL's own `RewardTrainer` on conversational preference pairs
(scored through `load_scorer`, `reward_function` and `prmsearch serve`), and a PRM in TRL's stepwise convention."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from conftest import tiny_config
from transformers import AutoModelForSequenceClassification, AutoModelForTokenClassification, LlamaConfig

from prmsearch.models.formats import detect, load_reward_model
from prmsearch.rewards import reward_function
from prmsearch.search.load import load_scorer

FIXTURES = Path(__file__).parent / "fixtures"
SUMS = [(2, 3), (4, 1), (7, 5), (9, 9), (12, 30), (6, 8), (3, 3), (10, 1)]
PAIRS = [
    (f"What is {a} + {b}?", f"{a} + {b} = {a + b}. The answer is {a + b}.", f"It is {a + b + 1}.") for a, b in SUMS
]


@pytest.fixture(scope="module")
def trl_bt(tmp_path_factory, smollm2_tokenizer):
    """A one-label Llama classifier trained 3 steps by TRL's RewardTrainer on conversational pairs and saved by it;
    with the ids TRL's trainer made of each chosen row."""
    from datasets import Dataset
    from trl import RewardConfig, RewardTrainer

    out = tmp_path_factory.mktemp("trl_bt")
    rows = [
        {
            "prompt": [{"role": "user", "content": q}],
            "chosen": [{"role": "assistant", "content": good}],
            "rejected": [{"role": "assistant", "content": bad}],
        }
        for q, good, bad in PAIRS
    ]
    torch.manual_seed(0)
    config = tiny_config(LlamaConfig, smollm2_tokenizer, num_labels=1, pad_token_id=smollm2_tokenizer.pad_token_id)
    model = AutoModelForSequenceClassification.from_config(config)
    args = RewardConfig(
        output_dir=str(out / "run"), max_steps=3, per_device_train_batch_size=4, learning_rate=1e-3,
        report_to="none", save_strategy="no", logging_steps=1, use_cpu=True, bf16=False,
        gradient_checkpointing=False, disable_tqdm=True,
    )  # fmt: skip
    trainer = RewardTrainer(
        model=model, args=args, train_dataset=Dataset.from_list(rows), processing_class=smollm2_tokenizer
    )
    trainer.train()
    trainer.save_model(str(out / "model"))
    return out / "model", [trainer.train_dataset[i]["chosen_ids"] for i in range(len(rows))]


def test_a_trl_reward_model_scores_as_its_own_forward_on_trls_layout(trl_bt):
    path, trl_ids = trl_bt
    assert detect(str(path)) == "trl-reward"  # unnamed: its config declares it
    rm = load_reward_model(str(path), device="cpu")
    prompts, chosen = [q for q, _, _ in PAIRS], [good for _, good, _ in PAIRS]
    assert [
        rm.encode(q, a).input_ids for q, a in zip(prompts, chosen, strict=True)
    ] == trl_ids  # TRL's own tokenization
    own = AutoModelForSequenceClassification.from_pretrained(path).eval()
    with torch.no_grad():
        expected = [own(torch.tensor([ids])).logits[0, 0].item() for ids in trl_ids]
    assert len({round(e, 4) for e in expected}) > 4  # the rewards differ, so a mix-up would show
    scorer = load_scorer(str(path), device="cpu")
    got = scorer.score_solutions(prompts, [[a] for a in chosen]).scores
    assert got == pytest.approx(expected, abs=1e-5)  # batched and padded: the same rewards
    assert reward_function(str(path), device="cpu")(prompts=prompts, completions=chosen) == pytest.approx(
        expected, abs=1e-5
    )


def test_prmsearch_serve_serves_a_trl_reward_model(trl_bt):
    pytest.importorskip("starlette")
    from prmsearch.serve import Client, ServeConfig, create_app, running

    path, trl_ids = trl_bt
    own = AutoModelForSequenceClassification.from_pretrained(path).eval()
    with torch.no_grad():
        expected = [own(torch.tensor([ids])).logits[0, 0].item() for ids in trl_ids]
    prompts = [q for q, _, _ in PAIRS]
    with running(create_app(load_scorer(str(path), device="cpu"), ServeConfig())) as url:
        got = Client(url).score([q + good for q, good, _ in PAIRS], prompts)
    assert got == pytest.approx(expected, abs=1e-5)


def test_a_token_classifier_in_trls_stepwise_convention_is_a_step_scorer(tmp_path, smollm2_tokenizer):
    """The ids and label positions trl 1.13's PRMTrainer.tokenize_row made of stepwise rows (recorded in the
    fixture, with the SmolLM2 tokenizer) are where the format reads each step; the score is P(label 1) there."""
    recorded = json.loads((FIXTURES / "trl_prm_rows.json").read_text())
    torch.manual_seed(1)
    model = AutoModelForTokenClassification.from_config(
        tiny_config(LlamaConfig, smollm2_tokenizer, num_labels=2)
    ).eval()
    model.save_pretrained(tmp_path)
    smollm2_tokenizer.save_pretrained(tmp_path)
    assert detect(str(tmp_path)) == "trl-prm"
    prm = load_reward_model(str(tmp_path), device="cpu")
    for row in recorded["rows"]:
        enc = prm.encode(row["prompt"], row["completions"])
        assert enc.input_ids == row["input_ids"]
        assert enc.step_ends == [i for i, label in enumerate(row["labels"]) if label != -100]
        with torch.no_grad():
            logits = model(torch.tensor([row["input_ids"]])).logits[0]
        expected = [logits[i].softmax(-1)[1].item() for i in enc.step_ends]
        assert prm.score_steps(row["prompt"], row["completions"]) == pytest.approx(expected, abs=1e-5)
    scorer = load_scorer(str(tmp_path), device="cpu")
    row = recorded["rows"][0]
    assert scorer.score_solutions([row["prompt"]], [row["completions"]]).step_scores[0] == pytest.approx(
        prm.score_steps(row["prompt"], row["completions"]), abs=1e-6
    )


def test_train_bt_on_trl_preference_rows_as_trls_reward_trainer_does(tmp_path, smollm2_tokenizer):
    """`prmsearch train bt` on a conversational preference JSONL, and `train()` on the same rows as a `Dataset`:
    the token ids TRL's RewardTrainer makes of those rows, and its first-step loss from the same initialisation."""
    from conftest import TINY_SIZES
    from datasets import Dataset
    from trl import RewardConfig, RewardTrainer

    from prmsearch.cli import main
    from prmsearch.train.config import TrainConfig
    from prmsearch.train.run import prepare, train

    rows = [
        {"prompt": [{"role": "user", "content": q}], "chosen": [{"role": "assistant", "content": good}],
         "rejected": [{"role": "assistant", "content": bad}]}
        for q, good, bad in PAIRS
    ]  # fmt: skip
    tok_dir = tmp_path / "tok"
    smollm2_tokenizer.save_pretrained(tok_dir)
    torch.manual_seed(5)
    config = tiny_config(
        LlamaConfig,
        smollm2_tokenizer,
        num_labels=1,
        pad_token_id=smollm2_tokenizer.pad_token_id,
        classifier_dropout=0.0,
    )
    model = AutoModelForSequenceClassification.from_config(config)
    args = RewardConfig(
        output_dir=str(tmp_path / "trl"), max_steps=1, per_device_train_batch_size=len(rows), learning_rate=1e-3,
        report_to="none", save_strategy="no", logging_steps=1, use_cpu=True, bf16=False,
        gradient_checkpointing=False, disable_tqdm=True, seed=5,
    )  # fmt: skip
    trl = RewardTrainer(
        model=model, args=args, train_dataset=Dataset.from_list(rows), processing_class=smollm2_tokenizer
    )
    trl.train()
    trl_loss = trl.state.log_history[0]["loss"]
    ours = {
        "kind": "bt", "model_config": {"model_type": "llama", **TINY_SIZES}, "tokenizer": str(tok_dir),
        "max_steps": 1, "per_device_train_batch_size": len(rows), "learning_rate": 1e-3, "logging_steps": 1,
        "eval_fraction": 0.0, "seed": 5, "save_steps": 1000,
    }  # fmt: skip
    data = tmp_path / "prefs.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = TrainConfig.from_dict({**ours, "train_data": Dataset.from_list(rows), "output_dir": str(tmp_path / "a")})
    run = prepare(cfg, progress=False)
    by_prompt = {json.dumps(r["prompt"], sort_keys=True): i for i, r in enumerate(rows)}
    ids = {by_prompt[g]: (c, r) for g, c, r in zip(run.train_set["group_id"], run.train_set["chosen_ids"],
                                                     run.train_set["rejected_ids"], strict=True)}  # fmt: skip
    assert [ids[i] for i in range(len(rows))] == list(
        zip(trl.train_dataset["chosen_ids"], trl.train_dataset["rejected_ids"], strict=True)
    )
    result = train(
        TrainConfig.from_dict({**ours, "train_data": Dataset.from_list(rows), "output_dir": str(tmp_path / "b")}),
        progress=False,
    )
    assert result.losses[0] == pytest.approx(trl_loss, abs=1e-5)
    argv = ["train", "bt", "/dev/null", "--quiet", f"train_data={data}", f"output_dir={tmp_path / 'cli'}"]
    assert main(argv + [f"{k}={json.dumps(v)}" for k, v in ours.items() if k != "kind"]) == 0
    logged = json.loads((tmp_path / "cli" / "metrics.json").read_text())["log_history"]
    assert next(h["loss"] for h in logged if "loss" in h) == pytest.approx(trl_loss, abs=1e-5)


def built_by_prmsearch(tmp_path, kind, rows, tok_dir):
    """`rows` written as stepwise JSONL, built by `prmsearch build KIND --source stepwise`, and prepared for
    training on a tiny config: (the JSONL's path, the prepared run)."""
    from conftest import TINY_SIZES

    from prmsearch.data_builders.build import BuildConfig, run_build
    from prmsearch.train.config import TrainConfig
    from prmsearch.train.run import prepare

    path = tmp_path / f"{kind}_rows.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / f"built_{kind}"
    run_build(BuildConfig(target=kind, source="stepwise", input=str(path), output=str(out), tokenizer=str(tok_dir)),
              progress=False)  # fmt: skip
    cfg = {"model_config": {"model_type": "llama", **TINY_SIZES}, "eval_fraction": 0.0, "max_steps": 1,
           "kind": kind, "train_data": str(out), "output_dir": str(tmp_path / f"run_{kind}")}  # fmt: skip
    return path, prepare(TrainConfig.from_dict(cfg), progress=False)


def test_trl_stepwise_and_unpaired_rows_train_as_built_data(tmp_path, smollm2_tokenizer):
    """A PRM trains on TRL stepwise rows (a file or a Dataset) on exactly the examples `prmsearch build prm --source
    stepwise` makes of them; an ORM on unpaired rows (completion + bool label) gets the label on every completion
    token and none on the prompt."""
    from conftest import TINY_SIZES
    from datasets import Dataset

    from prmsearch.train.config import TrainConfig
    from prmsearch.train.losses import IGNORE
    from prmsearch.train.run import prepare

    tok_dir = tmp_path / "tok"
    smollm2_tokenizer.save_pretrained(tok_dir)
    rows = [
        {"prompt": q, "completions": [f"{a} + {b} = {a + b + i % 2}.", f"The answer is {a + b + i % 2}."],
         "labels": [i % 2 == 0, i % 2 == 0]}
        for i, ((q, _, _), (a, b)) in enumerate(zip(PAIRS, SUMS, strict=True))
    ]  # fmt: skip
    path, built = built_by_prmsearch(tmp_path, "prm", rows, tok_dir)
    common = {"model_config": {"model_type": "llama", **TINY_SIZES}, "eval_fraction": 0.0, "max_steps": 1}
    for data in (str(path), Dataset.from_list(rows)):
        cfg = {
            **common,
            "kind": "prm",
            "train_data": data,
            "tokenizer": str(tok_dir),
            "output_dir": str(tmp_path / "b"),
        }
        direct = prepare(TrainConfig.from_dict(cfg), progress=False)
        assert direct.train_set["input_ids"] == built.train_set["input_ids"]
        assert direct.train_set["labels"] == built.train_set["labels"]
    unpaired = [
        {"prompt": q, "completion": good if i % 2 else bad, "label": bool(i % 2)}
        for i, (q, good, bad) in enumerate(PAIRS)
    ]
    cfg = {**common, "kind": "orm", "train_data": Dataset.from_list(unpaired), "tokenizer": str(tok_dir),
           "output_dir": str(tmp_path / "c")}  # fmt: skip
    orm = prepare(TrainConfig.from_dict(cfg), progress=False).train_set
    for row, ids, labels, start in zip(unpaired, orm["input_ids"], orm["labels"], orm["prompt_length"], strict=True):
        assert len(labels) == len(ids) and set(labels[:start]) == {IGNORE}
        assert set(labels[start:]) == {float(row["label"])}


def test_an_orm_trains_on_label_output_as_build_orm_makes_it(tmp_path, smollm2_tokenizer):
    """`prmsearch train orm train_data=labels.jsonl` on `prmsearch label`'s rows (TRL's fields cut at the first
    error, the whole solution in `steps`, an `outcome`; one row ungraded) trains on exactly the examples `prmsearch
    build orm --source stepwise` makes: each whole sampled solution with its outcome, the ungraded row left out."""
    from conftest import TINY_SIZES

    from prmsearch.train.config import TrainConfig
    from prmsearch.train.run import prepare

    tok_dir = tmp_path / "tok"
    smollm2_tokenizer.save_pretrained(tok_dir)
    rows = []
    for i, (a, b) in enumerate(SUMS):
        total = a + b + i % 2
        steps = [f"{a} + {b} = {total}.", f"So {total} it is.", f"The answer is {total}."]
        good = i % 2 == 0
        rows.append(
            {"prompt": f"What is {a} + {b}?", "completions": steps if good else steps[:1],
             "labels": [True] * 3 if good else [False], "steps": steps,
             "step_labels": [True] * 3 if good else [False, None, None], "outcome": None if i == 3 else good}
        )  # fmt: skip
    path, prepared = built_by_prmsearch(tmp_path, "orm", rows, tok_dir)
    built = prepared.train_set
    common = {"model_config": {"model_type": "llama", **TINY_SIZES}, "eval_fraction": 0.0, "max_steps": 1}
    cfg = {
        **common,
        "kind": "orm",
        "train_data": str(path),
        "tokenizer": str(tok_dir),
        "output_dir": str(tmp_path / "b"),
    }
    direct = prepare(TrainConfig.from_dict(cfg), progress=False).train_set
    assert len(direct) == len(rows) - 1
    assert direct["input_ids"] == built["input_ids"] and direct["labels"] == built["labels"]
    whole = smollm2_tokenizer.decode(direct[1]["input_ids"][direct[1]["prompt_length"] :])
    assert "So 6 it is." in whole and "The answer is 6." in whole  # row 1 is wrong: its steps past the error too
    assert set(direct[1]["labels"][direct[1]["prompt_length"] :]) == {0}


def test_bad_trl_rows_are_refused_in_one_line_naming_row_and_field(tmp_path, smollm2_tokenizer):
    from conftest import TINY_SIZES
    from datasets import Dataset

    from prmsearch.train.config import TrainConfig, TrainConfigError
    from prmsearch.train.run import prepare

    tok_dir = tmp_path / "tok"
    smollm2_tokenizer.save_pretrained(tok_dir)
    common = {"model_config": {"model_type": "llama", **TINY_SIZES}, "tokenizer": str(tok_dir), "eval_fraction": 0.0}
    bad = [
        (
            "bt",
            {"chosen": "a", "rejected": 5},
            r"row 0: field 'rejected' must be text or a list of chat messages, got 5",
        ),
        (
            "bt",
            {"prompt": "p", "chosen": [{"role": "assistant", "content": "a"}], "rejected": "b"},
            "row 0: mixes text",
        ),
        ("prm", {"prompt": "p", "completions": ["a"], "labels": [7]}, r"row 0: field 'labels\[0\]': expected a bool"),
    ]
    for kind, row, message in bad:
        cfg = TrainConfig.from_dict(
            {**common, "kind": kind, "train_data": Dataset.from_list([row]), "output_dir": str(tmp_path / kind)}
        )
        with pytest.raises(TrainConfigError, match=message):
            prepare(cfg, progress=False)
