"""`prmsearch quickstart` and the embedded names: the plan runs every (strategy, N) through ordinary search runs and
one joint report; `embedded:*` names resolve to the shipped folders, with a clear error when one is missing."""

import json

import pytest

from prmsearch import embedded, shipped
from prmsearch.embedded.quickstart import PLAN, QuickstartConfig, run_quickstart

EXPECTED = {
    ("greedy", 1),
    *((s, n) for s in ("majority", "best_of_n", "weighted_best_of_n") for n in (1, 4, 16)),
    ("beam", 4),
    ("beam", 16),
    ("dvts", 16),
    ("mcts", 16),
}


def test_embedded_names(tmp_path, monkeypatch):
    assert embedded.resolve("some/folder") == "some/folder"
    with pytest.raises(FileNotFoundError, match="choose from embedded:policy"):
        embedded.resolve("embedded:nope")
    monkeypatch.setattr(shipped, "HOME", tmp_path)
    with pytest.raises(FileNotFoundError, match="quickstart --retrain"):
        embedded.resolve("embedded:prm")
    (tmp_path / "prm").mkdir()
    (tmp_path / "prm" / "config.json").write_text("{}")
    assert embedded.resolve("embedded:prm") == str(tmp_path / "prm")


def test_plan_covers_what_the_issue_names():
    planned = {(s, 1 if s == "greedy" else n) for _, _, strategies, ns in PLAN for s in strategies for n in ns}
    assert planned == EXPECTED


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory, smollm2_tokenizer):
    """A random policy (steps of digits, ended by EOS), a random PRM and a random ORM, saved as folders."""
    from transformers import Qwen2Config

    from prmsearch.models.reward_model import RewardModel
    from prmsearch.models.tiny import SIZES, tiny_policy, tiny_prm

    root = tmp_path_factory.mktemp("models")
    policy = tiny_policy(smollm2_tokenizer, tokens_per_step=4.0, steps_per_solution=2.0)
    policy.save_pretrained(root / "policy")
    smollm2_tokenizer.save_pretrained(root / "policy")
    tiny_prm(smollm2_tokenizer).save_pretrained(str(root / "prm"))
    config = Qwen2Config(**SIZES, num_key_value_heads=1, vocab_size=len(smollm2_tokenizer))
    RewardModel.from_backbone(config, smollm2_tokenizer, "orm").save_pretrained(str(root / "orm"))
    return {k: str(root / k) for k in ("policy", "prm", "orm")}


def test_quickstart_runs_the_plan_into_one_report(tiny_models, tmp_path):
    cfg = QuickstartConfig(output=str(tmp_path / "q"), problems=2, device="cpu", **tiny_models)
    assert cfg.workers == 2
    rows = run_quickstart(cfg, progress=False)
    assert sorted((tmp_path / "q" / "prm").glob("results*.jsonl")) == [
        tmp_path / "q" / "prm" / f"results.shard-{i}-of-2.jsonl" for i in (0, 1)
    ]
    # two workers write what one process writes: the same samples, scores and answers
    alone = QuickstartConfig(output=str(tmp_path / "q1"), problems=2, device="cpu", workers=1, **tiny_models)
    assert _without_seconds(run_quickstart(alone, progress=False)) == _without_seconds(rows)
    assert {(r["strategy"], r["n"]) for r in rows} == EXPECTED
    assert all(r["problems"] == 2 for r in rows)
    assert json.loads((tmp_path / "q" / "summary.json").read_text()) == rows
    assert (tmp_path / "q" / "accuracy.png").stat().st_size > 10_000
    scored = {(r["strategy"], r["n"]): r["scored_tokens"] for r in rows}
    assert scored[("majority", 16)] == 0 < scored[("best_of_n", 16)] and scored[("beam", 16)] > 0
    # majority, best-of-N and weighted best-of-N judge the same samples: the same generated tokens at each N
    gen = {(r["strategy"], r["n"]): r["generated_tokens"] for r in rows}
    for n in (1, 4, 16):
        assert gen[("majority", n)] == gen[("best_of_n", n)] == gen[("weighted_best_of_n", n)]


def test_quickstart_cli_resumes_and_refuses_bad_input(tiny_models, tmp_path, capsys):
    from prmsearch.cli import main

    args = ["quickstart", "--output", str(tmp_path / "q"), "--problems", "1", "--device", "cpu", "--quiet"]
    args += [f"--{k}={v}" for k, v in tiny_models.items()]
    assert main(args) == 0
    assert "| beam | 16 | 1 |" in capsys.readouterr().out
    assert main(args) == 2  # the runs hold results: --resume continues them instead of mixing two runs
    assert "--resume" in capsys.readouterr().err
    assert main([*args, "--resume"]) == 0
    assert main(["quickstart", "--problems", "0"]) == 2
    assert "problems must be at least 1" in capsys.readouterr().err


def _without_seconds(rows):
    return [{k: v for k, v in r.items() if k != "seconds"} for r in rows]


def _shipped(name):
    try:
        return embedded.resolve(f"embedded:{name}")
    except FileNotFoundError:
        pytest.skip(f"embedded:{name} is not built (prmsearch quickstart --retrain)")


def test_shipped_models_load_by_name_and_the_policy_knows_the_task():
    """The shipped policy solves held-out problems greedily; the shipped PRM and ORM load by name and score steps and
    solutions as probabilities. (That the PRM steers search well is what `prmsearch quickstart` measures.)"""
    from prmsearch.models.reward_model import RewardModel
    from prmsearch.search.generators import HFGenerator
    from prmsearch.tasks.chains import generate

    _shipped("policy"), _shipped("prm"), _shipped("orm")
    problems = generate("test", 40)
    policy = HFGenerator.from_pretrained("embedded:policy", device="cpu")
    outs = policy.generate([p.prompt + "\n\n" for p in problems], max_tokens=160, temperature=0.0)
    solved = sum(o[0].text.strip().endswith(f"The answer is {p.answer}.") for p, o in zip(problems, outs, strict=True))
    assert solved >= 20, solved  # the shipped policy solves about 3 in 4 greedily
    prm, orm = RewardModel.from_pretrained("embedded:prm"), RewardModel.from_pretrained("embedded:orm")
    assert (prm.kind, orm.kind) == ("prm", "orm")
    steps = problems[0].meta["steps"]
    scores = prm.score_steps(problems[0].prompt, steps)
    assert len(scores) == len(steps) and all(0 < x < 1 for x in scores)
    assert 0 < orm.score(problems[0].prompt, "\n\n".join(steps)) < 1
