"""Step-level beam search and diverse verifier tree search (DVTS), one loop with two ways of keeping nodes.

Both start by sampling N first steps and then, at every depth, expand each kept node into M (`width`) next steps
and score them with the PRM:
- beam keeps the best N/M of all children of a problem (one pool, N/M slots);
- DVTS splits the N first steps into N/M subtrees of M and keeps the best child within each subtree (N/M pools
  of one slot), so the subtrees cannot collapse onto one line of reasoning (Beeching et al., 2024).
A child that ends the solution fills its slot for good; the search of a pool stops when its slots are filled or at
`max_steps`, where the last expansion writes the rest of the solution. With one subtree (N = M) the two are the
same search, node for node. Children are ranked by their path score (`agg`), ties by their own step's score, then
by sample order: under `min` every child no worse than its path's weakest step ties with its siblings, and without
the second key the search would keep the first-drawn child, whatever the PRM thought of it (on GSM-Symbolic with a
PRM whose first steps scored ~0.13, beam@4 kept sample 0 at every step and ran its paths to `max_steps`).
`lookahead` ranks a child by the score of its greedy continuation k steps ahead.
`filter_duplicates` (search-and-learn's) keeps one of the children of a problem whose paths are the same text, the
best-ranked, so two slots never hold one line of reasoning; the others are marked `meta["duplicate"]`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .engine import Search, State
from .tree import Node


@dataclass
class _Pool:
    slots: int
    active: list[Node] = field(default_factory=list)
    done: list[Node] = field(default_factory=list)


def beam(search: Search, states: list[State]) -> None:
    _tree_search(search, states, subtrees=False)


def dvts(search: Search, states: list[State]) -> None:
    _tree_search(search, states, subtrees=True)


def _tree_search(search: Search, states: list[State], subtrees: bool) -> None:
    search.needs_step_scorer("dvts" if subtrees else "beam search")
    p = search.params
    m = p.beam_width()
    k = p.budget // m
    pools = {st.uid: [_Pool(1) for _ in range(k)] if subtrees else [_Pool(k)] for st in states}
    pool_of: dict[tuple[int, int], int] = {}  # (state, node) -> pool index
    for depth in range(p.max_steps):
        work: list[tuple[State, Node, int]] = []
        for st in states:
            if depth == 0:
                work.append((st, st.tree.root, p.budget))
                continue
            for i, pool in enumerate(pools[st.uid]):
                for node in pool.active:
                    work.append((st, node, m))
                    pool_of[st.uid, node.id] = i
        if not work:
            break
        children = search.expand(work, whole=depth == p.max_steps - 1)
        search.score_steps([(st, c) for (st, _, _), cs in zip(work, children, strict=True) for c in cs])
        rank = _lookahead(search, [(st, c) for (st, _, _), cs in zip(work, children, strict=True) for c in cs])
        by_pool: dict[tuple[int, int], list[Node]] = {}
        for (st, parent, _), cs in zip(work, children, strict=True):
            for j, c in enumerate(cs):
                i = (j // m if subtrees else 0) if parent.parent is None else pool_of[st.uid, parent.id]
                by_pool.setdefault((st.uid, i), []).append(c)
        state_of = {st.uid: st for st in states}
        seen: dict[int, set[tuple[str, ...]]] = {st.uid: set() for st in states}  # paths kept at this depth
        for (uid, i), cands in by_pool.items():
            st, pool = state_of[uid], pools[uid][i]
            ranked = sorted(
                (c for c in cands if (c.alive or c.complete) and rank[st.uid, c.id] is not None),
                key=lambda c: (-rank[st.uid, c.id], -c.score, c.path),  # type: ignore[operator]
            )
            if p.filter_duplicates:
                ranked = _distinct(st, ranked, seen[uid])
            kept = ranked[: pool.slots - len(pool.done)]
            if p.filter_duplicates:
                seen[uid].update(tuple(st.tree.steps(c)) for c in kept)
            for c in kept:
                c.selected = True
            search.release(st, [c for c in cands if c not in kept] + pool.active)
            pool.done += [c for c in kept if c.complete]
            pool.active = [c for c in kept if c.alive]
        for st in states:  # a pool none of whose children survived is finished
            for i, pool in enumerate(pools[st.uid]):
                if (st.uid, i) not in by_pool:
                    search.release(st, pool.active)
                    pool.active = []
    for st in states:
        st.candidates = [n for pool in pools[st.uid] for n in pool.done]
    search.select_answer(states, search.params.final)


def _distinct(state: State, ranked: list[Node], seen: set[tuple[str, ...]]) -> list[Node]:
    """`ranked` without the children whose path text is kept already or ranked higher; those are marked."""
    out, texts = [], set(seen)
    for c in ranked:
        text = tuple(state.tree.steps(c))
        if text in texts:
            c.meta["duplicate"] = True
            continue
        texts.add(text)
        out.append(c)
    return out


def _lookahead(search: Search, items: list[tuple[State, Node]]) -> dict[tuple[int, int], float | None]:
    """The score each child is ranked by: its path score, or with `lookahead` k the path score of its greedy
    continuation k steps further (the continuation is kept in the tree, marked, but never selected)."""
    rank = {(st.uid, c.id): search.path_score(st, c) if c.score is not None else None for st, c in items}
    if not search.params.lookahead:
        return rank
    frontier = [(st, c, c) for st, c in items if c.alive and c.score is not None]
    extra: list[tuple[State, Node]] = []
    for _ in range(search.params.lookahead):
        frontier = [(st, origin, node) for st, origin, node in frontier if node.alive]
        if not frontier:
            break
        kids = search.expand(
            [(st, node, 1) for st, _, node in frontier], temperature=0.0, salt="lookahead", lookahead=True
        )
        step = [(st, origin, ks[0]) for (st, origin, _), ks in zip(frontier, kids, strict=True)]
        search.score_steps([(st, kid) for st, _, kid in step])
        for st, origin, kid in step:
            extra.append((st, kid))
            if kid.score is not None:
                rank[st.uid, origin.id] = search.path_score(st, kid)
        frontier = step
    for st, kid in extra:
        search.release(st, [kid])
    return rank
