"""search-and-learn recipes run as they are (`search/sal_recipe.py`), and beam search's `filter_duplicates`: on the
embedded policy and PRM, the bundled task."""

from __future__ import annotations

import json

import pytest
import yaml

from prmsearch.cli import main
from prmsearch.search import HFGenerator, SearchParams, load_scorer
from prmsearch.search.runner import SearchConfig
from prmsearch.search.strategies import run_search
from prmsearch.tasks import load_problems


def _recipe(tmp_path, **extra):
    values = {
        "approach": "beam_search", "n": 4, "beam_width": 2, "num_iterations": 8, "lookahead": 0,
        "agg_strategy": "min", "filter_duplicates": True, "temperature": 0.7, "max_tokens": 80, "seed": 3,
        "model_path": "embedded:policy", "prm_path": "embedded:prm", "dataset_name": "chains",
        "dataset_start": 2, "dataset_end": 5, "search_batch_size": 1, "sort_completed": True,
        "push_to_hub": False, "output_dir": str(tmp_path / "run"), **extra,
    }  # fmt: skip
    path = tmp_path / "sal.yaml"
    path.write_text(yaml.safe_dump({k: v for k, v in values.items() if v is not None}))  # None: left out
    return path


def test_a_search_and_learn_recipe_maps_key_by_key(tmp_path, capsys):
    cfg = SearchConfig.from_yaml(str(_recipe(tmp_path)))
    assert cfg.strategy == ["beam"] and cfg.n == [4] and cfg.width == 2 and cfg.max_steps == 8
    assert (cfg.agg, cfg.filter_duplicates, cfg.temperature, cfg.max_tokens, cfg.seed) == ("min", True, 0.7, 80, 3)
    assert (cfg.policy, cfg.scorer, cfg.dataset, cfg.start, cfg.limit) == (
        "embedded:policy",
        "embedded:prm",
        "chains",
        2,
        3,
    )
    assert cfg.batch_problems == 1 and cfg.output == str(tmp_path / "run")
    said = capsys.readouterr().err
    assert "search-and-learn key sort_completed: a tree search's answer is picked by --final" in said
    assert "push_to_hub" not in said  # false: nothing to say
    # what a recipe leaves out means what search-and-learn's defaults say, not ours
    dvts = SearchConfig.from_yaml(str(_recipe(tmp_path, approach="dvts", lookahead=None, agg_strategy=None)))
    assert dvts.strategy == ["dvts"] and dvts.agg == "last" and dvts.lookahead == 1
    bon = SearchConfig.from_yaml(str(_recipe(tmp_path, approach="best_of_n", prm_path="RLHFlow/Llama3.1-8B-PRM")))
    assert bon.strategy == ["best_of_n", "weighted_best_of_n", "majority"] and bon.scorer_adapter == "rlhflow"
    with pytest.raises(ValueError, match="approach 'mcts' is not search-and-learn's"):
        SearchConfig.from_yaml(str(_recipe(tmp_path, approach="mcts")))


def test_a_search_and_learn_recipe_runs_through_the_cli(tmp_path):
    recipe = _recipe(tmp_path)
    assert main(["search", "--config", str(recipe), "--quiet"]) == 0
    rows = [json.loads(line) for line in (tmp_path / "run" / "results.jsonl").read_text().splitlines()]
    expected = [p.id for p in load_problems("chains")[2:5]]
    assert [r["problem_id"] for r in rows] == expected and {r["strategy"] for r in rows} == {"beam"}


def _kept_repeats(states) -> int:
    """Selected nodes whose path text another selected node of the same problem and depth already has."""
    repeats = 0
    for st in states:
        seen = set()
        for node in st.tree.nodes:
            if node.selected and node.parent is not None:
                key = (len(node.path), tuple(st.tree.steps(node)))
                repeats += key in seen
                seen.add(key)
    return repeats


def test_filter_duplicates_keeps_one_of_each_path():
    """At a low temperature the tiny policy writes the same step twice: without the filter two beams hold one line
    of reasoning; with it none do, and each dropped child is marked."""
    policy = HFGenerator.from_pretrained("embedded:policy", device="cpu")
    scorer = load_scorer("embedded:prm", device="cpu")
    problems = load_problems("chains", limit=6)
    params = dict(budget=8, width=4, max_steps=8, max_step_tokens=24, max_tokens=80, temperature=0.2, seed=1)
    plain = run_search(problems, policy, scorer, "beam", SearchParams(**params))
    filtered = run_search(problems, policy, scorer, "beam", SearchParams(**params, filter_duplicates=True))
    assert _kept_repeats(plain) > 0
    assert _kept_repeats(filtered) == 0
    marked = sum(bool(n.meta.get("duplicate")) for st in filtered for n in st.tree.nodes)
    assert marked >= _kept_repeats(plain)
    print(f"kept repeats without the filter: {_kept_repeats(plain)}; children dropped as duplicates: {marked}")
