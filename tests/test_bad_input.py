"""Bad input gets a clear refusal or a warning that names the problem, never a silent wrong result or lost data:
build (output over input, every example dropped, very long examples, a failed write), the policy (a reward model
given as --policy), and the reward models (an empty ORM completion, inputs past the position embeddings)."""

import json
import os
from pathlib import Path

import pytest
from conftest import tiny_config

from prmsearch.cli import main

FIXTURES = Path(__file__).parent / "fixtures"
TRACES = ["--source", "traces", "--separator", "\\n", "--skip-bad", "--quiet"]
SYSTEMS = ["--solution-fields", "6b_finetuning,175b_verification"]


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


def test_build_refuses_to_write_over_its_input(tmp_path, capsys):
    data = tmp_path / "traces.jsonl"
    data.write_bytes((FIXTURES / "traces_gsm8k.jsonl").read_bytes())
    before = data.read_bytes()
    argv = ["build", "stepwise", "--input", str(data), "--output", f"{tmp_path}/./traces.jsonl", *TRACES, *SYSTEMS]
    assert main(argv) != 0
    assert "is also an input" in _one_error_line(capsys)
    assert data.read_bytes() == before


def test_build_with_every_example_dropped_says_why_and_writes_nothing(tmp_path, capsys):
    out = tmp_path / "prm.jsonl"
    argv = ["build", "prm", "--input", str(FIXTURES / "traces_gsm8k.jsonl"), "--output", str(out)]
    assert main([*argv, "--tokenizer", "smollm2", "--max-length", "5", *TRACES, *SYSTEMS]) != 0
    line = _one_error_line(capsys)
    assert "no examples left from 6 traces" in line and "too_long=6" in line and "--max-length" in line
    assert not out.exists() and not list(tmp_path.iterdir())


def test_build_counts_and_reports_very_long_examples(tmp_path, capsys):
    row = json.loads((FIXTURES / "traces_gsm8k.jsonl").read_text().splitlines()[0])
    row["6b_finetuning"]["solution"] = "x " * 40_000 + "\nA: 26"  # one 80-kB line: ~40k tokens
    data = tmp_path / "long.jsonl"
    data.write_text(json.dumps(row) + "\n")
    out = tmp_path / "prm.jsonl"
    argv = ["build", "prm", "--input", str(data), "--output", str(out), "--tokenizer", "smollm2", *TRACES, *SYSTEMS]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    summary = json.loads((tmp_path / "prm.jsonl.build.json").read_text())
    assert summary["long_examples"] == 1 and summary["longest_tokens"] > summary["long_limit"]
    assert f"warning: 1 examples longer than {summary['long_limit']} tokens" in printed


def test_a_failed_build_write_leaves_the_old_output_whole(tmp_path, monkeypatch):
    """The output is written under a temporary name and renamed when whole: a write that dies half-way (here the
    datasets writer raising after half the file) leaves the previous output as it was, and no temporary behind."""
    import datasets

    from prmsearch.data_builders.build import BuildConfig, run_build

    out = tmp_path / "stepwise.jsonl"
    cfg = BuildConfig(
        target="stepwise",
        input=str(FIXTURES / "traces_gsm8k.jsonl"),
        output=str(out),
        separator="\n",
        skip_bad=True,
        solution_fields=["6b_finetuning", "175b_verification"],
    )
    run_build(cfg, progress=False)
    old = out.read_bytes()

    def dies_half_way(self, f, **kwargs):  # the build writes its shards one after another into one open file
        f.write(old[: len(old) // 2])
        raise OSError("disk full")

    monkeypatch.setattr(datasets.Dataset, "to_json", dies_half_way)
    with pytest.raises(OSError, match="disk full"):
        run_build(cfg, progress=False)
    assert out.read_bytes() == old
    assert sorted(os.listdir(tmp_path)) == ["stepwise.jsonl", "stepwise.jsonl.build.json"]


def test_a_reward_model_is_refused_as_policy(saved_reward_models, tmp_path, capsys):
    """A reward model with a head (no LM head) cannot generate. (The embedded PRM and ORM read their LM's token
    probabilities, so they are whole causal LMs and could.)"""
    problems = tmp_path / "p.jsonl"
    problems.write_text(json.dumps({"id": "a", "prompt": "What is 2+3?", "answer": "5"}) + "\n")
    prm = str(tmp_path / "prm")
    argv = ["search", "--policy", prm, "--dataset", str(problems), "--strategy", "greedy"]
    assert main([*argv, "--output", str(tmp_path / "run"), "--quiet"]) != 0
    line = _one_error_line(capsys)
    assert f"--policy {prm}" in line and "not a causal LM" in line and "--scorer" in line


def test_a_causal_lm_folder_without_its_lm_head_is_refused(tmp_path, smollm2_tokenizer):
    """A checkpoint that says it is a causal LM but holds no LM head (untied) would generate from random weights."""
    from safetensors.torch import load_file, save_file
    from transformers import LlamaConfig, LlamaForCausalLM

    from prmsearch.search.generators import GeneratorError, HFGenerator

    LlamaForCausalLM(tiny_config(LlamaConfig, smollm2_tokenizer, tie_word_embeddings=False)).save_pretrained(tmp_path)
    smollm2_tokenizer.save_pretrained(tmp_path)
    weights = tmp_path / "model.safetensors"
    save_file({k: v for k, v in load_file(weights).items() if not k.startswith("lm_head")}, weights)
    with pytest.raises(GeneratorError, match="LM head 'lm_head.weight' is not in the checkpoint"):
        HFGenerator.from_pretrained(str(tmp_path), device="cpu")


@pytest.fixture
def saved_reward_models(tmp_path, smollm2_tokenizer):
    """A tiny ORM and PRM that read at most 64 positions, saved and loaded back as users load them."""
    import copy

    from transformers import Qwen2Config

    from prmsearch.models.reward_model import RewardModel

    config = tiny_config(Qwen2Config, smollm2_tokenizer, max_position_embeddings=64)
    models = {}
    for kind in ("orm", "prm"):
        RewardModel.from_backbone(copy.deepcopy(config), smollm2_tokenizer, kind).save_pretrained(str(tmp_path / kind))
        models[kind] = RewardModel.from_pretrained(str(tmp_path / kind))
    return models


def test_an_orm_refuses_an_empty_completion(saved_reward_models):
    from prmsearch.models.reward_model import RewardModelError

    orm = saved_reward_models["orm"]
    assert isinstance(orm.score("What is 2+3?", "2 + 3 = 5"), float)
    with pytest.raises(RewardModelError, match="completion 0 is empty"):
        orm.score("What is 2+3?", "")


def test_reward_models_refuse_inputs_past_their_position_embeddings(saved_reward_models):
    from prmsearch.models.reward_model import RewardModelError
    from prmsearch.search.scorer import StepScorer

    prm = saved_reward_models["prm"]
    assert prm.max_length == 64
    assert len(prm.score_steps("What is 2+3?", ["2 + 3 = 5"])) == 1
    long = ["one more step " * 20]
    with pytest.raises(RewardModelError, match="more than the 64 this reward model reads"):
        prm.score_steps("What is 2+3?", long)
    scorer = StepScorer(prm)
    scorer.add_prompt(("p",), "What is 2+3?")
    scorer.score([(("p",), [(("p", 0), "2 + 3 = 5")])])  # fits
    with pytest.raises(RewardModelError, match="a prompt with its steps so far is"):
        scorer.score([(("p", 0), [(("p", 0, 1), long[0])])])


def test_a_search_without_gold_answers_reports_no_accuracy(tmp_path, capsys):
    """Problems without a gold answer are not graded, even where no solution came out (here every sample is cut at
    two tokens): accuracy is n/a, not 0."""
    problems = tmp_path / "p.jsonl"
    problems.write_text("".join(json.dumps({"id": k, "prompt": f"What is {k} + 3?"}) + "\n" for k in "12"))
    argv = ["search", "--policy", "embedded:policy", "--dataset", str(problems), "--strategy", "greedy"]
    assert main([*argv, "--max-tokens", "2", "--output", str(tmp_path / "run"), "--quiet"]) == 0
    rows = [json.loads(line) for line in (tmp_path / "run" / "results.jsonl").open()]
    assert [(r["correct"], r["grade_reason"]) for r in rows] == [(None, "no solution")] * 2
    out = capsys.readouterr().out
    assert "| greedy | 1 | 2 | n/a |" in out and "accuracy is not available" in out


def test_verify_refuses_a_folder_as_output(tmp_path, capsys):
    rows = tmp_path / "in.jsonl"
    rows.write_text(json.dumps({"out": "A: 5", "gold": "5"}) + "\n")
    (tmp_path / "graded").mkdir()
    argv = ["verify", "math", "--input", str(rows), "--output", str(tmp_path / "graded")]
    assert main([*argv, "--pred-field", "out", "--gold-field", "gold", "--quiet"]) != 0
    assert "is a folder; give the path of a .jsonl file" in _one_error_line(capsys)
    assert sorted(os.listdir(tmp_path)) == ["graded", "in.jsonl"]  # no temporary left behind


def _last_error_line(capsys) -> str:
    """The one error line, after whatever progress a loader printed before it failed."""
    err = capsys.readouterr().err.strip().splitlines()
    assert err and "Traceback" not in "".join(err), err
    return err[-1]


def test_a_byte_that_is_not_utf8_names_its_file_and_line(tmp_path, capsys):
    rows = tmp_path / "in.jsonl"
    bad = b'{"question": "Q", "out": "A: \xff", "gold": "5"}\n'
    rows.write_bytes(json.dumps({"question": "Q", "out": "A: 5", "gold": "5"}).encode() + b"\n" + bad)
    argv = ["verify", "math", "--input", str(rows), "--output", str(tmp_path / "graded.jsonl")]
    assert main([*argv, "--pred-field", "out", "--gold-field", "gold", "--quiet"]) == 2
    column = bad.index(b"\xff") + 1
    assert f"{rows}:2: field '<json>': not UTF-8 text (byte 0xff at column {column})" in _one_error_line(capsys)
    argv = ["build", "stepwise", "--input", str(rows), "--output", str(tmp_path / "b.jsonl"), "--source", "traces"]
    assert main([*argv, "--solution-fields", "out", "--quiet"]) == 2
    assert f"{rows}:2: field '<json>': not UTF-8 text" in _one_error_line(capsys)


@pytest.mark.parametrize(
    "flags, says",
    [
        (["--device", "cuda:7" if os.environ.get("CUDA_VISIBLE_DEVICES") else "cuda"], "--device cuda"),
        (["--dtype", "float8"], "dtype must be one of auto, bfloat16, float16, float32, got 'float8'"),
        (["--temperature", "nan"], "temperature must be a finite number >= 0 (0: greedy), got nan"),
    ],
)
def test_devices_dtypes_and_sampling_the_machine_cannot_give_are_one_line(tmp_path, capsys, flags, says):
    import torch

    if flags[0] == "--device" and torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    argv = ["search", "--policy", "embedded:policy", "--dataset", "chains", "--strategy", "greedy", "--limit", "1"]
    assert main([*argv, "--output", str(tmp_path / "run"), "--quiet", *flags]) == 2
    assert says in _last_error_line(capsys)


@pytest.fixture
def damaged(tmp_path):
    """Copies of the embedded PRM and policy with one file cut in half (a kill or a full disk mid-save)."""
    import shutil

    from prmsearch.shipped import resolve

    def cut(name, file):
        folder = tmp_path / f"{name}-{file}"
        shutil.copytree(resolve(f"embedded:{name}"), folder)
        data = (folder / file).read_bytes()
        (folder / file).write_bytes(data[: len(data) // 2])
        return str(folder)

    return cut


@pytest.mark.parametrize("file", ["model.safetensors", "tokenizer.json"])
def test_a_damaged_checkpoint_is_one_line_naming_it(tmp_path, capsys, damaged, file):
    argv = ["search", "--dataset", "chains", "--limit", "1", "--output", str(tmp_path / "run"), "--quiet"]
    policy = damaged("policy", file)
    assert main([*argv, "--policy", policy, "--strategy", "greedy"]) == 2
    assert f"{policy}: cannot read the policy (" in _last_error_line(capsys)
    prm = damaged("prm", file)
    assert main([*argv, "--policy", "embedded:policy", "--scorer", prm, "--strategy", "best_of_n"]) == 2
    line = _last_error_line(capsys)
    assert f"{prm}: cannot read the reward model (" in line and "is a file truncated or empty?" in line


def test_a_damaged_dataset_folder_or_run_record_is_one_line(tmp_path, capsys):
    import datasets

    folder = tmp_path / "ds"
    datasets.Dataset.from_list(
        [{"problem": f"What is {i} + 1?", "answer": str(i + 1)} for i in range(300)]
    ).save_to_disk(folder)
    arrow = next(folder.glob("*.arrow"))
    arrow.write_bytes(arrow.read_bytes()[:2000])
    argv = ["search", "--policy", "embedded:policy", "--strategy", "greedy", "--limit", "1", "--quiet"]
    assert main([*argv, "--dataset", str(folder), "--output", str(tmp_path / "a")]) == 2
    assert f"{folder}: cannot read the dataset (" in _last_error_line(capsys)
    run = tmp_path / "run"
    assert main([*argv, "--dataset", "chains", "--output", str(run)]) == 0
    (run / "search_config.yaml").write_text("policy: [unclosed\n")
    assert main([*argv, "--dataset", "chains", "--output", str(run), "--resume"]) == 2
    assert "search_config.yaml: cannot read it (" in _last_error_line(capsys)


def test_an_n_too_large_to_hold_is_refused_before_anything_loads(tmp_path, capsys):
    argv = ["search", "--policy", "embedded:policy", "--dataset", "chains", "--strategy", "majority", "--quiet"]
    assert main([*argv, "--n", "1,1000000", "--output", str(tmp_path / "run")]) == 2
    line = _one_error_line(capsys)
    assert "--n 1000000 with --batch-problems 16 and --max-tokens 1024 can hold about 747.7 GiB" in line, line
    assert "lower --n, --batch-problems or --max-tokens" in line and not (tmp_path / "run").exists()
