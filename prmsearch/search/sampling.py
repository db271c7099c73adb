"""Strategies over whole sampled solutions: greedy decoding, majority vote, best-of-N and weighted best-of-N.

The N samples of a problem come from one seed per problem and sample index, so majority, best-of-N and weighted
best-of-N at the same N and seed judge the very same samples (the comparison search-and-learn reports), and
best-of-1 is exactly one plain sample. A sample cut by `max_tokens` is never a candidate.
"""

from __future__ import annotations

from .engine import Search, State


def greedy(search: Search, states: list[State]) -> None:
    """One solution at temperature 0 (chain-of-thought decoding); nothing is scored."""
    children = search.expand([(st, st.tree.root, 1) for st in states], whole=True, temperature=0.0)
    for st, (node,) in zip(states, children, strict=True):
        st.candidates = [node] if node.complete else []
        st.chosen = st.candidates[0] if st.candidates else None
        if st.chosen is not None:
            st.chosen.selected = True


def _sample(search: Search, states: list[State]) -> None:
    children = search.expand([(st, st.tree.root, search.params.budget) for st in states], whole=True)
    for st, nodes in zip(states, children, strict=True):
        st.candidates = [n for n in nodes if n.complete]


def majority_vote(search: Search, states: list[State]) -> None:
    """The most common answer among N samples (answers grouped by math equivalence); no scorer needed."""
    _sample(search, states)
    search.select_answer(states, "majority", scores="own")


def best_sample(search: Search, states: list[State]) -> None:
    """The highest-scoring of N samples (PRM: step scores aggregated by `agg`; ORM / BT: the model's score)."""
    _score(search, states)
    search.select_answer(states, "best_of_n", scores="own")


def weighted_vote(search: Search, states: list[State]) -> None:
    """The answer whose samples' scores sum highest: votes weighted by the reward model."""
    _score(search, states)
    search.select_answer(states, "weighted_best_of_n", scores="own")


def _score(search: Search, states: list[State]) -> None:
    """Sample and score; each problem's `mean_score` (its samples' mean score: how sure the reward model is of
    them, the difficulty routing.py estimates) goes into its result row."""
    _sample(search, states)
    search.score_solutions([(st, n) for st in states for n in st.candidates])
    for st in states:
        scores = [n.score for n in st.candidates if n.score is not None]
        st.info["mean_score"] = round(sum(scores) / len(scores), 6) if scores else None
