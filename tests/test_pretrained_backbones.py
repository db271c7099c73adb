"""Training from a pretrained folder, the way a user does it: a causal-LM checkpoint saved with `save_pretrained`
(tiny Qwen2 / Llama / Mistral models built here, the architectures the recipes and adapters name), then
`prmsearch train {bt,orm,prm} RECIPE model=FOLDER` with the shipped recipes, with and without LoRA, and the result
loaded with `RewardModel.from_pretrained`. The trained backbone must be the checkpoint's, not a random one.

`test_smollm2_lora_prm` (slow, opt-in) does the same with the real SmolLM2-135M-Instruct converted to a folder:
PRMSEARCH_SMOLLM2=/path/to/folder pytest -m slow tests/test_pretrained_backbones.py."""

import json
import math
import os
import time
from pathlib import Path

import pytest
import torch
from conftest import build_gsm8k_sets, tiny_config
from safetensors.torch import load_file
from transformers import (
    LlamaConfig,
    LlamaForCausalLM,
    MistralConfig,
    MistralForCausalLM,
    Qwen2Config,
    Qwen2ForCausalLM,
)

from prmsearch.cli import main
from prmsearch.models.reward_model import RewardModel

ROOT = Path(__file__).resolve().parent.parent
GSM8K = ROOT.parent / "shared" / "data" / "gsm8k_test_model_solutions.jsonl"
ARCHITECTURES = {
    "qwen2": (Qwen2Config, Qwen2ForCausalLM),
    "llama": (LlamaConfig, LlamaForCausalLM),
    "mistral": (MistralConfig, MistralForCausalLM),
}
NORM_MARK = 1.25  # the checkpoint's final-norm weight: a freshly initialised norm holds 1.0
LR, STEPS = 1e-3, 2


def make_checkpoint(path: Path, arch: str, tokenizer, seed: int = 1234) -> Path:
    """A user's pretrained causal LM: weights from a seed other than training's (42), the final norm marked."""
    config_class, model_class = ARCHITECTURES[arch]
    torch.manual_seed(seed)
    model = model_class(tiny_config(config_class, tokenizer, tie_word_embeddings=False))
    with torch.no_grad():
        model.model.norm.weight.fill_(NORM_MARK)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory, smollm2_tokenizer):
    root = tmp_path_factory.mktemp("pretrained")
    return {arch: make_checkpoint(root / arch, arch, smollm2_tokenizer) for arch in ARCHITECTURES}


@pytest.fixture(scope="module")
def data(tmp_path_factory, checkpoints):
    """PRM / ORM / pair sets from 6 GSM8K problems, tokenized with the checkpoints' tokenizer folder."""
    sets = build_gsm8k_sets(tmp_path_factory.mktemp("built"), 6, max_length=256, tokenizer=checkpoints["qwen2"])
    return {"bt" if target == "pairs" else target: folder for target, folder in sets.items()}


def _first_solution():
    first = json.loads(GSM8K.read_text(encoding="utf-8").splitlines()[0])
    return first["question"], first["175b_verification"]["solution"]


def _check_scores(rm: RewardModel) -> None:
    question, solution = _first_solution()
    if rm.kind == "prm":
        steps = rm.step_format.split(solution)
        scores = rm.score_steps(question, steps)
        assert len(scores) == len(steps) and all(0 < s < 1 for s in scores), scores
    else:
        score = rm.score(question, solution)
        assert math.isfinite(score), score
        if rm.kind == "orm":
            assert 0 < score < 1


def _check_backbone(saved: dict, ckpt: dict, lora: bool) -> None:
    """Every decoder tensor of the trained model is the checkpoint's: untouched by LoRA except the merged attention
    projections, within a couple of Adam steps (lr 1e-3) of it otherwise; a random init would be ~0.02 away."""
    backbone = [k for k in ckpt if not k.startswith("lm_head")]
    assert set(backbone) <= set(saved), sorted(set(backbone) - set(saved))
    assert not any("lora" in k for k in saved)
    assert not any(k.startswith("lm_head") for k in saved)
    assert torch.allclose(saved["model.norm.weight"], torch.full_like(ckpt["model.norm.weight"], NORM_MARK), atol=1e-2)
    moved = {k: (saved[k].float() - ckpt[k].float()).abs().max().item() for k in backbone}
    assert max(moved.values()) < 3 * STEPS * LR, max(moved.items(), key=lambda kv: kv[1])
    lora_targets = ("q_proj", "k_proj", "v_proj", "o_proj")
    if lora:
        frozen = [k for k in backbone if not any(t in k for t in lora_targets)]
        assert all(moved[k] == 0.0 for k in frozen), [k for k in frozen if moved[k]]
        assert any(moved[k] > 0 for k in backbone if "q_proj" in k or "v_proj" in k), "LoRA deltas were not merged"
    else:
        assert moved["model.embed_tokens.weight"] > 0 and moved["model.layers.0.mlp.down_proj.weight"] > 0


def _train_cli(kind, folder, data, output, *extra):
    """`prmsearch train KIND train/qwen2.5-math-1.5b_KIND.yaml model=FOLDER …`: the shipped recipe (bf16, gradient
    checkpointing, its batching) cut down to two small steps."""
    argv = ["train", kind, str(ROOT / "train" / f"qwen2.5-math-1.5b_{kind}.yaml"), "--quiet", f"model={folder}"]
    argv += [f"train_data={data[kind]}", f"output_dir={output}", f"max_steps={STEPS}", f"learning_rate={LR}"]
    argv += ["warmup_ratio=0", "per_device_train_batch_size=4", "gradient_accumulation_steps=1", "eval_fraction=0"]
    argv += ["logging_steps=1", "save_steps=1000", *extra]
    return main(argv)


# Every architecture trains every kind once; LoRA alternates, so each architecture and each kind is trained both
# with and without it (9 runs rather than 18: the file stays under a minute on 2 CPU cores).
RUNS = [
    (arch, kind, (i + j) % 2 == 1)
    for i, arch in enumerate(ARCHITECTURES)
    for j, kind in enumerate(("bt", "orm", "prm"))
]


@pytest.mark.parametrize(("arch", "kind", "lora"), RUNS, ids=[f"{a}-{k}-{'lora' if x else 'full'}" for a, k, x in RUNS])
def test_train_from_a_pretrained_folder(arch, kind, lora, checkpoints, data, tmp_path):
    if lora:
        pytest.importorskip("peft")
    extra = ["lora_r=4", "lora_alpha=8"] if lora else []
    if arch != "qwen2":  # the recipe's bf16 autocast and gradient checkpointing run once per kind, on its own arch
        extra += ["bf16=false", "activation_checkpointing=false"]
    assert _train_cli(kind, checkpoints[arch], data, tmp_path / "rm", *extra) == 0
    rm = RewardModel.from_pretrained(str(tmp_path / "rm"))
    assert rm.kind == kind and rm.model.config.prmsearch["kind"] == kind
    assert type(rm.model).__name__.lower().startswith(arch)
    assert rm.model.config.num_labels == RewardModel.num_outputs(kind)
    assert rm.model.config.pad_token_id == rm.tokenizer.pad_token_id is not None
    history = json.loads((tmp_path / "rm" / "metrics.json").read_text())["log_history"]
    assert len([h for h in history if "loss" in h]) == STEPS
    _check_backbone(
        load_file(str(tmp_path / "rm" / "model.safetensors")),
        load_file(str(checkpoints[arch] / "model.safetensors")),
        lora,
    )
    _check_scores(rm)


def test_from_backbone_settings_on_a_pretrained_folder(tmp_path, smollm2_tokenizer):
    """A bf16 causal-LM folder with no pad token in its config: the head gets no dropout, the pad id comes from the
    tokenizer, the weights load as float32 (the optimizer's masters) and are the checkpoint's."""
    folder = make_checkpoint(tmp_path / "lm", "llama", smollm2_tokenizer)
    config = json.loads((folder / "config.json").read_text())
    assert config.get("pad_token_id") is None
    model = LlamaForCausalLM.from_pretrained(folder, dtype=torch.float32)
    model.to(torch.bfloat16).save_pretrained(tmp_path / "bf16")
    smollm2_tokenizer.save_pretrained(tmp_path / "bf16")
    embeddings = model.model.embed_tokens.weight.to(torch.bfloat16).float()
    for kind in ("bt", "orm", "prm"):
        rm = RewardModel.from_backbone(str(tmp_path / "bf16"), smollm2_tokenizer, kind)
        assert rm.model.config.classifier_dropout == 0.0
        if kind != "bt":
            assert rm.model.dropout.p == 0.0
        assert rm.model.config.pad_token_id == smollm2_tokenizer.pad_token_id
        assert rm.model.dtype == torch.float32
        assert torch.equal(rm.model.model.embed_tokens.weight, embeddings)
        assert rm.model.score.weight.shape[0] == RewardModel.num_outputs(kind)


def test_from_backbone_on_a_saved_reward_model(tmp_path, smollm2_tokenizer):
    """A folder saved by `RewardModel.save_pretrained` as the backbone: same head width, the head is kept (training
    goes on); another width (an ORM from a 2-class PRM, a BT model), the backbone is kept and the head is new."""
    folder = make_checkpoint(tmp_path / "lm", "qwen2", smollm2_tokenizer)
    prm = RewardModel.from_backbone(str(folder), smollm2_tokenizer, "prm")
    prm.save_pretrained(str(tmp_path / "prm"))
    again = RewardModel.from_backbone(str(tmp_path / "prm"), smollm2_tokenizer, "prm")
    assert torch.equal(again.model.score.weight, prm.model.score.weight)
    for kind in ("orm", "bt"):
        other = RewardModel.from_backbone(str(tmp_path / "prm"), smollm2_tokenizer, kind)
        assert other.model.score.weight.shape == (1, prm.model.config.hidden_size)
        assert torch.equal(other.model.model.embed_tokens.weight, prm.model.model.embed_tokens.weight)
        assert torch.equal(other.model.model.layers[1].mlp.up_proj.weight, prm.model.model.layers[1].mlp.up_proj.weight)


@pytest.mark.slow
def test_smollm2_lora_prm(tmp_path):
    """The real SmolLM2-135M-Instruct (a transformers folder, PRMSEARCH_SMOLLM2): PRM labels built with its
    tokenizer, a LoRA PRM trained for 5 steps of 8 examples through the CLI, loaded and scoring a solution."""
    folder = os.environ.get("PRMSEARCH_SMOLLM2")
    if not folder or not os.path.isfile(os.path.join(folder, "config.json")):
        pytest.skip("set PRMSEARCH_SMOLLM2 to a SmolLM2-135M(-Instruct) transformers folder")
    if not GSM8K.exists():
        pytest.skip(f"needs the shared data ({GSM8K})")
    pytest.importorskip("peft")
    source = tmp_path / "gsm8k_40.jsonl"
    source.write_text("\n".join(GSM8K.read_text(encoding="utf-8").splitlines()[:40]) + "\n", encoding="utf-8")
    recipe = str(ROOT / "data_builders" / "gsm8k_solutions.yaml")
    build = ["build", "prm", "--config", recipe, "--input", str(source), "--tokenizer", folder, "--quiet"]
    assert main([*build, "--output", str(tmp_path / "prm")]) == 0
    # the recipe's bf16 autocast and gradient checkpointing on a GPU; on a CPU without bf16 units they cost ~10x
    device = [] if torch.cuda.is_available() else ["bf16=false", "activation_checkpointing=false"]
    start = time.perf_counter()
    code = main(
        [
            "train",
            "prm",
            str(ROOT / "train" / "qwen2.5-math-1.5b_prm.yaml"),
            "--quiet",
            f"model={folder}",
            f"train_data={tmp_path / 'prm'}",
            f"output_dir={tmp_path / 'rm'}",
            "max_steps=5",
            "per_device_train_batch_size=8",
            "gradient_accumulation_steps=1",
            "learning_rate=1e-4",
            "lora_r=8",
            "lora_alpha=16",
            "eval_fraction=0.1",
            "eval_max_examples=32",
            "logging_steps=1",
            "save_steps=1000",
            *device,
        ]
    )
    assert code == 0
    runtime = json.loads((tmp_path / "rm" / "metrics.json").read_text())["train"]["train_runtime"]
    print(f"SmolLM2 LoRA PRM: {runtime / 5:.1f} s per step ({time.perf_counter() - start:.0f} s with load, eval, save)")
    rm = RewardModel.from_pretrained(str(tmp_path / "rm"))
    assert rm.kind == "prm"
    weights = os.path.join(folder, "model.safetensors")
    if os.path.isfile(weights):  # LoRA leaves the embeddings as the checkpoint's
        saved = load_file(str(tmp_path / "rm" / "model.safetensors"))["model.embed_tokens.weight"]
        assert torch.equal(saved, load_file(weights)["model.embed_tokens.weight"])
    _check_scores(rm)
