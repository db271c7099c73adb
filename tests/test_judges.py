"""Pairwise judging with scripted judges whose verdicts are known: a fair judge (prefers the larger final number),
a position-biased one (always "A"), and one that rambles without a verdict. Both orders are asked, flips become
ties, invalid outputs are counted, and the Bradley-Terry fit ranks candidates by the fair judge's preference."""

import re

import pytest
from conftest import ScriptedReader, chains_critic, continuation

from prmsearch.judges import PairwiseJudge, bradley_terry, parse_pairwise
from prmsearch.judges.verdicts import majority
from prmsearch.search.generators import Completion

SOLUTION = re.compile(r"Solution A:\n(.*?)\n\nSolution B:\n(.*?)\n\n", re.S)


class ScriptedJudge:
    """A `Generator` whose verdict is a function of the two solutions it is shown."""

    tokenizer = None

    def __init__(self, rule):
        self.rule, self.calls = rule, []

    def generate(self, prompts, n=1, stop=None, max_tokens=256, temperature=1.0, top_p=1.0, seed=None):
        self.calls.append((len(prompts), temperature))
        out = []
        for p in prompts:
            a, b = SOLUTION.search(p).groups()
            text = continuation(p, self.rule(a, b))
            out.append([Completion(text, [0] * len(text.split()), "eos") for _ in range(n)])
        return out


def last_number(text):
    return int(re.findall(r"-?\d+", text)[-1])


def fair(a, b):
    return "Better: A" if last_number(a) > last_number(b) else "Better: B"


def test_verdicts_are_parsed_strictly():
    assert parse_pairwise("Better: A") == "A"
    assert parse_pairwise("I looked at both.\nbetter: solution (b).") == "B"
    assert parse_pairwise("**Better:** A") == "A"
    assert parse_pairwise("A is better") is None  # not a verdict line
    assert parse_pairwise("Better: A\nBetter: B") is None  # disagreeing lines
    assert parse_pairwise("Better: A or B") is None
    assert parse_pairwise("") is None
    assert majority(["A", "B", "A", None]) == "A"
    assert majority(["A", "B", None]) is None and majority([None, None]) is None


def test_a_fair_judge_agrees_across_orders():
    gen = ScriptedJudge(fair)
    judge = PairwiseJudge(gen)
    verdicts = judge.compare(["p", "p"], ["x = 3", "x = 9"], ["x = 7", "x = 2"])
    assert [v.winner for v in verdicts] == [1, 0]
    assert judge.stats["pairs"] == 2 and judge.stats["flips"] == 0 and judge.stats["invalid"] == 0
    assert gen.calls == [(4, 0.0)]  # both orders of both pairs in one call, at temperature 0


def test_a_position_biased_judge_gets_ties_and_flips_counted():
    judge = PairwiseJudge(ScriptedJudge(lambda a, b: "Better: A"))
    verdicts = judge.compare(["p"] * 3, ["1", "2", "3"], ["4", "5", "6"])
    assert [v.winner for v in verdicts] == [None] * 3 and all(v.flipped for v in verdicts)
    assert judge.stats["flips"] == 3 and judge.stats["invalid"] == 0
    assert judge.rank(["p"], [["1", "2", "3"]]) == [pytest.approx([0.0, 0.0, 0.0], abs=1e-9)]


def test_invalid_verdicts_are_counted_never_defaulted():
    rambling = ScriptedJudge(lambda a, b: "Both look fine to me." if "7" in a + b else fair(a, b))
    judge = PairwiseJudge(rambling)
    verdicts = judge.compare(["p", "p"], ["x = 7", "x = 5"], ["x = 1", "x = 1"])
    assert [(v.winner, v.invalid) for v in verdicts] == [(None, True), (0, False)]
    assert judge.stats["invalid"] == 1 and judge.stats["pairs"] == 2


def test_bradley_terry_ranks_a_transitive_tournament():
    outcomes = [(i, j, 1.0) for i in range(4) for j in range(i + 1, 4)]  # 0 beats everyone, 1 beats 2 and 3, ...
    theta = bradley_terry(4, outcomes)
    assert theta == sorted(theta, reverse=True) and len(set(theta)) == 4
    assert sum(theta) == pytest.approx(0.0, abs=1e-9)
    two = bradley_terry(2, [(0, 1, 1.0)] * 3)  # 3 wins of 0 over 1, plus the prior's half games against 1.0
    assert two[0] > 0 > two[1] and two[0] == pytest.approx(-two[1])
    assert bradley_terry(2, [(0, 1, 0.5)]) == pytest.approx([0.0, 0.0], abs=1e-9)


def test_rank_and_score_solutions_follow_the_fair_judge():
    judge = PairwiseJudge(ScriptedJudge(fair))
    cands = ["so 4", "so 11", "so 2", "so 8"]
    (theta,) = judge.rank(["p"], [cands])
    assert sorted(range(4), key=lambda i: -theta[i]) == [1, 3, 0, 2]
    assert judge.stats["pairs"] == 6
    got = judge.score_solutions(["p", "p", "q", "p", "q"], [["so 4"], ["so 11"], ["so 1"], [], ["so 9"]])
    assert got.scores[3] is None  # nothing to judge
    assert got.scores[1] > 0.5 > got.scores[0]
    assert got.scores[4] > 0.5 > got.scores[2]
    assert all(0 < s < 1 for s in got.scores if s is not None)


def test_settings_are_checked():
    with pytest.raises(ValueError, match="temperature > 0"):
        PairwiseJudge(ScriptedJudge(fair), samples=3)
    with pytest.raises(ValueError, match="2 problems, 1 firsts"):
        PairwiseJudge(ScriptedJudge(fair)).compare(["p", "q"], ["a"], ["b"])


# ---- pointwise and the step critic ----------------------------------------------------------------------------------


def test_parsers_of_pointwise_and_critic_verdicts():
    from prmsearch.judges import parse_critic, parse_pointwise

    assert parse_pointwise("Verdict: correct") == 1.0 and parse_pointwise("verdict: Incorrect.") == 0.0
    assert parse_pointwise("It is correct") is None and parse_pointwise("Verdict: correct\nVerdict: incorrect") is None
    assert parse_pointwise("Rating: 10/10", "rating") == 1.0 and parse_pointwise("Rating: 4", "rating") == 3 / 9
    assert parse_pointwise("Rating: 11", "rating") is None
    assert parse_critic("Earliest wrong step: 2", 3) == 1 and parse_critic("Earliest wrong step: none", 3) == -1
    assert parse_critic("Earliest wrong step: 4", 3) is None and parse_critic("step 2 is wrong", 3) is None


def test_pointwise_judge_scores_and_counts_invalid_verdicts():
    from prmsearch.judges import PointwiseJudge

    def rule(problem, solution):
        if "?" in solution:
            return "Hmm, hard to say."
        return "Verdict: correct" if solution.endswith("4") else "Verdict: incorrect"

    judge = PointwiseJudge(ScriptedReader(rule))
    got = judge.score_solutions(["2+2", "2+2", "2+2", "2+2"], [["2+2 = 4"], ["2+2 = 5"], ["2+2 = ?"], []])
    assert got.scores == [1.0, 0.0, 0.5, None]
    assert judge.stats["verdicts"] == 3 and judge.stats["invalid"] == 1
    with pytest.raises(ValueError, match="scale"):
        PointwiseJudge(ScriptedReader(rule), scale="stars")


def test_the_critic_gives_processbench_step_scores():
    from prmsearch.eval.processbench import Annotated, evaluate
    from prmsearch.judges import CriticJudge
    from prmsearch.tasks.chains import generate

    critic = CriticJudge(ScriptedReader(chains_critic()))
    items = []
    for p in generate("test", 40)[:20]:
        steps = list(p.meta["steps"])
        left, value = steps[1].rsplit("= ", 1)
        items += [
            Annotated(f"{p.id}r", p.prompt, steps, -1),
            Annotated(f"{p.id}w", p.prompt, [steps[0], f"{left}= {int(value) + 1}", *steps[2:]], 1),
        ]
    assert critic.score_steps_batch([items[1].problem], [items[1].steps])[0][:3] == [1.0, 0.0, 0.0]
    assert evaluate(critic, items, threshold=0.5)["processbench_f1"] == 1.0
    bad = CriticJudge(ScriptedReader(lambda p, s: "I cannot tell."))
    assert bad.score_steps_batch(["q"], [["a", "b"]]) == [[0.5, 0.5]] and bad.stats["invalid"] == 1


def test_the_critic_steers_beam_search_over_the_embedded_policy():
    from prmsearch.judges import CriticJudge
    from prmsearch.search.engine import Search, SearchParams
    from prmsearch.search.generators import HFGenerator
    from prmsearch.search.strategies import run_search
    from prmsearch.tasks.chains import generate

    problems = generate("test", 40)
    policy = HFGenerator.from_pretrained("embedded:policy", batch_size=256)
    params = SearchParams(budget=4, width=2, max_steps=8, max_step_tokens=24, max_tokens=80, temperature=1.0, agg="min")

    def accuracy(critic):
        states = run_search(problems, policy, critic, "beam", params, prompt_template="plain")
        grades = Search(policy, critic, params, prompt_template="plain").grade(states)
        return sum(bool(g.correct) for g in grades) / len(grades)

    truthful = CriticJudge(ScriptedReader(chains_critic()))
    blind = CriticJudge(ScriptedReader(lambda p, s: "Earliest wrong step: none"))
    good, base = accuracy(truthful), accuracy(blind)
    assert truthful.stats["verdicts"] > 0 and truthful.stats["invalid"] == 0
    # measured with the shipped policy: 0.775 against 0.275 (the previous policy: 0.875 against 0.325)
    assert good >= base + 0.3 and good >= 0.7, (good, base)


def test_prmsearch_search_takes_a_judge_in_place_of_a_reward_model(tmp_path, capsys):
    """`--judge MODEL --judge-protocol P`: a causal LM (here the embedded policy, a real one) judges best-of-N and,
    as the critic, steers beam search, through the ordinary search command."""
    import json

    from prmsearch.cli import main

    base = ["search", "--policy", "embedded:policy", "--dataset", "chains", "--limit", "2", "--max-steps", "6"]
    base += ["--max-step-tokens", "24", "--max-tokens", "80", "--prompt-template", "plain", "--quiet"]
    for protocol, strategy in (("pointwise", "best_of_n"), ("pairwise", "best_of_n"), ("critic", "beam")):
        out = tmp_path / protocol
        argv = [*base, "--judge", "embedded:policy", "--judge-protocol", protocol, "--strategy", strategy]
        assert main([*argv, "--n", "2", "--width", "2", "--output", str(out), "--device", "cpu"]) == 0, protocol
        rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
        assert len(rows) == 2 and all(r["strategy"] == strategy for r in rows)
    assert main([*base, "--judge", "embedded:policy", "--scorer", "embedded:prm", "--output", str(tmp_path / "x")]) == 2
    assert "not both" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # argparse's choices
        main([*base, "--judge", "embedded:policy", "--judge-protocol", "vibes", "--output", str(tmp_path)])
