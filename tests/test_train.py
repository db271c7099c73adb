"""Training for real on CPU: tiny Qwen2 models from a config, data built by `prmsearch build` from the GSM8K model
solutions, through the same `train()` the CLI runs."""

import copy
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import TINY_SIZES, build_gsm8k_sets, step_counter
from safetensors.torch import load_file
from transformers import TrainerCallback

from prmsearch.models.reward_model import RewardModel
from prmsearch.train.collators import GroupBatchSampler, PairCollator, TokenBudgetSampler, TokenCollator, sequences
from prmsearch.train.config import TrainConfig, TrainConfigError, parse_overrides
from prmsearch.train.losses import prm_losses
from prmsearch.train.run import finalize, fit, prepare, train

ROOT = Path(__file__).resolve().parent.parent
GSM8K = ROOT.parent / "shared" / "data" / "gsm8k_test_model_solutions.jsonl"
TINY = {"model_type": "qwen2", **TINY_SIZES}  # a recipe's model_config: vocabulary from the data's tokenizer


@pytest.fixture(scope="module")
def data(tmp_path_factory, smollm2_tokenizer):
    """PRM / ORM / pair sets from the first 40 GSM8K problems (160 solutions), built by `prmsearch build`."""
    return build_gsm8k_sets(tmp_path_factory.mktemp("built"), 40, max_length=512)


def config(data, kind, tmp_path, **kw):
    values = {
        "kind": kind,
        "model_config": dict(TINY),
        "train_data": data["pairs" if kind == "bt" else kind],
        "output_dir": str(tmp_path / kind),
        "learning_rate": 3e-3,
        "per_device_train_batch_size": 8,
        "logging_steps": 1,
        "save_steps": 1000,
        "eval_fraction": 0.15,
        "report_to": "none",
    }
    return TrainConfig.from_dict({**values, **kw})


def _falls(losses):
    k = max(len(losses) // 4, 2)
    return sum(losses[-k:]) / k < sum(losses[:k]) / k


@pytest.mark.parametrize("kind", ["prm", "orm", "bt"])
def test_each_kind_trains_saves_loads_and_scores(data, kind, tmp_path):
    result = train(config(data, kind, tmp_path, num_train_epochs=3), progress=False)
    assert _falls(result.losses), result.losses
    assert result.eval_metrics["eval_examples"] > 0
    rm = RewardModel.from_pretrained(result.output_dir)
    assert rm.kind == kind
    first = json.loads(GSM8K.read_text(encoding="utf-8").splitlines()[0])
    solution = first["175b_verification"]["solution"]
    if kind == "prm":
        scores = rm.score_steps(first["question"], rm.step_format.split(solution))
        assert len(scores) == len(rm.step_format.split(solution)) and all(0 < s < 1 for s in scores)
        for key in ("eval_step_accuracy", "eval_error_f1", "eval_processbench_f1", "eval_ece"):
            assert key in result.eval_metrics
    else:
        score = rm.score(first["question"], solution)
        assert isinstance(score, float)
        keys = ("eval_accuracy", "eval_margin") if kind == "bt" else ("eval_accuracy", "eval_auroc", "eval_ece")
        assert all(k in result.eval_metrics for k in keys)
    if kind == "bt":  # the centre is the training-time mean reward: scores of training completions centre on 0
        assert rm.center != 0.0
    saved = json.loads((Path(result.output_dir) / "metrics.json").read_text())
    assert saved["eval"] == result.eval_metrics
    # the final model was saved aside and renamed into place, file by file: nothing half-written or staged is left
    assert not [p.name for p in Path(result.output_dir).iterdir() if p.name.startswith(".") or p.suffix == ".tmp"]


def test_packed_rows_give_the_padded_loss_and_gradients(data, smollm2_tokenizer):
    """The same examples packed into one row (position ids + boundaries, our varlen attention) and right-padded
    (plain SDPA with a mask): same per-step losses, same gradients."""
    import datasets

    from prmsearch.train import packed_attention
    from prmsearch.train.run import build_reward_model

    ds = datasets.load_from_disk(data["prm"])
    examples = [ds[i] for i in range(6)]
    cfg = TrainConfig.from_dict({"kind": "prm", "model_config": dict(TINY), "train_data": data["prm"]})
    grads, losses = {}, {}
    for packing in (True, False):
        rm = build_reward_model(cfg, smollm2_tokenizer, None)
        if packing:
            rm.model.set_attn_implementation(packed_attention.register())
        else:
            rm.model.set_attn_implementation("sdpa")
        batch = TokenCollator(smollm2_tokenizer.pad_token_id, packing=packing)(examples)
        labels = batch.pop("labels")
        logits = rm.model(**batch).logits
        values = prm_losses(logits, labels, "ce")
        values.mean().backward()
        losses[packing] = values.detach()
        grads[packing] = torch.cat([p.grad.flatten() for p in rm.model.parameters()])
        assert len(sequences({**batch, "labels": labels})) == 6
    assert torch.allclose(losses[True], losses[False], atol=1e-5)
    assert torch.allclose(grads[True], grads[False], atol=1e-5)


class StopAt(TrainerCallback):
    def __init__(self, step):
        self.step = step

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            control.should_training_stop = True


def test_resume_gives_the_uninterrupted_weights_from_the_newest_whole_checkpoint(data, tmp_path, capsys):
    straight = train(config(data, "prm", tmp_path / "a", max_steps=8, save_steps=4), progress=False)
    cfg = config(data, "prm", tmp_path / "b", max_steps=8, save_steps=2)
    stopped = train(cfg, callbacks=[StopAt(6)], progress=False)
    assert not os.path.exists(os.path.join(stopped.output_dir, "model.safetensors"))
    newest = os.path.join(stopped.output_dir, "checkpoint-6", "model.safetensors")
    whole = open(newest, "rb").read()
    open(newest, "wb").write(whole[: len(whole) // 2])  # a kill, or a full disk, mid-save
    counted = step_counter()
    resumed = train(cfg, resume=True, callbacks=[counted], progress=False)
    assert "checkpoint-6 is incomplete (model.safetensors: " in capsys.readouterr().out
    assert counted.steps == 4  # steps 5 to 8: from checkpoint-4, not restarted
    a = load_file(os.path.join(straight.output_dir, "model.safetensors"))
    b = load_file(os.path.join(resumed.output_dir, "model.safetensors"))
    worst = max((a[k] - b[k]).abs().max().item() for k in a)
    assert worst <= 1e-7, worst
    assert straight.losses[-4:] == resumed.losses[-4:]


def test_a_finished_run_is_not_overwritten_and_a_resume_keeps_its_settings(data, tmp_path):
    cfg = config(data, "prm", tmp_path, max_steps=2, save_steps=1)
    model = os.path.join(train(cfg, progress=False).output_dir, "model.safetensors")
    before = open(model, "rb").read()
    with pytest.raises(TrainConfigError, match=r"already holds a trained model or checkpoints \(model.safetensors"):
        train(cfg, progress=False)
    changed = config(data, "prm", tmp_path, max_steps=2, save_steps=1, learning_rate=0.5)
    with pytest.raises(TrainConfigError, match=r"other settings \(learning_rate: 0.003 -> 0.5\)"):
        train(changed, resume=True, progress=False)
    assert open(model, "rb").read() == before


def test_bt_plackett_luce_and_prompt_groups(data, tmp_path):
    result = train(
        config(data, "bt", tmp_path, bt_loss="plackett_luce", per_device_train_batch_size=16, num_train_epochs=3),
        progress=False,
    )
    assert _falls(result.losses), result.losses
    grouped = train(config(data, "bt", tmp_path / "g", group_by_prompt=True, max_steps=3), progress=False)
    assert len(grouped.losses) == 3


def test_group_sampler_keeps_prompts_whole_and_collator_runs_each_completion_once():
    groups = ["a", "a", "a", "b", "c", "c"]
    sampler = GroupBatchSampler(groups, batch_size=4, seed=1)
    for batch in sampler:
        for g in {groups[i] for i in batch}:
            assert all(i in batch for i, h in enumerate(groups) if h == g)
    pairs = [
        {"chosen_ids": [5, 6], "rejected_ids": [7], "group_id": "a"},
        {"chosen_ids": [5, 6], "rejected_ids": [8, 9, 9], "group_id": "a"},
        {"chosen_ids": [4], "rejected_ids": [7], "group_id": "b"},
    ]
    batch = PairCollator(pad_token_id=0, rankings=True)(pairs)
    assert batch["input_ids"].shape[0] == 5  # [5, 6] once for prompt a; [7] twice (prompts a and b)
    assert batch["chosen_index"].tolist() == [0, 0, 3] and batch["pair_group"].tolist() == [0, 0, 1]
    assert batch["ranking_levels"][0].tolist() == [0, 1, 1]
    with pytest.raises(ValueError, match="pad token"):
        PairCollator(pad_token_id=7)(pairs)


def test_token_budget_sampler_is_seeded_and_respects_the_budget():
    lengths = [30, 50, 20, 80, 10, 60, 40]
    s = TokenBudgetSampler(lengths, max_tokens=100, seed=3)
    batches = list(s)
    assert sorted(i for b in batches for i in b) == list(range(7))
    assert all(sum(lengths[i] for i in b) <= 100 for b in batches)
    assert batches == list(TokenBudgetSampler(lengths, max_tokens=100, seed=3))
    with pytest.raises(ValueError, match="max_tokens_per_batch"):
        TokenBudgetSampler(lengths, max_tokens=70)


def test_config_errors_and_overrides(tmp_path, data):
    assert parse_overrides(["learning_rate=1e-4", "packing=false", "model_config.hidden_size=64"]) == {
        "learning_rate": "1e-4",
        "packing": False,
        "model_config": {"hidden_size": 64},
    }
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"train_data: {data['prm']}\nmodel_config: {json.dumps(TINY)}\nlearning_rate: 1e-4\n")
    cfg = TrainConfig.from_yaml(str(recipe), parse_overrides(["model_config.hidden_size=64"]), kind="prm")
    assert cfg.learning_rate == 1e-4 and cfg.model_config["hidden_size"] == 64
    assert cfg.model_config["num_hidden_layers"] == 2
    with pytest.raises(TrainConfigError, match="unknown keys"):
        TrainConfig.from_yaml(str(recipe), {"learnin_rate": 1.0})
    with pytest.raises(TrainConfigError, match="prm_loss"):
        TrainConfig.from_yaml(str(recipe), {"prm_loss": "hinge"})
    with pytest.raises(TrainConfigError, match=r"warmup_ratio is a share of the steps, in \[0, 1\); got 5"):
        TrainConfig.from_yaml(str(recipe), {"warmup_ratio": 5})  # the Trainer would read 5 as five steps
    for key, value in (("num_train_epochs", 0), ("gradient_accumulation_steps", 0), ("per_device_train_batch_size", 0)):
        with pytest.raises(TrainConfigError, match=f"{key}.*{value}"):  # an untrained model saved, or a ZeroDivision
            TrainConfig.from_yaml(str(recipe), {key: value})
    with pytest.raises(TrainConfigError, match=r"model_config builds a model of about \d+\.\dB parameters .* sizes"):
        train(config(data, "prm", tmp_path, model_config={"model_type": "qwen2"}), progress=False)  # its defaults
    with pytest.raises(TrainConfigError, match="data built for pairs"):
        train(TrainConfig.from_yaml(str(recipe), {"train_data": data["pairs"]}, kind="prm"), progress=False)
    with pytest.raises(TrainConfigError, match=r"unknown keys \['adam_beta'\] \(did you mean adam_beta2\?\)"):
        TrainConfig.from_yaml(str(recipe), {"adam_beta": 0.5})
    with pytest.raises(TrainConfigError, match="--logging_steps must be an integer if bigger than 1: 2.5"):
        TrainConfig.from_yaml(str(recipe), {"logging_steps": 2.5})  # the Trainer's own check, as one line
    with pytest.raises(TrainConfigError, match="report_to=tensorbord: not a logger; one of none, .*tensorboard"):
        TrainConfig.from_yaml(str(recipe), {"report_to": "tensorbord"})
    if importlib.util.find_spec("tensorboard") is None and importlib.util.find_spec("tensorboardX") is None:
        with pytest.raises(TrainConfigError, match=r"tensorboard is not installed; `pip install tensorboard`"):
            TrainConfig.from_yaml(str(recipe), {"report_to": "tensorboard"})  # before a model loads


def test_the_config_is_the_trainers_arguments_and_its_record_a_recipe(data, tmp_path):
    """TrainConfig is a TrainingArguments: any of the Trainer's keys is a recipe key and reaches the optimiser; the
    old key per_device_batch_size still reads; train_config.yaml, given back as a recipe, is the same run."""
    from transformers import TrainingArguments

    extra = {"adam_beta2": 0.95, "per_device_batch_size": 4, "warmup_ratio": 0.25, "max_steps": 2}
    cfg = config(data, "prm", tmp_path, **extra)
    assert isinstance(cfg, TrainingArguments) and cfg.per_device_train_batch_size == cfg.per_device_eval_batch_size == 4
    assert cfg.warmup_steps == 0.25  # transformers 5 reads a float below 1 as a share of the steps
    run = prepare(cfg, progress=False)
    run.trainer.create_optimizer()
    assert run.trainer.optimizer.param_groups[0]["betas"] == (0.9, 0.95)
    assert run.trainer.args is not cfg  # the Trainer works on its own copy
    fit(run)
    saved = tmp_path / "prm" / "train_config.yaml"
    finalize(run, {})
    again = TrainConfig.from_yaml(str(saved))
    assert again.recipe() == cfg.recipe() and again.adam_beta2 == 0.95 and again.max_steps == 2
    assert "hub_token" not in saved.read_text()  # unset: not written (and a secret would be masked)


def _cli(args, env=None, cwd=None):
    return subprocess.run(args, capture_output=True, text=True, env=env, cwd=cwd, timeout=600)


def _logged_losses(output_dir):
    history = json.loads((output_dir / "metrics.json").read_text())["log_history"]
    return [h["loss"] for h in history if "loss" in h]


def _one_process(cmd, output_dir, env):
    """The reference for data-parallel runs: one process, 2 accumulation steps, the same global batches."""
    one = _cli([sys.executable, *cmd, f"output_dir={output_dir}", "gradient_accumulation_steps=2"], env=env)
    assert one.returncode == 0, one.stderr[-3000:]
    return _logged_losses(output_dir)


def test_two_processes_match_one_process_on_the_same_global_batch(data, tmp_path):
    """Two data-parallel CPU processes (`accelerate launch --multi_gpu --num_processes 2`: torchrun + gloo when no
    GPU is present) with micro-batches of 4, against one process with 2 accumulation steps: the same global
    batches. Per-step losses and final weights must agree to float32 round-off (1e-5). The shards have different
    numbers of supervised steps, so a per-shard mean would not match."""
    recipe = _two_process_recipe(data, tmp_path)
    accelerate = [os.path.join(os.path.dirname(sys.executable), "accelerate"), "launch", "--num_processes", "2"]
    accelerate += ["--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = ["-m", "prmsearch", "train", "prm", str(recipe), "--quiet"]
    two = _cli([*accelerate, "--multi_gpu", *cmd, f"output_dir={tmp_path / 'two'}"], env=env)
    assert two.returncode == 0, two.stderr[-3000:]
    launch = json.loads((tmp_path / "two" / "metrics.json").read_text())["launch"]
    assert launch == {"distributed_type": "MULTI_CPU", "num_processes": 2}
    one = _one_process(cmd, tmp_path / "one", env)
    assert len(one) == 3
    assert one == pytest.approx(_logged_losses(tmp_path / "two"), abs=1e-5)
    a = load_file(str(tmp_path / "one" / "model.safetensors"))
    b = load_file(str(tmp_path / "two" / "model.safetensors"))
    assert max((a[k] - b[k]).abs().max().item() for k in a) < 1e-5
    # `--cpu` would start ONE process that believes it is one of two: refused with the commands that work
    alone = _cli([*accelerate, "--cpu", *cmd, f"output_dir={tmp_path / 'alone'}"], env=env)
    assert alone.returncode != 0 and "starts only one process" in alone.stderr


class Snapshot(TrainerCallback):
    """Copies of the model as the Trainer trains it (a PeftModel under LoRA), on the CPU: at the start and at the
    end of training, before `train()` merges and saves it."""

    begin = end = None

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        self.begin = copy.deepcopy(model).cpu()

    def on_train_end(self, args, state, control, model=None, **kwargs):
        self.end = copy.deepcopy(model).cpu()


def test_lora_trains_the_adapters_and_saves_base_plus_adapters(data, tmp_path):
    pytest.importorskip("peft")
    from peft.tuners.lora import LoraLayer

    snap = Snapshot()
    cfg = config(data, "prm", tmp_path, lora_r=4, lora_alpha=8, max_steps=3)
    result = train(cfg, callbacks=[snap], progress=False)
    rm = RewardModel.from_pretrained(result.output_dir, dtype=torch.float32)
    assert not any("lora" in name for name, _ in rm.model.named_parameters())
    assert len(rm.score_steps("What is 2 + 3?", ["2 + 3 = 5.", "The answer is 5."])) == 2

    # the adapters trained: lora_B starts at zero (the adapters add nothing) and moved; the base stayed frozen
    adapted = {name: m for name, m in snap.end.named_modules() if isinstance(m, LoraLayer)}
    assert len(adapted) == 2 * 4  # q/k/v/o projections of both layers
    for name, after in adapted.items():
        before = snap.begin.get_submodule(name)
        assert before.lora_B["default"].weight.abs().max() == 0, name
        assert after.lora_B["default"].weight.abs().max() > 0, name
        assert torch.equal(before.base_layer.weight, after.base_layer.weight), name
        # saved = base + (alpha / r) B A, the adapter merged into the layer
        delta = after.lora_B["default"].weight @ after.lora_A["default"].weight * (8 / 4)
        saved = rm.model.get_submodule(name.removeprefix("base_model.model.")).weight
        assert torch.allclose(saved, after.base_layer.weight + delta, atol=1e-6), name
        assert not torch.allclose(saved, after.base_layer.weight, atol=1e-6), name
    head = snap.end.base_model.model.score  # modules_to_save: the trained copy of the head is the one saved
    assert torch.equal(rm.model.score.weight, head.modules_to_save["default"].weight)
    assert not torch.equal(rm.model.score.weight, head.original_module.weight)

    # and it computes what the trained adapters computed, which the base model does not
    ids = torch.tensor([rm.encode("What is 2 + 3?", ["2 + 3 = 5.", "The answer is 5."]).input_ids])
    mask = torch.ones_like(ids)
    with torch.no_grad():
        merged = rm(ids, mask)
        peft_out = snap.end.eval()(input_ids=ids, attention_mask=mask).logits
        base_out = snap.begin.eval()(input_ids=ids, attention_mask=mask).logits
        with snap.end.disable_adapter():
            frozen_out = snap.end(input_ids=ids, attention_mask=mask).logits
    assert torch.allclose(merged, peft_out, atol=1e-5)
    assert torch.allclose(frozen_out, base_out, atol=1e-6)  # base weights and head, untouched by training
    assert (merged - base_out).abs().max() > 1e-3


def _two_process_recipe(data, tmp_path):
    recipe = tmp_path / "prm.yaml"
    recipe.write_text(
        json.dumps(
            {
                "train_data": data["prm"],
                "model_config": TINY,
                "learning_rate": 3e-3,
                "per_device_train_batch_size": 4,
                "max_steps": 3,
                "logging_steps": 1,
                "eval_fraction": 0.0,
                "save_steps": 1000,
            }
        )
    )
    return recipe


@pytest.mark.slow
def test_deepspeed_zero2_on_cpu_matches_one_process(data, tmp_path):
    """DeepSpeed ZeRO-2 for real on CPU (its CPU accelerator over gloo), 2 processes, through the shipped accelerate
    config. The first run compiles DeepSpeed's shared-memory op (minutes); losses match one process with 2
    accumulation steps."""
    pytest.importorskip("deepspeed")
    recipe = _two_process_recipe(data, tmp_path)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = ["-m", "prmsearch", "train", "prm", str(recipe), "--quiet"]
    launch = [os.path.join(os.path.dirname(sys.executable), "accelerate"), "launch", "--config_file"]
    zero = _cli([*launch, "train/accelerate/zero2.yaml", *cmd, f"output_dir={tmp_path / 'zero2'}"], env=env, cwd=ROOT)
    assert zero.returncode == 0, zero.stderr[-3000:]
    launch = json.loads((tmp_path / "zero2" / "metrics.json").read_text())["launch"]
    assert launch == {"distributed_type": "DEEPSPEED", "num_processes": 2, "zero_stage": 2}
    zero2 = _logged_losses(tmp_path / "zero2")
    assert len(zero2) == 3 and _one_process(cmd, tmp_path / "one", env) == pytest.approx(zero2, abs=1e-5)
    rm = RewardModel.from_pretrained(str(tmp_path / "zero2"))
    assert len(rm.score_steps("What is 2 + 3?", ["2 + 3 = 5.", "The answer is 5."])) == 2


def test_bad_rows_name_the_file_row_and_field(tmp_path, smollm2_tokenizer):
    def write(rows):
        path = tmp_path / "bad.jsonl"
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
        (tmp_path / "bad.jsonl.build.json").write_text(json.dumps({"tokenizer": "smollm2", "label_kind": "hard"}))
        return str(path)

    good = {"input_ids": [10, 11, 12], "labels": [-100, -100, 1], "group_id": "g"}
    cfg = {"kind": "prm", "model_config": dict(TINY), "output_dir": str(tmp_path / "out"), "eval_fraction": 0.0}
    short = write([good, good, {**good, "labels": [-100, 1]}])
    with pytest.raises(TrainConfigError, match=r"bad.jsonl: row 2: field 'labels' has 2 entries for 3 tokens"):
        train(TrainConfig.from_dict({**cfg, "train_data": short}), progress=False)
    soft = write([good, {**good, "labels": [-100, -100, 0.5]}])
    with pytest.raises(TrainConfigError, match=r"row 1: field 'labels' has 0.5; prm training with prm_loss=ce"):
        train(TrainConfig.from_dict({**cfg, "train_data": soft}), progress=False)
    alien = write([{**good, "input_ids": [10, 11, 10**6]}])
    with pytest.raises(TrainConfigError, match=r"row 0: field 'input_ids' has token id 1000000 outside"):
        train(TrainConfig.from_dict({**cfg, "train_data": alien}), progress=False)


class Probe(TrainerCallback):
    """How the training forward passes ran: the parameters' dtype and gradient checkpointing at the start, the
    dtype of the head's outputs, and how often the first decoder layer's attention started in training mode
    (checkpointing runs it again during backward; a hook on the layer itself stays outside the checkpoint, and
    one at the end of the layer can miss the recompute, which stops once it has what backward needs)."""

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        self.checkpointing = model.is_activation_checkpointing
        self.param_dtypes = {p.dtype for p in model.parameters()}
        self.head_dtypes, self.layer_calls = set(), 0

        def head(module, inputs, output):
            if module.training:
                self.head_dtypes.add(output.dtype)

        def layer(module, inputs):
            self.layer_calls += module.training

        self.hooks = [
            model.score.register_forward_hook(head),
            model.model.layers[0].self_attn.register_forward_pre_hook(layer),
        ]

    def on_train_end(self, args, state, control, **kwargs):
        for hook in self.hooks:
            hook.remove()


def test_bf16_and_gradient_checkpointing_run_on_cpu(data, tmp_path):
    probe = Probe()
    cfg = config(data, "orm", tmp_path, bf16=True, activation_checkpointing=True, max_steps=2)
    result = train(cfg, callbacks=[probe], progress=False)
    assert len(result.losses) == 2 and all(0 < v < 10 for v in result.losses)
    assert probe.head_dtypes == {torch.bfloat16}  # the forward ran under bf16 autocast
    assert probe.param_dtypes == {torch.float32}  # on float32 master weights
    assert probe.checkpointing
    assert probe.layer_calls == 2 * 2  # 2 steps, each run in forward and again in backward
    loaded = RewardModel.from_pretrained(result.output_dir)
    assert loaded.kind == "orm" and next(loaded.model.parameters()).dtype == torch.float32
