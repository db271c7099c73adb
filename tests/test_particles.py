"""Particle filtering and particle Gibbs: resampling in proportion to softmax(logit(score) / T), the counts a
scripted policy and a table PRM give, and the reference particle that Gibbs keeps. (On a real tiny policy and PRM,
test_search runs them with every strategy: a well-formed tree, empty caches after, batched equal to alone.)"""

import math
import random
from collections import Counter

import pytest
from test_search import SMALL, ScriptedPolicy, TableScorer

from prmsearch.records import Problem
from prmsearch.search import SearchError, SearchParams, run_search
from prmsearch.search.particles import resample, resampling_probs


def test_resampling_probabilities_are_a_softmax_of_the_logits():
    # odds 2 : 1 : 1 at T = 1; at T = 0.5 the odds square (4 : 1 : 1); a particle without a score gets 0
    assert resampling_probs([2 / 3, 0.5, 0.5, None], 1.0) == pytest.approx([0.5, 0.25, 0.25, 0.0])
    assert resampling_probs([2 / 3, 0.5, 0.5], 0.5) == pytest.approx([4 / 6, 1 / 6, 1 / 6])
    assert resampling_probs([None, None], 1.0) == [0.0, 0.0]
    assert resampling_probs([1.0, 0.0], 1.0)[1] > 0, "clamped: a score of 0 is unlikely, not impossible"


def test_resampling_draws_in_proportion_to_the_probabilities():
    probs = [0.5, 0.3, 0.15, 0.05]
    counts = Counter(resample(probs, 200_000, random.Random(0), "multinomial"))
    for i, p in enumerate(probs):
        assert counts[i] / 200_000 == pytest.approx(p, abs=0.005)
    # systematic: N evenly spaced points, so a particle of weight w gets floor(N w) or ceil(N w) copies
    for seed in range(50):
        counts = Counter(resample(probs, 8, random.Random(seed), "systematic"))
        for i, p in enumerate(probs):
            assert math.floor(8 * p) <= counts[i] <= math.ceil(8 * p), (seed, counts)
    assert resample([0.5, 0.25, 0.25], 4, random.Random(3), "systematic") == [0, 0, 1, 2]
    with pytest.raises(SearchError, match="resampling"):
        resample(probs, 2, random.Random(0), "stratified")


def scripted(strategy, table, policy=None, **params):
    params = {"budget": 4, "max_steps": 5, "agg": "last", "final": "best_of_n", "resampling": "systematic", **params}
    (st,) = run_search(
        [Problem("p", "Q?")], policy or ScriptedPolicy(depth=2), TableScorer(table), strategy, SearchParams(**params),
        prompt_template="plain",
    )  # fmt: skip
    return st


def test_a_particle_is_copied_in_proportion_to_its_weight_and_each_copy_grows_its_own_step():
    """First steps a, b, c, d scored 2/3, 1/2, 1/2, ~0: weights 1/2, 1/4, 1/4, ~0, so systematic resampling of 4
    keeps a twice, b and c once, d never; a's two copies grow two different next steps (aa, ab), b and c one each.
    The second steps end the solution; the final population is drawn from them by their own scores."""
    table = {"a": 2 / 3, "b": 0.5, "c": 0.5, "d": 1e-9, "aa": 0.9, "ab": 0.2, "ba": 0.6, "ca": 0.6}
    policy = ScriptedPolicy(depth=2)
    st = scripted("particle_filter", table, policy)
    tree = st.tree
    kids = {tree.nodes[i].text: [tree.nodes[j].text for j in tree.children.get(i, [])] for i in tree.children[0]}
    assert kids == {"a": ["aa", "ab"], "b": ["ba"], "c": ["ca"], "d": []}
    assert policy.drawn == 8, "each particle draws as many next steps as it has copies, no more"
    assert len(st.candidates) == 4 and all(n.complete for n in st.candidates)
    assert st.chosen is not None and st.chosen.text == "aa"
    # at a high temperature the weights flatten: every first step is kept once
    flat = scripted("particle_filter", table, pf_temperature=1000.0)
    assert sorted(len(flat.tree.children.get(i, [])) for i in flat.tree.children[0]) == [1, 1, 1, 1]


def test_particle_gibbs_keeps_its_reference_particle():
    table = {"a": 0.7, "b": 0.5, "c": 0.5, "d": 0.3, "aa": 0.9, "ab": 0.4, "ba": 0.6, "ca": 0.5, "da": 0.5}
    for iterations in (2, 3):
        st = scripted("particle_gibbs", table, iterations=iterations, resampling="multinomial")
        (last,) = [n for n in st.tree.nodes if n.meta.get("reference") == iterations - 1]  # the pass it was drawn
        assert last in st.candidates, "the last pass's reference is in its final population"
        # each pass after the first grows N-1 fresh first steps beside the reference
        assert len(st.tree.children[0]) == 4 + 3 * (iterations - 1)


class ChangingScorer(TableScorer):
    """A table PRM whose scores change after its first `calls` score calls (one pass of the filter here), so the
    second pass finds the reference worse than what it grows itself."""

    def __init__(self, first, later, calls):
        super().__init__(first)
        self.later, self.calls = later, calls

    def score(self, requests):
        self.calls -= 1
        if self.calls < 0:
            self.table = self.later
        return super().score(requests)


def test_the_reference_stays_even_where_every_other_particle_outweighs_it():
    """T = 0.01 makes resampling an argmax. Pass 1 keeps only a, then only aa: aa is the reference. In pass 2 the
    PRM has changed its mind (aa 0.01, ab 0.99): the 3 fresh particles all end on ab, and the reference (its old
    score 0.9, far below 0.99) is kept only because particle Gibbs keeps it."""
    first = {"a": 0.9, "b": 0.1, "c": 0.1, "d": 0.1, "aa": 0.9, "ab": 0.1, "ac": 0.1, "ad": 0.1}
    later = {**first, "aa": 0.01, "ab": 0.99}
    (st,) = run_search(
        [Problem("p", "Q?")], ScriptedPolicy(depth=2), ChangingScorer(first, later, calls=2), "particle_gibbs",
        SearchParams(budget=4, max_steps=5, agg="last", final="best_of_n", pf_temperature=0.01, iterations=2),
        prompt_template="plain",
    )  # fmt: skip
    (ref,) = [n for n in st.tree.nodes if n.meta.get("reference") == 1]
    assert ref.text == "aa" and ref.score == pytest.approx(0.9)
    assert sorted(n.text for n in st.candidates) == ["aa", "ab", "ab", "ab"] and ref in st.candidates
    assert st.chosen.text == "ab"


def test_bad_particle_settings_are_refused():
    for bad in ({"pf_temperature": 0.0}, {"iterations": 0}, {"resampling": "stratified"}):
        with pytest.raises(SearchError):
            SearchParams(**{**SMALL, **bad}).check()
