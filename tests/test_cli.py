"""The `prmsearch` command's promises: every flag explains itself, the light commands (help, build, verify, report)
start without torch, and bad input ends in one line on stderr, `prmsearch CMD: error: ...` naming the file or flag,
exit code 2, never a traceback."""

import argparse
import importlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

from prmsearch.cli import build_parser, main
from prmsearch.errors import PrmsearchError

FIXTURES = Path(__file__).parent / "fixtures"

CONFIGS = [
    "prmsearch.data_builders.build:BuildConfig",
    "prmsearch.label:LabelConfig",
    "prmsearch.verifiers.results:VerifyMathConfig",
    "prmsearch.search.runner:SearchConfig",
    "prmsearch.embedded.quickstart:QuickstartConfig",
    "prmsearch.train.config:TrainConfig",
]

ERRORS = [
    "prmsearch.search.rerank:RerankError",
    "prmsearch.search.results:RunFolderError",
    "prmsearch.scoring:ScorerError",
    "prmsearch.search.engine:SearchError",
    "prmsearch.search.generators:GeneratorError",
    "prmsearch.files:JsonlError",
    "prmsearch.train.config:TrainConfigError",
    "prmsearch.train.collators:BatchingError",
    "prmsearch.models.heads:RewardModelError",
    "prmsearch.models.adapters:AdapterError",
    "prmsearch.steps:StepFormatError",
    "prmsearch.tasks.problems:DatasetUnavailableError",
]


def _load(path: str):
    module, name = path.split(":")
    return getattr(importlib.import_module(module), name)


def _parsers(parser: argparse.ArgumentParser, name: str = "prmsearch"):
    """(command line, parser) for the parser and every subcommand under it (`verify math` included)."""
    yield name, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub_name, sub in action.choices.items():
                yield from _parsers(sub, f"{name} {sub_name}")


# ---- every flag explains itself ------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", CONFIGS)
def test_every_config_field_has_a_help_line(path):
    """The flags' help and `train --help`'s key list come from these; a field added without one fails here."""
    import dataclasses

    config = _load(path)
    missing = [f.name for f in dataclasses.fields(config) if not f.metadata.get("help", "").strip()]
    assert not missing, f"{path}: fields without metadata['help']: {missing}"
    assert all("\n" not in f.metadata["help"] for f in dataclasses.fields(config)), "help is one line"


def test_every_flag_of_every_subcommand_says_what_it_does():
    seen = 0
    for command, parser in _parsers(build_parser()):
        for action in parser._actions:
            if isinstance(action, (argparse._HelpAction, argparse._VersionAction, argparse._SubParsersAction)):
                continue
            text = (action.help or "").split("(default:")[0].split("(comma-separated;")[0].strip()
            assert text, f"`{command}` {action.option_strings or action.dest}: no help beyond the default"
            seen += 1
    assert seen > 100  # every subcommand got its flags (build_parser() without a command adds them all)


def test_choices_are_listed():
    from prmsearch.search.strategies import STRATEGIES

    parser = build_parser("search")
    search = dict(_parsers(parser))["prmsearch search"]
    flags = {a.dest: a for a in search._actions}
    assert all(name in flags["strategy"].help for name in STRATEGIES)
    assert flags["agg"].choices and flags["backend"].choices == ("hf", "vllm")
    from prmsearch.train.config import TrainConfig

    train = dict(_parsers(build_parser("train")))["prmsearch train"]
    keys = {line.split()[0]: line for line in train.epilog.replace("\n" + " " * 30, " ").splitlines()[1:]}
    for key, choices in TrainConfig.CHOICES.items():  # the help (written without torch) names every choice
        assert all(c in keys[key] for c in choices), (key, choices, keys[key])


# ---- torch-free start ----------------------------------------------------------------------------------------------

_RUN = """
import json, sys
from prmsearch.cli import main
seen = []
for argv in json.loads(sys.argv[1]):
    try:
        code = main(argv)
    except SystemExit as e:  # --help exits
        code = e.code
    seen.append([" ".join(argv), code, "torch" in sys.modules])
open(sys.argv[2], "w").write(json.dumps(seen))
"""


def test_help_of_every_command_and_build_verify_report_never_import_torch(tmp_path):
    """One fresh process runs the commands in turn and notes after each whether torch was imported (~3 s that
    these commands do not need)."""
    graded = tmp_path / "in.jsonl"
    graded.write_text(json.dumps({"solution": "So the answer is 4.", "answer": "4"}) + "\n")
    run = tmp_path / "run"
    run.mkdir()
    row = {"problem_id": "q", "strategy": "greedy", "n": 1, "answer": "4", "correct": True}
    (run / "results.jsonl").write_text(json.dumps({**row, "generated_tokens": 5, "scored_tokens": 0}) + "\n")
    commands = [
        ["--help"],
        ["build", "--help"],
        ["verify", "math", "--help"],
        ["report", "--help"],
        ["label", "--help"],
        ["eval", "aggregation", "--help"],
        ["search", "--help"],
        ["train", "prm", "--help"],
        ["quickstart", "--help"],
        ["serve", "--help"],
        ["show-tree", "--help"],
        ["eval", "processbench", "--help"],
        ["eval", "canary", "--help"],
        ["build", "stepwise", "--source", "stepwise", "--input", str(FIXTURES / "stepwise.jsonl")]
        + ["--output", str(tmp_path / "built.jsonl"), "--skip-bad", "--quiet"],
        ["verify", "math", "--input", str(graded), "--output", str(tmp_path / "graded.jsonl"), "--quiet"],
        ["report", str(run)],
    ]
    seen = tmp_path / "seen.json"
    subprocess.run([sys.executable, "-c", _RUN, json.dumps(commands), str(seen)], capture_output=True, check=True)
    for command, code, torch in json.loads(seen.read_text()):
        assert code == 0, command
        assert not torch, f"`prmsearch {command}` imported torch"


# ---- bad input: one line, exit 2 -----------------------------------------------------------------------------------


def one_error_line(capsys, argv: list[str]) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1, err
    line = err.rstrip("\n")
    assert line.startswith(f"prmsearch {argv[0]}: error: "), line
    return line


@pytest.fixture
def bad_yaml(tmp_path):
    """An unclosed "[" on line 3, which PyYAML notices at line 4."""
    path = tmp_path / "bad.yaml"
    path.write_text("source: traces\ninput: in.jsonl\ntokenizer: [smollm2\noutput: out.jsonl\n")
    return path


def test_yaml_syntax_error_in_a_build_recipe(bad_yaml, capsys):
    line = one_error_line(capsys, ["build", "prm", "--config", str(bad_yaml)])
    assert f"{bad_yaml}:4:7: not valid YAML" in line and "started at 3:12" in line


def test_yaml_syntax_error_in_a_train_recipe_and_override(tmp_path, capsys):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("train_data: out/x\nmodel_config:\n  model_type: qwen2\n   hidden_size: 64\n")
    line = one_error_line(capsys, ["train", "prm", str(recipe)])
    assert f"{recipe}:4:" in line and "not valid YAML" in line
    recipe.write_text(f"train_data: {tmp_path}\nmodel_config: {{model_type: qwen2}}\n")
    line = one_error_line(capsys, ["train", "prm", str(recipe), "learning_rate=[1"])
    assert "override 'learning_rate=[1'" in line and "not valid YAML" in line


def test_yaml_error_is_not_a_traceback_in_a_fresh_process(bad_yaml):
    done = subprocess.run(
        [sys.executable, "-m", "prmsearch", "build", "prm", "--config", str(bad_yaml)], capture_output=True, text=True
    )
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.splitlines() == [done.stderr.strip()] and f"{bad_yaml}:4:7" in done.stderr


@pytest.mark.parametrize("argv", [["build", "prm", "--config"], ["train", "prm"], ["label", "--config"]])
def test_missing_recipe_file(tmp_path, capsys, argv):
    missing = tmp_path / "nope.yaml"
    assert one_error_line(capsys, [*argv, str(missing)]).endswith(f"error: {missing}: no such recipe file")


def test_train_recipe_without_train_data(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    recipe = tmp_path / "r.yaml"
    recipe.write_text("model_config: {model_type: qwen2}\n")
    assert "set `train_data`" in one_error_line(capsys, ["train", "prm", str(recipe)])
    # Named but never built (train/tiny_prm.yaml before `make demo`): said at once, not "no tokenizer". The name
    # could be a hub dataset, but then nothing would name a tokenizer.
    recipe.write_text("train_data: out/gsm8k_prm\nmodel_config: {model_type: qwen2}\n")
    line = one_error_line(capsys, ["train", "prm", str(recipe)])
    assert "error: train_data out/gsm8k_prm: no such file or folder; build it first with `prmsearch build`" in line


def test_verify_math_needs_input(tmp_path, capsys):
    for argv in (["verify", "math"], ["verify", "math", "--output", str(tmp_path / "o.jsonl")]):
        assert "--input is required" in one_error_line(capsys, argv)


@pytest.mark.parametrize(
    "argv, flag",
    [
        (["verify", "math", "--input", "./nope.jsonl", "--output", "o.jsonl"], "--input ./nope.jsonl"),
        (["build", "stepwise", "--input", "./nope.jsonl", "--output", "o.jsonl"], "--input ./nope.jsonl"),
        (["build", "orm", "--input", "nope.jsonl", "--output", "o.jsonl", "--tokenizer", "x"], "--input nope.jsonl"),
        (
            ["build", "prm", "--input", str(FIXTURES / "stepwise.jsonl"), "--output", "o.jsonl"]
            + ["--source", "stepwise", "--tokenizer", "./typo"],
            "--tokenizer ./typo",
        ),
        (["train", "prm", "r.yaml", "train_data=./nope.jsonl"], "train_data ./nope.jsonl"),
        (
            ["search", "--policy", "./nope", "--dataset", "chains", "--strategy", "greedy", "--output", "r"],
            "--policy ./nope",
        ),
        (
            ["search", "--policy", "embedded:policy", "--scorer", "./nope", "--dataset", "chains", "--output", "r"],
            "--scorer ./nope",
        ),
    ],
    ids=["verify-input", "build-input", "build-input-suffix", "build-tokenizer", "train-data", "policy", "scorer"],
)
def test_mistyped_local_path_is_named_without_a_hub_round_trip(tmp_path, monkeypatch, capsys, argv, flag):
    """Before: `datasets` / `transformers` took the typo for a hub id ("Repo id must use alphanumeric chars")."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "r.yaml").write_text("model_config: {model_type: qwen2}\n")
    line = one_error_line(capsys, argv)
    assert f"error: {flag}: no such" in line and "check the path" in line


def test_os_error_says_path_and_reason(tmp_path, capsys):
    src = tmp_path / "in.jsonl"
    src.write_text(json.dumps({"solution": "4", "answer": "4"}) + "\n")
    line = one_error_line(capsys, ["verify", "math", "--input", str(src), "--output", str(src / "o.jsonl"), "--quiet"])
    assert line.startswith(f"prmsearch verify: error: {src}: ")


@pytest.mark.parametrize("path", ERRORS)
def test_user_facing_errors_are_prmsearch_errors(path):
    error = _load(path)
    assert issubclass(error, PrmsearchError) and issubclass(error, ValueError)
