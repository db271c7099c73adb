"""The implicit PRM (`prm_head: implicit`, `models.implicit`): its q-values are the summed log-likelihood ratio of
the completion tokens, prompt tokens excluded; it trains through `prmsearch train prm` from a saved pretrained
causal LM, saves the LM and its frozen reference, loads back, resumes, and scores the same in a search as alone."""

import json
import os

import pytest
import torch
from conftest import build_gsm8k_sets, save_tiny_causal_lm, step_counter, token_logprobs
from safetensors.torch import load_file

from prmsearch.cli import main
from prmsearch.models.reward_model import RewardModel
from prmsearch.search.scorer import StepScorer
from prmsearch.train.config import TrainConfig, TrainConfigError
from prmsearch.train.run import train

PROMPT = "Tom has 3 apples and buys 4 more. How many now?"
STEPS = ["He buys 4, so 3 + 4 = 7.", "The answer is 7."]


@pytest.fixture(scope="module")
def policy(tmp_path_factory, smollm2_tokenizer):
    return save_tiny_causal_lm(tmp_path_factory.mktemp("policy"), smollm2_tokenizer, seed=7)


@pytest.fixture(scope="module")
def data(tmp_path_factory, policy):
    return build_gsm8k_sets(tmp_path_factory.mktemp("built"), 12, max_length=512, tokenizer=policy)


def test_q_values_sum_the_completion_log_ratio_and_skip_the_prompt(policy):
    from transformers import AutoTokenizer

    rm = RewardModel.from_backbone(str(policy), AutoTokenizer.from_pretrained(policy), "prm", head="implicit", beta=0.5)
    assert rm.score_steps(PROMPT, STEPS) == [0.5, 0.5]  # πθ = πref at the start: every q is the bias, 0
    with torch.no_grad():
        for p in rm.model.policy.parameters():
            p.add_(0.05 * torch.randn_like(p))
        rm.model.bias.fill_(0.3)
    enc = rm.encode(PROMPT, STEPS)
    theta, ref = token_logprobs(rm.model.policy, enc.input_ids), token_logprobs(rm.model.ref, enc.input_ids)
    want = []
    for end in enc.step_ends:
        q = 0.5 * sum(theta[s] - ref[s] for s in range(enc.prompt_length, end + 1)) + 0.3
        want.append(torch.sigmoid(torch.tensor(q)).item())
    got = rm.score_steps(PROMPT, STEPS)
    assert got == pytest.approx(want, abs=1e-5)
    # the prompt's own tokens change πθ's likelihood of it, never a q-value
    assert sum(abs(theta[s] - ref[s]) for s in range(1, enc.prompt_length)) > 0.01
    # padding: scored beside a longer solution, the same
    batch = rm.score_steps_batch([PROMPT, PROMPT], [STEPS, [*STEPS, "Then some more words follow here."]])
    assert batch[0] == pytest.approx(got, abs=1e-5)


def _config(data, policy, out, **kw):
    values = {
        "kind": "prm",
        "model": str(policy),
        "train_data": data["prm"],
        "output_dir": str(out),
        "prm_head": "implicit",
        "implicit_beta": 1.0,
        "packing": False,
        "learning_rate": 3e-3,
        "per_device_train_batch_size": 8,
        "logging_steps": 1,
        "save_steps": 1000,
        "eval_fraction": 0.0,
        "report_to": "none",
    }
    return TrainConfig.from_dict({**values, **kw})


def test_trains_from_a_pretrained_folder_saves_loads_and_scores_as_in_a_search(data, policy, tmp_path):
    out, recipe = tmp_path / "prm", tmp_path / "implicit.yaml"
    recipe.write_text("prm_head: implicit\nimplicit_beta: 1.0\npacking: false\n")
    argv = ["train", "prm", str(recipe), "--quiet", f"model={policy}", f"train_data={data['prm']}"]
    argv += [f"output_dir={out}", "learning_rate=3e-3", "per_device_train_batch_size=8"]
    argv += ["max_steps=12", "logging_steps=1", "save_steps=1000", "eval_fraction=0"]
    assert main(argv) == 0
    losses = [h["loss"] for h in json.loads((out / "metrics.json").read_text())["log_history"] if "loss" in h]
    assert sum(losses[-3:]) / 3 < sum(losses[:3]) / 3, losses
    rm = RewardModel.from_pretrained(str(out))
    assert rm.head == "implicit" and rm.model.beta == 1.0
    start = load_file(str(policy / "model.safetensors"))
    trained = load_file(str(out / "model.safetensors"))
    ref = load_file(str(out / "ref" / "model.safetensors"))
    assert all(torch.equal(ref[k], start[k]) for k in start)  # πref is the start, untouched
    assert max((trained[k] - start[k]).abs().max().item() for k in start) > 1e-3  # πθ moved
    scores = rm.score_steps(PROMPT, STEPS)
    assert all(0 < s < 1 for s in scores) and scores != [0.5, 0.5]

    scorer = StepScorer(rm)  # the search path: whole paths re-scored, the prompt fed once per root
    scorer.add_prompt("root", PROMPT)
    got, _ = scorer.score([("root", [("a", STEPS[0])])])
    got2, _ = scorer.score([("a", [("b", STEPS[1])])])
    assert [got[0][0], got2[0][0]] == pytest.approx(scores, abs=1e-5)


def test_resume_gives_the_uninterrupted_weights(data, policy, tmp_path):
    from transformers import TrainerCallback

    class StopAt(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            control.should_training_stop = state.global_step >= 2

    small = {"max_steps": 4, "save_steps": 2, "per_device_train_batch_size": 4}  # resume needs few, small steps
    straight = train(_config(data, policy, tmp_path / "a", **small), progress=False)
    cfg = _config(data, policy, tmp_path / "b", **small)
    train(cfg, callbacks=[StopAt()], progress=False)
    assert os.path.isdir(tmp_path / "b" / "checkpoint-2")
    counted = step_counter()
    resumed = train(cfg, resume=True, callbacks=[counted], progress=False)
    assert counted.steps == 2  # steps 3 and 4 only: resumed, not restarted
    a = load_file(os.path.join(straight.output_dir, "model.safetensors"))
    b = load_file(os.path.join(resumed.output_dir, "model.safetensors"))
    assert max((a[k] - b[k]).abs().max().item() for k in a) <= 1e-6
    assert straight.losses[-2:] == pytest.approx(resumed.losses[-2:], abs=1e-6)


def test_refusals_name_what_to_change(data, policy, tmp_path, capsys):
    for change, words in [
        ({"packing": True}, "packing=false"),
        ({"prm_loss": "ce3"}, "prm_loss ce, bce or mse"),
        ({"lora_r": 4}, "lora_r=0"),
        ({"kind": "orm", "train_data": data["orm"]}, "PRM's read-out"),
    ]:
        with pytest.raises(TrainConfigError, match=words):
            _config(data, policy, tmp_path / "x", **change)
    # data built before prompt_length existed
    from datasets import load_from_disk

    old = tmp_path / "old"
    load_from_disk(data["prm"]).remove_columns("prompt_length").save_to_disk(str(old))
    recipe = tmp_path / "implicit.yaml"
    recipe.write_text("prm_head: implicit\npacking: false\nmax_steps: 1\n")
    argv = ["train", "prm", str(recipe), "--quiet", f"model={policy}", f"train_data={old}"]
    assert main([*argv, f"output_dir={tmp_path / 'o'}"]) != 0
    err = capsys.readouterr().err
    assert "prompt_length" in err and "prmsearch build prm" in err and "Traceback" not in err
