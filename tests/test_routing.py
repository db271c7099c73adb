"""Compute-optimal routing: the fit picks, per difficulty bin, the (strategy, N) that gets the most training problems
right within the budget; `routed` follows the table (the probe's difficulty, the bin's choice, a whole-sample choice
keeping the probe's samples); `route fit` and `search --strategy routed` from the command line."""

import json

import pytest
from test_search import cli_args, policy, prm, problems, saved  # noqa: F401

from prmsearch.search import SearchError, SearchParams, StepScorer, run_search
from prmsearch.search.route_fit import fit_routing, format_fit
from prmsearch.search.routing import RoutingTable


def rec(pid, strategy, n, correct, tokens, mean_score=None):
    row = {"problem_id": pid, "strategy": strategy, "n": n, "correct": correct, "generated_tokens": tokens}
    if mean_score is not None:
        row.update(mean_score=mean_score, candidates=n)
    return row


def training():
    """20 problems: q0-q9 easy (the probe's samples score 0.9: difficulty 0.1), q10-q19 hard (0.3: 0.7).
    best_of_n@4 (the probe, 400 tokens) solves the easy ones only; beam@16 (1600) solves everything but q0-q2
    (search hurts some easy problems); majority@16 (1600) solves the easy ones and q10-q12."""
    rows = []
    for i in range(20):
        easy = i < 10
        rows.append(rec(f"q{i}", "best_of_n", 4, easy, 400, 0.9 if easy else 0.3))
        rows.append(rec(f"q{i}", "beam", 16, i >= 3, 1600))
        rows.append(rec(f"q{i}", "majority", 16, easy or i < 13, 1600))
    return rows


def test_the_fit_sends_each_difficulty_where_it_pays():
    # budget 1200 a problem: the probe for everyone (400) and beam (1600) on the hard half: (10*400 + 10*2000)/20
    table = fit_routing(training(), 1200, probe=("best_of_n", 4), bins=2)
    assert table.edges == [0.7] and table.choices == [("best_of_n", 4), ("beam", 16)]
    assert table.choose(0.1) == ("best_of_n", 4) and table.choose(0.7) == ("beam", 16)
    assert table.fit["accuracy"] == 1.0 and table.fit["tokens"] == 1200.0
    assert table.fit["single_options"]["beam@16"] == {"accuracy": 0.85, "tokens": 1600.0}
    text = format_fit(table)
    assert "difficulty < 0.700: best_of_n@4 (10/10 right)" in text and "routed: accuracy 1.000" in text
    # at 1000 beam does not fit; majority@16 keeps the probe's 4 samples and draws 12 more (1600 in all)
    poorer = fit_routing(training(), 1000, probe=("best_of_n", 4), bins=2)
    assert poorer.choices == [("best_of_n", 4), ("majority", 16)] and poorer.fit["accuracy"] == 0.65
    with pytest.raises(SearchError, match="cheapest costs 400.0"):
        fit_routing(training(), 100, probe=("best_of_n", 4), bins=2)
    with pytest.raises(SearchError, match="no weighted_best_of_n@4 results"):
        fit_routing(training(), 1000, probe=("weighted_best_of_n", 4))


def test_a_table_round_trips_and_a_bad_one_is_refused(tmp_path):
    table = RoutingTable(4, [0.3, 0.6], [("majority", 4), ("best_of_n", 16), ("beam", 16)], 900.0, {"problems": 3})
    back = RoutingTable.load(table.save(tmp_path / "t.json"))
    assert back == table and back.choose(0.45) == ("best_of_n", 16)
    (tmp_path / "bad.json").write_text(json.dumps({"probe": 4, "edges": [0.5], "choices": [{"strategy": "beam"}]}))
    for bad in (tmp_path / "bad.json", tmp_path / "missing.json"):
        with pytest.raises(SearchError, match="route fit"):
            RoutingTable.load(bad)


def routed(policy, prm, table_path, **params):  # noqa: F811
    params = {"max_steps": 4, "max_step_tokens": 16, "max_tokens": 64, "seed": 3, "width": 2, **params}
    return run_search(
        problems(3), policy, StepScorer(prm), "routed", SearchParams(route_table=str(table_path), **params),
        prompt_template="plain",
    )  # fmt: skip


def test_routed_follows_the_table(policy, prm, tmp_path):  # noqa: F811
    # the tiny PRM scores everything about 0.42: every difficulty is about 0.58, above 0.5 and below 0.9
    RoutingTable(4, [0.5], [("beam", 4), ("best_of_n", 8)]).save(tmp_path / "sample.json")
    RoutingTable(4, [0.9], [("beam", 4), ("best_of_n", 8)]).save(tmp_path / "beam.json")
    for st in routed(policy, prm, tmp_path / "sample.json"):
        probe = [st.tree.nodes[i] for i in st.tree.children[0] if st.tree.nodes[i].meta.get("probe")]
        scores = [n.score for n in probe if n.complete]
        assert st.info["difficulty"] == pytest.approx(1 - sum(scores) / len(scores), abs=1e-4)
        assert st.info["route"] == "best_of_n@8"
        assert len(probe) == 4 and len(st.tree.children[0]) == 8, "the probe's 4 samples and 4 more"
        assert {n.id for n in st.candidates} == {n.id for n in st.tree.nodes[1:] if n.complete}
        assert st.chosen.score == max(n.score for n in st.candidates)
    states = routed(policy, prm, tmp_path / "beam.json")
    assert {st.info["route"] for st in states} == {"beam@4"}
    assert any(n.depth >= 2 for st in states for n in st.tree.nodes), "beam grew steps below the first"
    assert all(not n.meta.get("probe") for st in states for n in st.candidates), "beam picks among its own"
    with pytest.raises(SearchError, match="route-table"):
        run_search(problems(1), policy, StepScorer(prm), "routed", SearchParams(), prompt_template="plain")


def test_route_fit_and_a_routed_search_from_the_command_line(saved, tmp_path, capsys):  # noqa: F811
    from prmsearch.cli import main

    train = tmp_path / "train"
    train.mkdir()
    (train / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in training()))
    table = tmp_path / "route.json"
    argv = [
        "route",
        "fit",
        "--runs",
        str(train),
        "--budget",
        "1200",
        "--bins",
        "2",
        "--probe",
        "best_of_n@4",
        "--output",
        str(table),
    ]
    assert main(argv) == 0
    assert "best_of_n@4 (10/10 right)" in capsys.readouterr().out
    assert RoutingTable.load(table).choices == [("best_of_n", 4), ("beam", 16)]
    for bad, message in (
        (["--budget", "0"], "--budget"),
        (["--probe", "best_of_n"], "not STRATEGY@N"),
        (["--options", "mcts@4"], "no training results for mcts@4"),
    ):
        assert main([*argv, *bad]) == 2
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1, err
    # a real search follows a table; each row says which strategy and N its problem got
    RoutingTable(2, [0.9], [("best_of_n", 4), ("beam", 2)]).save(table)
    out = tmp_path / "run"
    assert main(cli_args(saved, out, "--strategy", "routed", "--route-table", str(table), "--n", "1,4")) == 0
    rows = [json.loads(line) for line in open(out / "results.jsonl")]
    assert len(rows) == 6 and all(r["n"] == 1 for r in rows), "routed runs once, whatever --n says"
    for r in rows:  # no finished probe sample: difficulty 1
        assert r["route"] == ("beam@2" if r["difficulty"] >= 0.9 else "best_of_n@4"), r
    counts = {route: sum(r["route"] == route for r in rows) for route in ("best_of_n@4", "beam@2")}
    got = ", ".join(f"{route} for {c}" for route, c in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])) if c)
    assert f"routed: {got} problems" in capsys.readouterr().out
    assert main(cli_args(saved, tmp_path / "none", "--strategy", "routed")) == 2
    assert "--route-table" in capsys.readouterr().err
