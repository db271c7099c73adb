"""Automatic process labels (`prmsearch label`): Monte Carlo rollouts, first-error search, arithmetic consensus,
code, the CLI, and a run killed with SIGKILL and resumed.

The policy is a real `HFGenerator` over a tiny transformer whose behaviour is known exactly: its attention and MLP
outputs are zeroed, so the next-token distribution depends only on the current token (a bigram model), and its
output layer is solved so that after a step ending in "✓" it always answers "A: 42", after "~" it answers 42 or 13
with probability 1/2 each, and after "✗" always 13. So which prefixes can still reach the gold answer is known, and
every rollout goes through the real sampler, the real seeds and the real math verifier.
"""

import contextlib
import json
import math
import os
import signal
import subprocess
import sys
import time

import pytest

from prmsearch.data_builders import read_stepwise
from prmsearch.label import LabelConfig, label_traces
from prmsearch.label.rollouts import sample_traces
from prmsearch.records import Problem, Trace

EOS = "<eos>"
OK, HALF, BAD = "✓", "~", "✗"
MATH_RULES = {
    f"{OK}\n\n": {"A: 42": 1.0},
    f"{HALF}\n\n": {"A: 42": 0.5, "A: 13": 0.5},
    f"{BAD}\n\n": {"A: 13": 1.0},
    "A: 42": {EOS: 1.0},
    "A: 13": {EOS: 1.0},
}
MATH_START = {f"{OK}\n\n": 1 / 3, f"{HALF}\n\n": 1 / 3, f"{BAD}\n\n": 1 / 3}  # after anything else (a prompt)
RETURN = "    return total\n"
CODE_RULES = {RETURN: {EOS: 1.0}}
CODE_START = {RETURN: 1.0}  # whatever the program so far, finish it with `return total`


def bigram_policy(tokenizer, rules, start, hidden=16):
    """A 1-layer Llama whose next token depends only on the current one: after a token of `rules` it draws from
    that distribution, after any other token from `start`. Every word of the rules is added to (a fresh copy of)
    `tokenizer` as one token; a small vocabulary keeps sampling fast."""
    import torch
    from tokenizers import AddedToken
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tok = AutoTokenizer.from_pretrained(tokenizer.name_or_path)  # a copy: the session fixture is shared
    words = sorted({w for w in [*rules, *start, *(w for r in rules.values() for w in r)] if w != EOS})
    tok.add_tokens([AddedToken(w, normalized=False) for w in words])
    cfg = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=hidden,
        intermediate_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=2048,
        tie_word_embeddings=False,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
    )
    model = LlamaForCausalLM(cfg)

    def logits(dist):
        row = torch.full((len(tok),), -30.0)
        for w, p in dist.items():
            row[tok.eos_token_id if w == EOS else tok.convert_tokens_to_ids(w)] = math.log(p)
        return row

    with torch.no_grad():
        for layer in model.model.layers:  # the residual stream is the current token's embedding, nothing more
            layer.self_attn.o_proj.weight.zero_()
            layer.mlp.down_proj.weight.zero_()
        emb = model.model.embed_tokens.weight
        emb.zero_()
        emb[:, 0] = 1.0  # state 0: every ordinary token
        for k, w in enumerate(rules, 1):
            row = tok.convert_tokens_to_ids(w)
            emb[row] = 0.0
            emb[row, k] = 1.0
        states = model.model.norm(torch.eye(hidden)[: len(rules) + 1])
        targets = torch.stack([logits(start), *(logits(d) for d in rules.values())])
        model.lm_head.weight.copy_((torch.linalg.pinv(states) @ targets).T)
        assert torch.allclose(model.lm_head(states), targets, atol=1e-3)
    return model.eval(), tok


@pytest.fixture(scope="module")
def math_model(bpe_tokenizer):
    return bigram_policy(bpe_tokenizer, MATH_RULES, MATH_START)


@pytest.fixture(scope="module")
def policy(math_model):
    from prmsearch.search import HFGenerator

    return HFGenerator(*math_model)


def cfg(**kw):
    return LabelConfig(**{"prompt_template": "plain", "temperature": 1.0, "max_tokens": 8, "k": 8, **kw})


def trace(steps, gold="42", prompt="Tom has 3 apples and buys 4 more. How many now?"):
    return Trace(prompt, list(steps), meta={"gold": gold})


# ---- Monte Carlo ----------------------------------------------------------------------------------------------------


def test_mc_hard_and_soft_labels_follow_which_prefixes_reach_the_gold(policy):
    from prmsearch.search import derive_seed

    k = 16
    wrong = trace([f"Start {OK}", f"Go on {HALF}", f"Maybe {HALF}", f"Slip {BAD}", f"Still {BAD}", "A: 13"])
    right = trace([f"Start {OK}", f"Go on {HALF}", "A: 42"])
    other_gold = trace([f"Start {OK}", f"Slip {BAD}", "A: 13"], gold="3 + 10 = 13.\n#### 13")  # a reference solution
    soft = label_traces([wrong, right, other_gold], policy, cfg(k=k, labels="soft"))
    hard = label_traces([wrong, right, other_gold], policy, cfg(k=k, labels="hard"))

    w, r, o = soft.records
    assert w["correct_rollouts"][0] == k  # after "✓" every rollout answers 42
    assert w["correct_rollouts"][3:] == [0, 0, None]  # after "✗" none does; the final step has no rollouts
    halves = [w["correct_rollouts"][1], w["correct_rollouts"][2], r["correct_rollouts"][1]]
    assert all(0 < c < k for c in halves) and 0.3 < sum(halves) / (3 * k) < 0.7
    assert w["labels"] == [1.0, halves[0] / k, halves[1] / k, 0.0, 0.0, 0.0]  # fractions, never rounded
    assert all(isinstance(v, float) for v in w["labels"])
    assert r["labels"] == [1.0, halves[2] / k, 1.0] and r["outcome"] is True
    assert o["gold"] == "13" and o["labels"] == [0.0, 1.0, 1.0] and o["first_error"] == 0
    assert (w["first_error"], r["first_error"]) == (3, None)
    assert w["rollouts"] == 5 * k and r["rollouts"] == 2 * k and soft.summary["rollouts"] == 9 * k

    # hard: some rollout reached the gold; the same rollouts (same seeds), so hard == soft > 0
    for s, h in zip(soft.records, hard.records, strict=True):
        assert h["correct_rollouts"] == s["correct_rollouts"]
        assert h["labels"] == [v > 0 for v in s["labels"]]
    assert hard.traces[0].step_labels == [1.0, 1.0, 1.0, 0.0, 0.0, 0.0]

    # rollout j of (trace, step) is sample j of the prefix with seed derive_seed(seed, trace id, step), whatever
    # else shares the batch
    for t, record, step, count in [(wrong, w, 1, halves[0]), (wrong, w, 2, halves[1]), (right, r, 1, halves[2])]:
        prefix = t.prompt + "\n\n" + "".join(s + "\n\n" for s in t.steps[: step + 1])
        seed = [derive_seed(0, record["id"], step)]
        again = policy.generate([prefix], n=k, max_tokens=8, temperature=1.0, seed=seed)[0]
        assert sum(c.text == "A: 42" for c in again) == count
    alone = label_traces([wrong], policy, cfg(k=k, labels="soft", batch_traces=1)).records[0]
    assert alone["correct_rollouts"] == w["correct_rollouts"]

    # a rollout cut by max_tokens ("A: 42" then EOS needs 2 tokens) never counts as reaching the answer
    cut = label_traces([right], policy, cfg(k=4, max_tokens=1)).records[0]
    assert cut["correct_rollouts"] == [0, 0, None] and cut["cut_rollouts"] == cut["rollouts"] == 8
    assert cut["labels"] == [False, False, True]


def test_samples_and_rollouts_have_their_own_temperatures(policy):
    """`sample_temperature` draws the traces --sample labels; the rollouts keep `temperature`."""
    problem = Problem("p", "Tom has 3 apples and buys 4 more. How many now?", "42", {"task": "math"})
    hot = sample_traces([problem], policy, cfg(sample=8))
    cold = sample_traces([problem], policy, cfg(sample=8, sample_temperature=0.0))
    assert len({tuple(t.steps) for t in cold}) == 1 < len({tuple(t.steps) for t in hot})
    half = trace([f"Go on {HALF}", "A: 13"])
    plain = label_traces([half], policy, cfg(k=16)).records[0]
    split = label_traces([half], policy, cfg(k=16, sample_temperature=0.0)).records[0]
    assert 0 < plain["correct_rollouts"][0] < 16 and split["correct_rollouts"] == plain["correct_rollouts"]
    with pytest.raises(ValueError, match="sample_temperature"):
        cfg(sample_temperature=-1.0)


# ---- first-error search ----------------------------------------------------------------------------------------------


def monotone_traces():
    """Every first-error position in traces of 1 to 5 steps, and right traces: labels are monotone."""
    out = []
    for n in range(1, 6):
        out.append(trace([f"s{i} {OK}" for i in range(n - 1)] + ["A: 42"]))
        for first in range(n):
            steps = [f"s{i} {OK if i < first else BAD}" for i in range(n - 1)] + ["A: 13"]
            out.append(trace(steps))
    return out


def test_first_error_search_equals_exhaustive_labels_with_fewer_rollouts(policy):
    traces = monotone_traces()
    mc = label_traces(traces, policy, cfg(k=4, method="mc", batch_traces=8))
    fe = label_traces(traces, policy, cfg(k=4, method="first-error", batch_traces=8))
    for m, f in zip(mc.records, fe.records, strict=True):
        assert f["labels"] == m["labels"] and f["first_error"] == m["first_error"]
        probed = [i for i, c in enumerate(f["correct_rollouts"]) if c is not None]
        assert [f["correct_rollouts"][i] for i in probed] == [m["correct_rollouts"][i] for i in probed]
        if m["outcome"]:
            assert f["rollouts"] == 0
    assert 0 < fe.summary["rollouts"] < mc.summary["rollouts"] == mc.summary["exhaustive_rollouts"]
    assert fe.summary["exhaustive_rollouts"] == mc.summary["rollouts"]
    long = [f for f in fe.records if f["num_steps"] == 5 and not f["outcome"]]
    assert all(f["rollouts"] <= 4 * 3 for f in long)  # at most ceil(log2(5)) = 3 probes, not 4 steps

    # the steps after the first error: negative (above), unlabelled or truncated
    wrong = [trace([f"a {OK}", f"b {BAD}", f"c {BAD}", "A: 13"])]
    cut = label_traces(wrong, policy, cfg(k=4, method="first-error", after_error="truncate")).records[0]
    assert cut["completions"] == [f"a {OK}", f"b {BAD}"] and cut["labels"] == [True, False]
    free = label_traces(wrong, policy, cfg(k=4, method="first-error", after_error="unlabelled"))
    assert free.records[0]["labels"] == [True, False] and free.records[0]["step_labels"] == [True, False, None, None]
    assert free.traces[0].steps == wrong[0].steps and free.traces[0].step_labels == [1.0, 0.0, None, None]


def test_the_stepwise_reader_reads_an_unlabelled_tail_whole(policy, tmp_path, smollm2_tokenizer):
    """`--after-error unlabelled` rows: TRL's fields stop at the first error, prmsearch reads the whole solution,
    so `build prm` supervises the same steps and `build orm` grades the solution that was sampled."""
    from prmsearch.data_builders.labels import build_orm, build_prm
    from prmsearch.steps import StepFormat

    wrong = [trace([f"a {OK}", f"b {BAD}", f"c {BAD}", "A: 13"]), trace([f"a {OK}", "A: 42"])]
    path = tmp_path / "labels.jsonl"
    records = label_traces(wrong, policy, cfg(k=4, method="first-error", after_error="unlabelled")).records
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    read = list(read_stepwise(str(path)))
    assert [t.steps for t in read] == [t.steps for t in wrong]
    assert [t.step_labels for t in read] == [[1.0, 0.0, None, None], [1.0, 1.0]]
    prm = build_prm(read, smollm2_tokenizer, StepFormat(), progress=False)
    assert [sum(v != -100 for v in row) for row in prm["labels"]] == [2, 2]
    # `prmsearch train prm train_data=labels.jsonl` reads the file with `datasets`, which gives the row without a
    # tail null `steps` / `step_labels`: the same examples
    import datasets

    from prmsearch.train.trl_data import build_stepwise_rows

    loaded = datasets.load_dataset("json", data_files=str(path), split="train")
    assert loaded[1]["steps"] is None
    trained = build_stepwise_rows(loaded, smollm2_tokenizer, StepFormat(), False, str(path))
    assert trained["labels"] == prm["labels"] and trained["input_ids"] == prm["input_ids"]
    orm = build_orm(read, smollm2_tokenizer, StepFormat(), progress=False)
    whole = StepFormat().encode(smollm2_tokenizer, wrong[0].prompt, wrong[0].steps)
    assert orm[0]["input_ids"] == whole.input_ids and orm["outcome"] == [0, 1]
    assert orm[0]["prompt_length"] == whole.prompt_length


# ---- consensus ------------------------------------------------------------------------------------------------------

CONSENSUS = [
    ([f"3 + 4 = 7 {OK}", f"Then 6 * 7 = 42 {OK}", "A: 42"], "agree"),  # no error either way
    ([f"3 + 4 = 8 {OK}", f"Then 6 * 7 = 42 {OK}", "A: 42"], "disagree"),  # wrong sum, yet rollouts recover
    ([f"3 + 4 = 7 {OK}", f"7 * 5 = 36 {BAD}", "A: 13"], "agree"),  # both say step 1
    ([f"3 + 4 = 7 {OK}", f"We misread the question {BAD}", f"7 * 2 = 14 {BAD}", "A: 13"], "unconfirmed"),
    ([f"3 + 4 = 7 {BAD}", f"7 * 5 = 36 {BAD}", "A: 13"], "disagree"),  # rollouts: step 0, arithmetic: step 1
]


@pytest.mark.parametrize("method", ["mc", "first-error"])
def test_consensus_drops_or_marks_traces_whose_arithmetic_disagrees(policy, method):
    traces = [trace(steps) for steps, _ in CONSENSUS]
    expected = [status for _, status in CONSENSUS]
    marked = label_traces(traces, policy, cfg(k=2, method=method, consensus="mark"))
    assert [r["consensus"]["status"] for r in marked.records] == expected
    assert [r["consensus"]["arithmetic_first_error"] for r in marked.records] == [None, 0, 1, None, 1]
    assert marked.summary["marked_by_consensus"] == 2 and marked.summary["dropped_by_consensus"] == 0
    assert marked.summary["consensus_counts"] == {"agree": 2, "disagree": 2, "unconfirmed": 1}

    dropped = label_traces(traces, policy, cfg(k=2, method=method, consensus="drop"))
    assert [t.steps for t in dropped.traces] == [traces[i].steps for i in (0, 2, 3)]
    assert [t.steps for t in dropped.dropped] == [traces[i].steps for i in (1, 4)]
    assert dropped.summary["dropped_by_consensus"] == 2 and dropped.summary["traces"] == 3
    assert "consensus" not in label_traces(traces, policy, cfg(k=2, method=method)).records[0]


# ---- a judge: the labels themselves (method=judge), or the second opinion of consensus -------------------------------


def test_a_step_critic_labels_traces_without_rollouts():
    """method=judge on bundled-task traces with a truthful scripted critic: the labels are the true first errors,
    no policy and no rollouts are needed, and a judge without a verdict leaves the trace out, counted."""
    from conftest import ScriptedReader, chains_critic

    from prmsearch.judges import CriticJudge
    from prmsearch.tasks.chains import first_error, generate

    traces = []
    for p in generate("test", 40)[:6]:
        steps = list(p.meta["steps"])
        left, value = steps[1].rsplit("= ", 1)
        traces.append(Trace(p.prompt, steps, meta={"gold": p.answer}))
        traces.append(Trace(p.prompt, [steps[0], f"{left}= {int(value) + 1}", *steps[2:]], meta={"gold": p.answer}))
    truth = {p.prompt: p for p in generate("test", 40)}
    critic = CriticJudge(ScriptedReader(chains_critic()))
    got = label_traces(traces, None, cfg(method="judge"), judge=critic)
    assert len(got.records) == len(traces) and got.dropped == [] and got.summary["rollouts"] == 0
    for t, r in zip(traces, got.records, strict=True):
        first = first_error(truth[t.prompt], t.steps)
        assert r["judge_first_error"] == first and r["first_error"] == (None if first < 0 else first)
        assert r["labels"] == [first < 0 or i < first for i in range(len(t.steps))]  # after_error negative
    assert got.summary["invalid_verdicts"] == 0 and critic.stats["verdicts"] == len(traces)
    cut = label_traces(traces[:2], None, cfg(method="judge", after_error="unlabelled"), judge=critic).records
    assert cut[1]["labels"] == [True, False] and cut[1]["step_labels"][2:] == [None] * (len(traces[1].steps) - 2)

    mute = CriticJudge(ScriptedReader(lambda problem, solution: "Let me think."))
    none = label_traces(traces[:4], None, cfg(method="judge", consensus="mark"), judge=mute)
    assert none.traces == [] and len(none.dropped) == 4 and none.summary["invalid_verdicts"] == 4
    assert none.summary["dropped_by_consensus"] == 0 and none.summary["consensus_counts"] == {"invalid": 4}
    with pytest.raises(ValueError, match="need a judge"):
        label_traces(traces, None, cfg(method="judge"))
    with pytest.raises(ValueError, match="needs --consensus drop or mark"):
        LabelConfig(second_opinion="judge", judge="j")


def arithmetic_judge(problem, solution):
    """A critic that checks arithmetic only, and is lost for words on a trace that misreads the question."""
    import re

    if "misread" in solution:
        return "Let me think."
    for i, line in enumerate(solution.split("\n")):
        m = re.search(r"(\d+) ([+*]) (\d+) = (\d+)", line)
        if m and (int(m[1]) + int(m[3]) if m[2] == "+" else int(m[1]) * int(m[3])) != int(m[4]):
            return f"Earliest wrong step: {i + 1}"
    return "Earliest wrong step: none"


@pytest.mark.parametrize("method", ["mc", "first-error"])
def test_consensus_with_a_judge_keeps_the_traces_it_confirms(policy, method):
    """The Qwen2.5-Math-PRM recipe: rollout labels kept where the judge names the same first error."""
    from conftest import ScriptedReader

    from prmsearch.judges import CriticJudge

    traces = [trace(steps) for steps, _ in CONSENSUS]
    judge = CriticJudge(ScriptedReader(arithmetic_judge))
    settings = {"k": 2, "method": method, "second_opinion": "judge", "judge": "scripted"}
    marked = label_traces(traces, policy, cfg(consensus="mark", **settings), judge=judge)
    # rollouts' first errors: none, none, 1, 1, 0; the judge's: none, 0, 1, (no verdict), 1
    assert [r["consensus"]["status"] for r in marked.records] == ["agree", "disagree", "agree", "invalid", "disagree"]
    assert [r["judge_first_error"] for r in marked.records] == [-1, 0, 1, None, 1]
    assert marked.summary["invalid_verdicts"] == 1 and marked.summary["marked_by_consensus"] == 2
    assert len(marked.traces) == 5
    dropped = label_traces(traces, policy, cfg(consensus="drop", **settings), judge=judge)
    assert [t.steps for t in dropped.traces] == [traces[i].steps for i in (0, 2)]
    assert dropped.summary["dropped_by_consensus"] == 3 and dropped.summary["consensus_counts"]["invalid"] == 1
    plain = label_traces(traces, policy, cfg(k=2, method=method))
    assert [r["labels"] for r in dropped.records] == [plain.records[i]["labels"] for i in (0, 2)]


# ---- code -----------------------------------------------------------------------------------------------------------

ADD = {"prompt": "def add(a, b):\n", "test": "def check(candidate):\n    assert candidate(2, 3) == 5\n"}
BIGGEST = {
    "prompt": "def biggest(xs):\n",
    "test": "def check(candidate):\n    assert candidate([1, 5, 2]) == 5\n",
}


def test_code_programs_are_labelled_by_their_unit_tests(bpe_tokenizer):
    from prmsearch.search import HFGenerator

    policy = HFGenerator(*bigram_policy(bpe_tokenizer, CODE_RULES, CODE_START))

    def code(problem, entry, lines):
        meta = {"task": "code", "test": problem["test"], "entry_point": entry}
        return Trace(problem["prompt"], lines, meta=meta)

    traces = [
        code(ADD, "add", ["    total = a + b", "    total = total * 1", "    return total"]),
        code(ADD, "add", ["    total = a + b", "    total = total - 1", "    total = total + 1", "    return total"]),
        code(BIGGEST, "biggest", ["    total = max(xs)", "    if xs:", "        total = min(xs)", "    return total"]),
    ]
    mc = label_traces(traces, policy, cfg(k=1, max_tokens=4, consensus="mark"))
    # rollouts finish each prefix with `return total`; the sandbox runs the tests on the whole program
    assert [r["labels"] for r in mc.records] == [
        [True, True, True],
        [True, False, True, True],  # not monotone: the bug is undone a line later
        [True, False, False, False],  # "if xs:" alone does not compile
    ]
    assert [r["outcome"] for r in mc.records] == [True, True, False]
    assert traces[2].steps[1] == mc.records[2]["completions"][1] == "    if xs:"  # indentation kept
    assert {r["consensus"]["status"] for r in mc.records} == {"unchecked"}
    fe = label_traces(traces, policy, cfg(k=1, max_tokens=4, method="first-error"))
    assert [r["labels"] for r in fe.records] == [[True] * 3, [True] * 4, [True, False, False, False]]
    assert [r["rollouts"] for r in fe.records] == [0, 0, 2]

    # programs sampled from the policy: steps are lines, indentation kept; graded by the sandbox
    problem = Problem("add", ADD["prompt"], None, {"task": "code", "test": ADD["test"], "entry_point": "add"})
    sampled = sample_traces([problem], policy, cfg(sample=2, max_tokens=4))
    assert [t.steps for t in sampled] == [[RETURN.rstrip()]] * 2 and sampled[0].meta["id"] == "add/0"
    assert [r["outcome"] for r in label_traces(sampled, policy, cfg(k=1, max_tokens=4)).records] == [False, False]


# ---- the CLI --------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def saved(tmp_path_factory, math_model):
    root = tmp_path_factory.mktemp("label")
    model, tok = math_model
    model.save_pretrained(root / "policy")
    tok.save_pretrained(root / "policy")
    rows = [
        {"question": "Q1: how many?", "solution": f"Start {OK}\n\nGo on {HALF}\n\nSlip {BAD}\n\nA: 13", "answer": 42},
        {"question": "Q2: how many?", "solution": f"3 + 4 = 8 {OK}\n\nThen 6 * 7 = 42 {OK}\n\nA: 42", "answer": 42},
        {"question": "Q3: how many?", "solution": f"Start {OK}\n\nA: 42", "answer": "#### 42"},
    ]
    (root / "traces.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    problems = [{"id": "p1", "question": "How many?", "answer": "42"}, {"id": "p2", "question": "And?", "answer": "13"}]
    (root / "problems.jsonl").write_text("".join(json.dumps(r) + "\n" for r in problems))
    return root


def label_args(saved, output, *extra):
    return [
        "label", "--policy", str(saved / "policy"), "--prompt-template", "plain", "--k", "4", "--max-tokens", "8",
        "--output", str(output), "--quiet", *extra,
    ]  # fmt: skip


def records(path):
    return [json.loads(line) for line in open(path)]


def test_cli_writes_labels_that_build_prm_reads(saved, tmp_path, capsys):
    from prmsearch.cli import main

    out = tmp_path / "labels.jsonl"
    argv = label_args(saved, out, "--input", str(saved / "traces.jsonl"), "--gold-field", "answer")
    assert main([*argv, "--solution-fields", "solution", "--consensus", "mark"]) == 0
    printed = capsys.readouterr().out
    rows = records(out)
    half = rows[0]["correct_rollouts"][1]  # "~": each of the 4 rollouts reaches 42 with probability 1/2
    assert [r["labels"] for r in rows] == [[True, half > 0, False, False], [True, True, True], [True, True]]
    assert [r["consensus"]["status"] for r in rows] == ["unconfirmed", "disagree", "agree"]
    assert "rollouts:           24" in printed and "marked 1" in printed and f"wrote {out}" in printed
    side = json.loads((tmp_path / "labels.jsonl.label.json").read_text())
    assert side["status"] == "done" and side["method"] == "mc" and side["k"] == 4 and side["rollouts"] == 24
    assert side["policy"] == str(saved / "policy") and side["generated_tokens"] == 48 and side["seed"] == 0
    assert side["consensus_counts"] == {"agree": 1, "disagree": 1, "unconfirmed": 1}
    assert side["config"]["temperature"] == 0.8

    # the gold answers looked up by prompt in a problem file instead: the same labels
    problems = tmp_path / "golds.jsonl"
    problems.write_text(
        "".join(json.dumps({"id": i, "problem": f"Q{i}: how many?", "answer": 42}) + "\n" for i in (1, 2, 3))
    )
    by_prompt = tmp_path / "by_prompt.jsonl"
    assert main(label_args(saved, by_prompt, "--input", str(saved / "traces.jsonl"), "--problems", str(problems))) == 0
    assert [r["labels"] for r in records(by_prompt)] == [r["labels"] for r in rows]

    traces = list(read_stepwise(str(out)))
    assert [t.step_labels for t in traces] == [[1.0, float(half > 0), 0.0, 0.0], [1.0, 1.0, 1.0], [1.0, 1.0]]
    built = tmp_path / "prm"
    tok = str(saved / "policy")
    assert (
        main(["build", "prm", "--source", "stepwise", "--input", str(out), "--tokenizer", tok, "--output", str(built)])
        == 0
    )
    from datasets import load_from_disk

    ds = load_from_disk(str(built))
    assert len(ds) == 3 and [sorted({v for v in row if v != -100}) for row in ds["labels"]] == [[0, 1], [1], [1]]

    # a YAML recipe, soft labels, and traces sampled from the policy (2 per problem of a problem file)
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(f"policy: {saved / 'policy'}\nlabels: soft\nk: 4\nsample: 2\nprompt_template: plain\n")
    sampled = tmp_path / "sampled.jsonl"
    argv = ["label", "--config", str(recipe), "--problems", str(saved / "problems.jsonl"), "--output", str(sampled)]
    assert main([*argv, "--quiet"]) == 0
    rows = records(sampled)
    assert [r["id"] for r in rows] == ["p1/0", "p1/1", "p2/0", "p2/1"]
    for r in rows:
        marker, answer = r["completions"]
        assert answer in ("A: 42", "A: 13") and r["sample_tokens"] == 3
        assert r["outcome"] == (answer == f"A: {r['gold']}") and r["labels"][1] == float(r["outcome"])
        assert r["labels"][0] == r["correct_rollouts"][0] / 4
        if marker != HALF:  # ✓ always reaches 42, ✗ always 13
            assert r["labels"][0] == float((marker == OK) == (r["gold"] == "42"))
    assert json.loads(sampled.with_name("sampled.jsonl.label.json").read_text())["generated_tokens"] == 12 + 4 * 4 * 2


def test_cli_refuses_bad_input_in_one_line(saved, tmp_path, capsys):
    from prmsearch.cli import main

    traces = str(saved / "traces.jsonl")
    out = tmp_path / "out.jsonl"

    def fails(*argv, expect):
        assert main(label_args(saved, out, *argv)) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "Traceback" not in err and expect in err, err
        return err

    fails("--input", traces, expect="traces.jsonl:1: no gold answer to grade rollouts against: give --gold-field")
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"question": "Q", "solution": "x", "answer": 1}) + "\n" + json.dumps({"question": "Q"}))
    fails("--input", str(bad), "--gold-field", "answer", expect="bad.jsonl:2: field 'solution': missing")
    bad.write_text(json.dumps({"question": "Q", "solution": "x"}) + "\n")
    fails("--input", str(bad), "--gold-field", "nope", expect="bad.jsonl:1: field 'nope': missing")
    fails("--input", traces, "--method", "first-error", "--labels", "soft", expect="labels=soft needs method=mc")
    fails("--input", traces, "--workers", "0", expect="workers must be an integer >= 1, got 0")
    fails("--input", traces, "--workers", "2", "--backend", "vllm", expect="with --backend vllm keep --workers 1")
    fails("--input", traces, "--gold-field", "answer", "--output", "x.json", expect="give a path ending in .jsonl")
    assert main(label_args(saved, traces, "--input", traces, "--gold-field", "answer")) == 2
    assert "would overwrite --input" in capsys.readouterr().err
    assert main(label_args(saved, out, "--input", traces, "--gold-field", "answer")) == 0
    capsys.readouterr()  # the model loader's progress bar
    fails("--input", traces, "--gold-field", "answer", expect="already holds labels: pass --resume")
    fails("--input", traces, "--gold-field", "answer", "--resume", "--k", "2", expect="k: 4 -> 2")
    from prmsearch.resume import exclusive

    with exclusive(out):  # another run labelling into the same file at this moment
        fails("--input", traces, "--gold-field", "answer", "--resume", expect="is being written by another run (pid")
    fails("--input", traces, "--gold-field", "answer", "--temperature", "nan", expect="temperature must be a finite")
    sidecar = tmp_path / "out.jsonl.label.json"
    kept = sidecar.read_bytes()
    sidecar.write_bytes(kept[: len(kept) // 2])
    fails("--input", traces, "--gold-field", "answer", "--resume", expect="out.jsonl.label.json: cannot read it (")
    sidecar.write_bytes(kept)
    assert main(label_args(saved, out, "--input", traces, "--gold-field", "answer", "--resume")) == 0  # nothing left
    assert len(records(out)) == 3


def test_cli_labels_with_a_judge_lm_and_no_policy(saved, tmp_path, capsys):
    """`--method judge --judge MODEL`: a causal LM loaded as the critic, no --policy. This tiny LM writes no verdict
    a parser accepts, so every trace is left out and counted, and the run still ends cleanly."""
    from prmsearch.cli import main

    out = tmp_path / "judged.jsonl"
    argv = ["label", "--method", "judge", "--judge", str(saved / "policy"), "--input", str(saved / "traces.jsonl")]
    assert main([*argv, "--gold-field", "answer", "--output", str(out), "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert f"judge:              {saved / 'policy'}; invalid verdicts 3" in printed
    assert not out.exists() or out.stat().st_size == 0  # nothing labelled
    dropped = records(tmp_path / "judged.jsonl.dropped.jsonl")
    assert [r["consensus"]["status"] for r in dropped] == ["invalid"] * 3 and all(r["rollouts"] == 0 for r in dropped)
    side = json.loads((tmp_path / "judged.jsonl.label.json").read_text())
    assert side["method"] == "judge" and side["invalid_verdicts"] == 3 and side["traces"] == 0

    def fails(*extra, expect):
        assert main(["label", "--input", str(saved / "traces.jsonl"), "--gold-field", "answer", *extra]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "Traceback" not in err and expect in err, err

    target = ["--output", str(tmp_path / "x.jsonl")]
    fails("--method", "judge", *target, expect="need a judge: --judge MODEL")
    fails("--second-opinion", "judge", "--judge", str(saved / "policy"), *target, expect="needs --consensus drop or")
    fails("--method", "mc", *target, expect="label needs --policy")
    fails("--method", "judge", "--judge", str(tmp_path / "nope"), *target, expect="nope")


def test_killed_run_resumes_to_the_uninterrupted_labels(saved, tmp_path):
    from prmsearch.cli import main

    marks = [OK, HALF, BAD]
    rows = []
    for i in range(40):
        steps = [f"{i} + {j} = {i + j + (j == 2)} {marks[(i * 7 + j) % 3]}" for j in range(4)]
        rows.append({"question": f"Problem {i}?", "solution": "\n\n".join([*steps, "A: 42"]), "answer": 42})
    data = tmp_path / "many.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    flags = ["--input", str(data), "--gold-field", "answer", "--consensus", "drop", "--batch-traces", "1", "--k", "8"]

    whole = tmp_path / "whole.jsonl"
    assert main(label_args(saved, whole, *flags)) == 0
    killed = tmp_path / "killed.jsonl"
    proc = subprocess.Popen(
        [sys.executable, "-m", "prmsearch", *label_args(saved, killed, *flags)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if killed.exists() and sum(1 for _ in open(killed)) >= 2:
            break
        time.sleep(0.01)
    assert proc.poll() is None, "the run ended before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    kept, dropped = records(whole), records(f"{whole}.dropped.jsonl")
    assert 2 <= len(records(killed)) < len(kept) and len(kept) + len(dropped) == 40
    with open(killed, "a") as f:  # as if killed in the middle of a write: a torn last line
        f.write('{"prompt": "Problem 39?", "completions": ["39 + 0 =')
    # the resumed part decodes in other batches (--generate-batch changes speed, never labels)
    assert main([*label_args(saved, killed, *flags), "--resume", "--generate-batch", "3"]) == 0
    assert killed.read_bytes() == whole.read_bytes()
    assert open(f"{killed}.dropped.jsonl", "rb").read() == open(f"{whole}.dropped.jsonl", "rb").read()
    before, after = (json.loads(open(f"{p}.label.json").read()) for p in (whole, killed))
    for summary in (before, after):
        for key in ("seconds", "resumed", "output", "config"):
            summary.pop(key)
    assert before == after and before["dropped_by_consensus"] == len(dropped) > 0


def test_workers_take_no_models_loaded_here(saved, policy, tmp_path):
    from prmsearch.label import run_label

    split = cfg(workers=2, input=str(saved / "traces.jsonl"), gold_field="answer", output=str(tmp_path / "o.jsonl"))
    with pytest.raises(ValueError, match="loads the models in every worker process"):
        run_label(split, generator=policy)


def test_generate_batch_reaches_the_policy(saved):
    from prmsearch.search.load import load_generator

    assert load_generator(cfg(policy=str(saved / "policy"), generate_batch=3)).batch_size == 3
    with pytest.raises(ValueError, match="generate_batch"):
        cfg(generate_batch=0)


# ---- split over worker processes (--workers) -------------------------------------------------------------------------


def sidecar_without_timing(path, *also):
    summary = json.loads(open(f"{path}.label.json").read())
    for key in ("seconds", "output"):
        summary.pop(key)
    for key in ("workers", "output"):
        summary["config"].pop(key)
    for key in also:
        summary.pop(key)
    return summary


def leftovers(folder):
    """Part files (and their locks) a split run must not leave once it has merged them."""
    return sorted(p.name for p in folder.iterdir() if ".shard-" in p.name)


def test_workers_write_the_bytes_one_process_writes(saved, tmp_path):
    """Traces of 12 problems (two each, apart in the file, and one without steps) split over 2 spawned workers, each
    taking every 2nd problem and loading the policy itself: the output, the dropped file and the summary (counts of
    what was left out included) are those of one process, the parts merged in input order."""
    from prmsearch.cli import main

    marks = [OK, HALF, BAD]
    rows = [{"question": "Blank?", "solution": "\n\n", "answer": 42}]
    for i in range(24):
        steps = [f"{i} + {j} = {i + j + (j == i % 3)} {marks[(i + j) % 3]}" for j in range(3)]
        rows.append({"question": f"Sum {i % 12}?", "solution": "\n\n".join([*steps, "A: 42"]), "answer": 42})
    data = tmp_path / "traces.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    flags = ["--input", str(data), "--gold-field", "answer", "--consensus", "drop", "--batch-traces", "4"]
    one, two = tmp_path / "one" / "labels.jsonl", tmp_path / "two" / "labels.jsonl"
    assert main(label_args(saved, one, *flags)) == 0
    assert main(label_args(saved, two, *flags, "--workers", "2")) == 0
    assert two.read_bytes() == one.read_bytes()
    assert dropped_file(two).read_bytes() == dropped_file(one).read_bytes()
    kept, dropped = records(one), records(dropped_file(one))
    assert len(kept) + len(dropped) == 24 and kept and dropped
    lines = [int(r["source"].rsplit(":", 1)[1]) for r in kept]
    assert lines == sorted(lines)  # input order, though worker 0 had "Sum 0?", worker 1 "Sum 1?", ...
    assert sidecar_without_timing(two) == sidecar_without_timing(one)
    assert sidecar_without_timing(one)["dropped"] == {"no_steps": 1}  # counted by the worker that had it
    assert json.loads(open(f"{two}.label.json").read())["config"]["workers"] == 2
    assert leftovers(two.parent) == []


def dropped_file(path):
    from prmsearch.label.outputs import dropped_path

    return dropped_path(path)


def test_killed_split_run_resumes_to_the_labels_of_one_process(saved, tmp_path, capsys):
    """A 2-worker run (--sample) whose parent is SIGKILLed: its workers end with it (not label their whole share
    for nobody), a resume is refused while a part is still being written, and `--resume --workers 1` (another
    count: a setting a resume may change) labels what the parts lack and merges all into the one-process files."""
    from prmsearch.cli import main
    from prmsearch.files import read_rows
    from prmsearch.label.outputs import part_files
    from prmsearch.resume import exclusive

    problems = tmp_path / "problems.jsonl"
    rows = [{"id": f"q{i}", "question": f"Question {i}?", "answer": "42" if i % 3 else "13"} for i in range(40)]
    problems.write_text("".join(json.dumps(r) + "\n" for r in rows))
    flags = ["--problems", str(problems), "--sample", "2", "--method", "first-error", "--batch-traces", "2"]
    whole = tmp_path / "whole.jsonl"
    assert main(label_args(saved, whole, *flags)) == 0
    assert [r["id"] for r in records(whole)][:4] == ["q0/0", "q0/1", "q1/0", "q1/1"]  # q0 and q1: other workers

    killed = tmp_path / "split" / "labels.jsonl"
    command = [sys.executable, "-m", "prmsearch", *label_args(saved, killed, *flags, "--workers", "2")]
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.time() + 120
        while time.time() < deadline and proc.poll() is None:
            if any(len(read_rows(p)) >= 4 for p in part_files(killed)):
                break
            time.sleep(0.01)
        assert proc.poll() is None, "the run ended before it could be killed"
        os.kill(proc.pid, signal.SIGKILL)  # the parent only: its workers are orphans now
        proc.wait()
        deadline = time.time() + 30  # a worker that outlives its run by more is an orphan labelling for nobody
        while time.time() < deadline and group_alive(proc.pid):
            time.sleep(0.05)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # whatever is left of the run's process group
    parts = [p for p in part_files(killed) if p.exists()]
    written = sum(len(read_rows(p)) + len(read_rows(dropped_file(p))) for p in parts)
    assert 4 <= written < 60, written  # each orphan ended within a chunk or two of its 40 samples
    assert not killed.exists() or killed.stat().st_size == 0  # nothing merged yet
    with open(parts[-1], "a") as f:  # as if killed in the middle of a write: a torn last line
        f.write('{"prompt": "Question 39?", "completions": ["')
    resume = [*label_args(saved, killed, *flags), "--resume", "--workers", "1"]
    with exclusive(parts[0]):  # a worker of the killed run still writing its part
        assert main(resume) == 2
    assert "is being written by another run" in capsys.readouterr().err
    assert main(resume) == 0
    assert killed.read_bytes() == whole.read_bytes()
    assert sidecar_without_timing(killed, "resumed") == sidecar_without_timing(whole, "resumed")
    assert leftovers(killed.parent) == []


def group_alive(group):
    """Whether a process of process group `group` still runs (Linux: /proc; zombies do not count)."""
    for stat in os.listdir("/proc"):
        try:
            fields = open(f"/proc/{stat}/stat").read().rpartition(")")[2].split()
        except (OSError, ValueError):
            continue
        if stat.isdigit() and fields[0] != "Z" and int(fields[2]) == group:
            return True
    return False
