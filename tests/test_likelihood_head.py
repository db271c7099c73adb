"""The likelihood head (`models.likelihood`). PRM (`prm_head: likelihood`): a step's logit is scale times the least
log-probability of its own tokens (prompt and markers excluded) plus bias; scale and bias are fitted to the
training labels before the first step; it trains through `prmsearch train prm` from a saved pretrained causal LM,
saves, loads back, resumes, and scores the same in a search as alone. ORM (`orm_head: likelihood`): the same
minimum over the whole completion, trained by `prmsearch train orm` on outcomes."""

import json
import os

import pytest
import torch
from conftest import build_gsm8k_sets, save_tiny_causal_lm, step_counter, token_logprobs
from safetensors.torch import load_file
from transformers import AutoTokenizer

from prmsearch.cli import main
from prmsearch.models.reward_model import RewardModel
from prmsearch.search.scorer import StepScorer
from prmsearch.train.config import TrainConfig, TrainConfigError
from prmsearch.train.run import train

PROMPT = "Tom has 3 apples and buys 4 more. How many now?"
STEPS = ["He buys 4, so 3 + 4 = 7.", "The answer is 7."]


@pytest.fixture(scope="module")
def policy(tmp_path_factory, smollm2_tokenizer):
    return save_tiny_causal_lm(tmp_path_factory.mktemp("policy"), smollm2_tokenizer, seed=11)


@pytest.fixture(scope="module")
def data(tmp_path_factory, policy):
    return build_gsm8k_sets(tmp_path_factory.mktemp("built"), 12, max_length=512, tokenizer=policy)


def test_a_step_reads_its_least_likely_token_without_the_prompt_or_markers(policy):
    rm = RewardModel.from_backbone(str(policy), AutoTokenizer.from_pretrained(policy), "prm", head="likelihood")
    with torch.no_grad():
        rm.model.scale.fill_(0.7)
        rm.model.bias.fill_(2.0)
    enc = rm.encode(PROMPT, STEPS)
    markers = set(rm.model.marker_ids)
    lp = token_logprobs(rm.model.policy, enc.input_ids)
    want, start = [], enc.prompt_length
    for end in enc.step_ends:
        own = [lp[s] for s in range(start, end + 1) if enc.input_ids[s] not in markers]
        want.append(torch.sigmoid(torch.tensor(0.7 * min(own) + 2.0)).item())
        start = end + 1
    got = rm.score_steps(PROMPT, STEPS)
    assert got == pytest.approx(want, abs=1e-5)
    batch = rm.score_steps_batch([PROMPT, PROMPT], [STEPS, [*STEPS, "Then some more words follow here."]])
    assert batch[0] == pytest.approx(got, abs=1e-5)


def test_calibrate_fits_scale_and_bias_to_the_labels(policy):
    rm = RewardModel.from_backbone(str(policy), AutoTokenizer.from_pretrained(policy), "prm", head="likelihood")
    enc = [rm.encode(PROMPT, [s, "The answer is 7."]) for s in ("3 + 4 = 7.", "3 + 4 = 9 bananas zebra.")]
    ids, mask, prompt_length = rm._batch(enc)
    minimum = rm.model.step_minimum(ids, mask, prompt_length)
    labels = torch.full_like(ids, -100)
    for row, e in enumerate(enc):
        labels[row, e.step_ends[0]] = (
            1 if minimum[row, e.step_ends[0]] > minimum[1 - row, enc[1 - row].step_ends[0]] else 0
        )
    batch = {"input_ids": ids, "attention_mask": mask, "prompt_length": prompt_length, "labels": labels}
    fit = rm.model.calibrate([batch] * 4)
    assert fit["examples"] == 8 and fit["scale"] > 1.0  # separable labels: a steep positive slope
    first = [rm.score_steps(PROMPT, [s])[0] for s in ("3 + 4 = 7.", "3 + 4 = 9 bananas zebra.")]
    assert (first[0] > first[1]) == bool(labels[0, enc[0].step_ends[0]] == 1)


def _config(data, policy, out, **kw):
    values = {
        "kind": "prm",
        "model": str(policy),
        "train_data": data["prm"],
        "output_dir": str(out),
        "prm_head": "likelihood",
        "packing": False,
        "learning_rate": 3e-3,
        "per_device_train_batch_size": 8,
        "logging_steps": 1,
        "save_steps": 1000,
        "eval_fraction": 0.0,
        "report_to": "none",
    }
    return TrainConfig.from_dict({**values, **kw})


def test_trains_from_a_pretrained_folder_saves_loads_and_scores_as_in_a_search(data, policy, tmp_path, capsys):
    out, recipe = tmp_path / "prm", tmp_path / "likelihood.yaml"
    recipe.write_text("prm_head: likelihood\npacking: false\n")
    argv = ["train", "prm", str(recipe), f"model={policy}", f"train_data={data['prm']}"]
    argv += [f"output_dir={out}", "learning_rate=3e-3", "per_device_train_batch_size=4"]
    argv += ["max_steps=12", "logging_steps=1", "save_steps=1000", "eval_fraction=0"]
    assert main(argv) == 0
    assert "likelihood head calibrated on" in capsys.readouterr().out  # fitted before the first step
    losses = [h["loss"] for h in json.loads((out / "metrics.json").read_text())["log_history"] if "loss" in h]
    assert sum(losses[-3:]) / 3 < sum(losses[:3]) / 3, losses
    state = json.loads((out / "likelihood_head.json").read_text())
    assert not (out / "ref").exists()
    rm = RewardModel.from_pretrained(str(out))
    assert rm.head == "likelihood" and rm.model.scale.item() == pytest.approx(state["scale"])
    assert state["marker_ids"] == rm.step_format.marker_ids(rm.tokenizer)  # the data's step format
    start, trained = load_file(str(policy / "model.safetensors")), load_file(str(out / "model.safetensors"))
    assert max((trained[k] - start[k]).abs().max().item() for k in start) > 1e-3  # the LM itself trained
    scores = rm.score_steps(PROMPT, STEPS)
    assert all(0 < s < 1 for s in scores)

    for full in (False, True):  # the search path: incremental (the parent's last state predicts a step's first
        scorer = StepScorer(rm, full_rescore=full)  # token) and whole paths again
        scorer.add_prompt("root", PROMPT)
        got, _ = scorer.score([("root", [("a", STEPS[0])])])
        got2, _ = scorer.score([("a", [("b", STEPS[1])]), ("a", [("c", "8")])])  # "8": one token, its own min
        assert [got[0][0], got2[0][0]] == pytest.approx(scores, abs=1e-5)
        assert got2[1][0] == pytest.approx(rm.score_steps(PROMPT, [STEPS[0], "8"])[1], abs=1e-5)
    assert scorer.full_rescore and not StepScorer(rm).full_rescore


def test_resume_gives_the_uninterrupted_weights(data, policy, tmp_path):
    from transformers import TrainerCallback

    class StopAt(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            control.should_training_stop = state.global_step >= 2

    small = {"max_steps": 4, "save_steps": 2, "per_device_train_batch_size": 4}  # resume needs few, small steps
    straight = train(_config(data, policy, tmp_path / "a", **small), progress=False)
    cfg = _config(data, policy, tmp_path / "b", **small)
    train(cfg, callbacks=[StopAt()], progress=False)
    counted = step_counter()
    resumed = train(cfg, resume=True, callbacks=[counted], progress=False)
    assert counted.steps == 2  # steps 3 and 4 only: resumed, not restarted
    a = load_file(os.path.join(straight.output_dir, "model.safetensors"))
    b = load_file(os.path.join(resumed.output_dir, "model.safetensors"))
    assert max((a[k] - b[k]).abs().max().item() for k in a) <= 1e-6
    sa = json.loads(open(os.path.join(straight.output_dir, "likelihood_head.json")).read())
    sb = json.loads(open(os.path.join(resumed.output_dir, "likelihood_head.json")).read())
    assert sa["scale"] == pytest.approx(sb["scale"], abs=1e-6) and sa["bias"] == pytest.approx(sb["bias"], abs=1e-6)


def test_refusals_name_what_to_change(data, policy, tmp_path):
    for change, words in [
        ({"packing": True}, "prm_head=likelihood trains on padded batches"),
        ({"prm_loss": "ce3"}, "prm_loss ce, bce or mse"),
        ({"lora_r": 4}, "lora_r=0"),
        ({"kind": "orm", "train_data": data["orm"]}, "PRM's read-out"),
        ({"kind": "orm", "prm_head": "linear", "orm_head": "likelihood", "aggregation": "prod"}, "aggregation mean"),
        ({"kind": "prm", "orm_head": "likelihood"}, "ORM's read-out"),
    ]:
        with pytest.raises(TrainConfigError, match=words):
            _config(data, policy, tmp_path / "x", **change)


def test_an_orm_reads_its_completions_least_likely_token(policy):
    rm = RewardModel.from_backbone(str(policy), AutoTokenizer.from_pretrained(policy), "orm", head="likelihood")
    assert rm.model.span == "solution"
    with torch.no_grad():
        rm.model.scale.fill_(0.7)
        rm.model.bias.fill_(2.0)
    enc = rm.encode(PROMPT, STEPS)
    lp = token_logprobs(rm.model.policy, enc.input_ids)
    own = [lp[s] for s in range(enc.prompt_length, len(enc.input_ids)) if enc.input_ids[s] not in rm.model.marker_ids]
    want = torch.sigmoid(torch.tensor(0.7 * min(own) + 2.0)).item()
    got = rm.score_batch([PROMPT, PROMPT], [STEPS, [*STEPS, "Then some more words follow here."]])
    assert got[0] == pytest.approx(want, abs=1e-5)  # padded beside a longer row: the same
    assert got[1] <= got[0] + 1e-6  # more tokens can only lower the minimum
    assert rm.score(PROMPT, rm.step_format.join(STEPS)) == pytest.approx(want, abs=1e-5)


def test_an_orm_trains_from_a_pretrained_folder_on_outcomes_saves_and_loads(data, policy, tmp_path, capsys):
    out, recipe = tmp_path / "orm", tmp_path / "orm.yaml"
    recipe.write_text("orm_head: likelihood\naggregation: min\npacking: false\n")
    argv = ["train", "orm", str(recipe), f"model={policy}", f"train_data={data['orm']}"]
    argv += [f"output_dir={out}", "learning_rate=3e-3", "per_device_train_batch_size=4"]
    argv += ["max_steps=12", "logging_steps=1", "save_steps=1000", "eval_fraction=0"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "likelihood head calibrated on" in printed and "solutions" in printed
    losses = [h["loss"] for h in json.loads((out / "metrics.json").read_text())["log_history"] if "loss" in h]
    assert sum(losses[-3:]) / 3 < sum(losses[:3]) / 3, losses
    state = json.loads((out / "likelihood_head.json").read_text())
    assert state["span"] == "solution" and state["outputs"] == 1
    rm = RewardModel.from_pretrained(str(out))
    assert rm.kind == "orm" and rm.head == "likelihood" and rm.model.span == "solution"
    start, trained = load_file(str(policy / "model.safetensors")), load_file(str(out / "model.safetensors"))
    assert max((trained[k] - start[k]).abs().max().item() for k in start) > 1e-3  # the LM itself trained
    enc = rm.encode(PROMPT, STEPS)
    ids, mask, prompt_length = rm._batch([enc])
    with torch.no_grad():
        low = rm.model.step_minimum(ids, mask, prompt_length)[0, -1]
    want = torch.sigmoid(rm.model.scale * low + rm.model.bias).item()
    assert rm.score_batch([PROMPT], [STEPS])[0] == pytest.approx(want, abs=1e-5)
