"""Label builders (PRM hard/soft/3-class, ORM, BT pairs, TRL stepwise export) and the `prmsearch build` CLI."""

import json
import os

import datasets
import pytest

from prmsearch import BuildConfig, BuildReport, StepFormat, Trace, build_orm, build_pairs, build_prm, build_stepwise
from prmsearch.cli import main

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures")
RECIPES = os.path.join(os.path.dirname(__file__), "..", "data_builders")
GSM8K_SOLUTIONS = os.path.join(
    os.path.dirname(__file__), "..", "..", "shared", "data", "gsm8k_test_model_solutions.jsonl"
)


def traces():
    return [
        Trace("What is 2+3?", ["2 + 3 = 5.", "The answer is 5."], [1.0, 1.0], True, "g1"),
        Trace("What is 2+3?", ["2 + 3 = 6.", "The answer is 6."], [0.0, 0.0], False, "g1"),
        Trace("What is 2+3?", ["2 * 3 = 6.", "", "The answer is 6."], [0.0, None, 0.0], False, "g1"),
        Trace("What is 7*6?", ["7 * 6 = 42.", "The answer is 42."], None, True, "g2"),
    ]


def supervised(row):
    return [(i, v) for i, v in enumerate(row["labels"]) if v != -100]


def test_prm_hard_labels_sit_on_step_ends(smollm2_tokenizer):
    fmt = StepFormat()
    report = BuildReport()
    ds = build_prm(traces(), smollm2_tokenizer, fmt, report=report, progress=False)
    assert report.label_kind == "hard" and report.examples == 4 and ds.features["labels"].feature.dtype == "int64"
    for trace, row in zip(traces(), ds, strict=True):
        enc = fmt.encode(smollm2_tokenizer, trace.prompt, trace.steps)
        assert row["input_ids"] == enc.input_ids
        assert [i for i, _ in supervised(row)] == enc.step_ends
    assert [v for _, v in supervised(ds[3])] == [1, 1]  # outcome copied onto steps (outcome_to_steps="all")


def test_prm_soft_labels_stay_floats(smollm2_tokenizer):
    soft = [Trace("Q", ["a", "b", "c"], [0.37, 1.0, 0.0], None, "g")]
    ds = build_prm(soft, smollm2_tokenizer, StepFormat(), progress=False)
    assert ds.features["labels"].feature.dtype == "float64"
    assert [v for _, v in supervised(ds[0])] == [0.37, 1.0, 0.0]


def test_prm_three_class_must_be_explicit(smollm2_tokenizer):
    rated = [Trace("Q", ["a", "b", "c"], [1.0, 0.0, -1.0], None, "g")]
    with pytest.raises(ValueError, match="three-class"):
        build_prm(rated, smollm2_tokenizer, StepFormat(), progress=False)
    ds = build_prm(rated, smollm2_tokenizer, StepFormat(), label_kind="three-class", progress=False)
    assert [v for _, v in supervised(ds[0])] == [1, 0, -1]
    with pytest.raises(ValueError, match="hard"):
        build_prm([Trace("Q", ["a"], [0.5])], smollm2_tokenizer, StepFormat(), label_kind="hard", progress=False)


def test_prm_drops_too_long_and_unlabelled_with_reasons(smollm2_tokenizer):
    items = [
        Trace("Q", ["word " * 50], [1.0]),
        Trace("Q", ["short"], None, None),
        Trace("Q", ["short"], [1.0]),
        Trace("Q", ["  "], [1.0]),
    ]
    report = BuildReport()
    ds = build_prm(items, smollm2_tokenizer, StepFormat(), max_length=20, report=report, progress=False)
    assert len(ds) == 1 and report.traces == 4
    assert dict(report.dropped) == {"too_long": 1, "no_step_labels": 1, "no_steps": 1}


def test_outcome_to_steps_last(smollm2_tokenizer):
    ds = build_prm(traces()[3:], smollm2_tokenizer, StepFormat(), outcome_to_steps="last", progress=False)
    assert [v for _, v in supervised(ds[0])] == [1]


def test_orm_outcome_on_every_completion_token(bpe_tokenizer):
    fmt = StepFormat()
    report = BuildReport()
    items = traces() + [Trace("Q", ["x"], [1.0], None)]
    ds = build_orm(items, bpe_tokenizer, fmt, report=report, progress=False)
    assert len(ds) == 4 and report.dropped == {"no_outcome": 1}
    for trace, row in zip(items[:4], ds, strict=True):
        enc = fmt.encode(bpe_tokenizer, trace.prompt, trace.steps)
        n_prompt = enc.prompt_length
        assert row["labels"][:n_prompt] == [-100] * n_prompt
        assert row["labels"][n_prompt:] == [int(trace.outcome)] * (len(enc.input_ids) - n_prompt)
        assert row["outcome"] == int(trace.outcome)


def test_pairs_groups_and_margin(bpe_tokenizer):
    report = BuildReport()
    ds = build_pairs(traces(), StepFormat(), tokenizer=bpe_tokenizer, margin="steps", report=report, progress=False)
    assert len(ds) == 2  # g1: one correct x two incorrect; g2 has no incorrect solution
    assert set(ds["group_id"]) == {"g1"} and report.dropped == {"one_sided_group_traces": 1}
    assert ds[0]["chosen"] == "2 + 3 = 5.\n\nThe answer is 5." and ds[0]["margin"] == 1.0
    assert ds[1]["rejected"] == "2 * 3 = 6.\n\nThe answer is 6."
    enc = StepFormat().encode(bpe_tokenizer, "What is 2+3?", ["2 + 3 = 5.", "The answer is 5."])
    assert ds[0]["chosen_input_ids"] == enc.input_ids


def test_stepwise_export_round_trips_through_reader(tmp_path):
    from prmsearch.data_builders import read_stepwise

    ds = build_stepwise(traces() + [Trace("Q", ["a", "b"], [0.25, 1.0])], progress=False)
    assert ds.features["labels"].feature.dtype == "float64"
    path = str(tmp_path / "stepwise.jsonl")
    ds.to_json(path, lines=True)
    back = list(read_stepwise(path))
    assert back[0].steps == ["2 + 3 = 5.", "The answer is 5."] and back[0].step_labels == [1.0, 1.0]
    assert back[2].steps == ["2 * 3 = 6.", "The answer is 6."]  # empty step dropped with its (None) label
    assert back[-1].step_labels == [0.25, 1.0]
    hard = build_stepwise(traces()[:2], progress=False)
    assert hard[0]["labels"] == [True, True] and hard.features["labels"].feature.dtype == "bool"


def test_build_config_from_yaml_and_flags(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text('source: traces\nseparator: "\\n"\nsolution_fields: [a, b]\n')
    cfg = BuildConfig.from_yaml(str(recipe), target="orm")
    assert cfg.separator == "\n" and cfg.solution_fields == ["a", "b"] and cfg.target == "orm"
    recipe.write_text("sorce: traces\n")
    with pytest.raises(ValueError, match="unknown keys"):
        BuildConfig.from_yaml(str(recipe))
    with pytest.raises(ValueError, match="source must be one of"):
        BuildConfig(source="csv")


@pytest.mark.parametrize("target", ["prm", "orm", "pairs", "stepwise"])
def test_cli_build_on_fixture(tmp_path, capsys, smollm2_tokenizer, target):
    out = tmp_path / f"{target}.jsonl"
    argv = [
        "build",
        target,
        "--source",
        "traces",
        "--input",
        os.path.join(FIXTURES, "traces_gsm8k.jsonl"),
        "--output",
        str(out),
        "--tokenizer",
        "smollm2",
        "--separator",
        "\\n",
        "--skip-bad",
        "--quiet",
        "--solution-fields",
        "6b_finetuning,175b_verification",
    ]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "rows read:" in printed and "bad rows skipped: 1" in printed
    summary = json.loads((tmp_path / f"{target}.jsonl.build.json").read_text())
    assert summary["examples"] == len(datasets.load_dataset("json", data_files=str(out), split="train"))
    assert summary["step_format"]["separator"] == "\n" and summary["bad_rows"] == 1


def test_cli_bad_row_error_names_file_line_field(tmp_path, capsys):
    argv = [
        "build",
        "stepwise",
        "--source",
        "traces",
        "--input",
        os.path.join(FIXTURES, "traces_gsm8k.jsonl"),
        "--output",
        str(tmp_path / "o.jsonl"),
        "--separator",
        "\\n",
        "--quiet",
        "--solution-fields",
        "6b_finetuning,175b_verification",
    ]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "traces_gsm8k.jsonl:" in err and "field '" in err
    assert not (tmp_path / "o.jsonl").exists()


def test_save_to_disk_output(tmp_path, capsys):
    out = tmp_path / "ds"
    argv = [
        "build",
        "stepwise",
        "--source",
        "stepwise",
        "--input",
        os.path.join(FIXTURES, "stepwise.jsonl"),
        "--output",
        str(out),
        "--skip-bad",
        "--quiet",
    ]
    assert main(argv) == 0
    ds = datasets.load_from_disk(str(out))
    assert len(ds) > 0 and (out / "build.json").exists()
    from prmsearch.data_builders import read_stepwise

    back = list(read_stepwise(str(out)))  # a save_to_disk folder is a valid input too
    assert [t.steps for t in back] == ds["completions"]


@pytest.mark.skipif(not os.path.exists(GSM8K_SOLUTIONS), reason="shared GSM8K data not present")
def test_gsm8k_recipe_builds_all_four_systems(tmp_path, smollm2_tokenizer):
    from prmsearch import run_build

    recipe = os.path.join(os.path.dirname(__file__), "..", "data_builders", "gsm8k_solutions.yaml")
    out = str(tmp_path / "p.jsonl")
    cfg = BuildConfig.from_yaml(recipe, target="pairs", input=GSM8K_SOLUTIONS, output=out, max_length=None)
    summary = run_build(cfg, progress=False)
    assert summary["rows_read"] == 1319 and summary["traces"] == 1319 * 4 and summary["bad_rows"] == 0
    rows = [json.loads(line) for line in open(GSM8K_SOLUTIONS)]
    systems = cfg.solution_fields
    expected = sum(
        sum(r[s]["is_correct"] for s in systems) * sum(not r[s]["is_correct"] for s in systems) for r in rows
    )
    assert summary["examples"] == expected


@pytest.mark.parametrize("recipe", sorted(p for p in os.listdir(RECIPES) if p.endswith(".yaml")))
def test_every_recipe_loads(recipe):
    cfg = BuildConfig.from_yaml(os.path.join(RECIPES, recipe), target="prm")
    assert cfg.input and cfg.step_format().split("a" + cfg.separator + "b") == ["a", "b"]


def test_math_shepherd_recipe_reproduces_the_original_layout(smollm2_tokenizer):
    """With the recipe's StepFormat the model input is Math-Shepherd's own text, label on each ки."""
    from prmsearch.data_builders import read_math_shepherd

    cfg = BuildConfig.from_yaml(os.path.join(RECIPES, "math_shepherd.yaml"))
    rows = [json.loads(line) for line in open(os.path.join(FIXTURES, "math_shepherd.jsonl"), encoding="utf-8")]
    trace = next(read_math_shepherd(os.path.join(FIXTURES, "math_shepherd.jsonl"), skip_bad=True))
    enc = cfg.step_format().encode(smollm2_tokenizer, trace.prompt, trace.steps)
    assert smollm2_tokenizer.decode(enc.input_ids) == rows[0]["input"]
    ki = smollm2_tokenizer(" ки", add_special_tokens=False).input_ids[-1]
    assert [enc.input_ids[e] for e in enc.step_ends] == [ki] * len(trace.steps)


def _counting_traces(n, soft_at=None):
    """`n` two-step traces, hard labels except a 0.5 at trace `soft_at`."""
    return [
        Trace(
            f"What is {i}+{i}?",
            [f"{i} + {i} = {2 * i}.", f"The answer is {2 * i}."],
            [1.0, 0.5 if i == soft_at else float(i % 2)],
            None,
            f"g{i}",
            f"s{i}",
        )
        for i in range(n)
    ]


@pytest.mark.parametrize("soft_at", [None, 5])
def test_examples_stream_to_arrow_files_as_built_at_once(smollm2_tokenizer, tmp_path, monkeypatch, soft_at):
    """A one-pass generator of more traces than a write batch and an Arrow file hold (labels turning soft half-way
    or not) gives the rows, column types and saved JSONL bytes of the whole list built at once in memory
    (`Dataset.from_list`, the path the builders took before they streamed)."""
    from prmsearch.data_builders import examples
    from prmsearch.data_builders.build import save_dataset

    fmt, items = StepFormat(), _counting_traces(8, soft_at)
    rows = []
    for t in items:
        enc = fmt.encode(smollm2_tokenizer, t.prompt, t.steps)
        labels = [-100.0] * len(enc.input_ids)
        for pos, step in zip(enc.step_ends, enc.kept, strict=True):
            labels[pos] = t.step_labels[step]
        columns = {"input_ids": enc.input_ids, "attention_mask": enc.attention_mask, "labels": labels}
        rows.append({**columns, "prompt_length": enc.prompt_length, "group_id": t.group_id, "source": t.source})
    monkeypatch.setattr(examples, "WRITE_BATCH", 2)
    monkeypatch.setattr(examples, "SHARD_ROWS", 3)
    report = BuildReport()
    ds = build_prm((t for t in items), smollm2_tokenizer, fmt, report=report, progress=False, cache_dir=str(tmp_path))
    kind = "soft" if soft_at is not None else "hard"
    assert report.label_kind == kind and report.examples == 8
    assert ds.features["labels"].feature.dtype == ("float64" if soft_at is not None else "int64")
    files = [f["filename"] for f in ds.cache_files]
    assert len(files) == 3 and all(os.path.dirname(f) == str(tmp_path) for f in files)
    reference = datasets.Dataset.from_list(rows, features=ds.features)
    assert ds.to_list() == reference.to_list()
    save_dataset(ds, str(tmp_path / "streamed.jsonl"), {})
    reference.to_json(str(tmp_path / "reference.jsonl"), lines=True, force_ascii=False)
    assert (tmp_path / "streamed.jsonl").read_bytes() == (tmp_path / "reference.jsonl").read_bytes()


def _read_output(path):
    if path.endswith(".jsonl"):
        return [json.loads(line) for line in open(path, encoding="utf-8")]
    if path.endswith(".parquet"):
        import pyarrow.parquet as pq

        return pq.read_table(path).to_pylist()
    return datasets.load_from_disk(path).to_list()


@pytest.mark.parametrize("name", ["prm.jsonl", "prm.parquet", "prm"])
def test_build_streams_through_a_temporary_folder_it_removes(tmp_path, monkeypatch, smollm2_tokenizer, name):
    """`prmsearch build` writes its examples to Arrow files in a temporary folder beside the output (not the
    datasets cache), saves from there, and removes the folder; every output kind holds the examples built."""
    from prmsearch.data_builders import build, read_stepwise

    seen = []

    def save_and_look(ds, path, summary, progress=False):
        seen.extend(f["filename"] for f in ds.cache_files)
        assert seen and all(os.path.exists(f) for f in seen)
        return save(ds, path, summary, progress)

    save = build.save_dataset
    monkeypatch.setattr(build, "save_dataset", save_and_look)
    stepwise, out = os.path.join(FIXTURES, "stepwise.jsonl"), tmp_path / name
    argv = ["build", "prm", "--source", "stepwise", "--input", stepwise, "--output", str(out), "--tokenizer", "smollm2"]
    assert main([*argv, "--skip-bad", "--quiet"]) == 0
    assert all(os.path.dirname(f).startswith(str(tmp_path / f".{name}.build-")) for f in seen)
    assert not any(os.path.exists(os.path.dirname(f)) for f in seen)
    assert sorted(os.listdir(tmp_path)) == sorted([name] if name == "prm" else [name, f"{name}.build.json"])
    expected = build_prm(read_stepwise(stepwise, skip_bad=True), smollm2_tokenizer, StepFormat(), progress=False)
    assert _read_output(str(out)) == expected.to_list()


def test_a_large_save_to_disk_is_copied_by_a_worker(tmp_path, monkeypatch):
    """Above `SAVE_IN_PROCESS_BYTES` the folder is written by datasets' spawned worker, which maps one shard at a
    time so this process never reads the pages, and holds the rows an in-process save holds."""
    from prmsearch.data_builders import build

    argv = ["build", "stepwise", "--source", "stepwise", "--input", os.path.join(FIXTURES, "stepwise.jsonl")]
    assert main([*argv, "--output", str(tmp_path / "here"), "--skip-bad", "--quiet"]) == 0
    calls, save = [], datasets.Dataset.save_to_disk

    def save_and_look(self, path, **kwargs):
        calls.append(kwargs.get("num_proc"))
        return save(self, path, **kwargs)

    monkeypatch.setattr(datasets.Dataset, "save_to_disk", save_and_look)
    monkeypatch.setattr(build, "SAVE_IN_PROCESS_BYTES", 0)
    assert main([*argv, "--output", str(tmp_path / "worker"), "--skip-bad", "--quiet"]) == 0
    assert calls == [1]
    here, worker = (datasets.load_from_disk(str(tmp_path / n)) for n in ("here", "worker"))
    assert worker.features == here.features and worker.to_list() == here.to_list()
