"""Monte Carlo tree search over steps, with PRM scores as values (PUCT selection).

Each simulation walks from the root to a leaf, always taking the child with the highest
    Q(child) + puct * P(child) * sqrt(N(parent)) / (1 + N(child)),
where Q is the mean value backed up through the child (its own PRM path score until it is visited) and P is
uniform over the children that can still be searched. The leaf is expanded into M (`width`) next steps, scored by
the PRM; with `rollout` the best new step is continued to a full solution, whose path score is the value backed
up (and the solution a candidate), else the best new step's path score is. A leaf that ended the solution backs up
its own score. Every problem runs its simulations in lockstep with the others, so each simulation is one batched
generate and one batched score call for all problems. N (`budget`) is the number of simulations. Visits and
backed-up values are the nodes' `visits` / `value` fields, saved with the tree.
"""

from __future__ import annotations

import math

from .engine import Search, State
from .tree import Node


def mcts(search: Search, states: list[State]) -> None:
    search.needs_step_scorer("mcts")
    p = search.params
    width = min(p.width, p.budget)
    spent: set[tuple[int, int]] = set()  # (problem, node) with nothing left to search below
    for _ in range(p.budget):
        walks = [(st, _select(search, st, spent)) for st in states]
        walks = [(st, path) for st, path in walks if path is not None]
        if not walks:
            break
        values: dict[int, float | None] = {}
        leaves = [(st, path, path[-1] if path else st.tree.root) for st, path in walks]
        grow = [(st, leaf, width) for st, _, leaf in leaves if not leaf.complete]
        for st, _, leaf in leaves:
            if leaf.complete:
                values[st.uid] = search.path_score(st, leaf)
        children = search.expand(grow, whole=False)
        last = [(st, c) for (st, _, _), cs in zip(grow, children, strict=True) for c in cs]
        search.score_steps(last)
        best: list[tuple[State, Node]] = []
        for (st, _, _), cs in zip(grow, children, strict=True):
            scored = [c for c in cs if (c.alive or c.complete) and c.score is not None]
            if not scored:
                values[st.uid] = 0.0  # a dead end: every next step was cut or empty
                continue
            top = max(scored, key=lambda c: (search.path_score(st, c), [-i for i in c.path]))
            values[st.uid] = search.path_score(st, top)
            if p.rollout and top.alive:
                best.append((st, top))
        for st, end in _rollouts(search, best):
            if end is not None and end.score is not None:
                values[st.uid] = search.path_score(st, end)
        for st, path in walks:
            value = values.get(st.uid)
            for node in [st.tree.root, *path]:
                node.visits += 1
                node.value += value or 0.0
    for st in states:
        st.candidates = [n for n in st.tree.nodes if n.complete and n.score is not None]
    search.select_answer(states, p.final)


def _select(search: Search, st: State, spent: set[tuple[int, int]]) -> list[Node] | None:
    """The path below the root to the leaf this simulation grows or backs up (empty: the root itself, not yet
    expanded); None when nothing in the tree can be searched any more."""
    tree, path, node = st.tree, [], st.tree.root
    while True:
        kids = [tree.nodes[i] for i in tree.children.get(node.id, []) if not tree.nodes[i].meta.get("rollout")]
        if not kids:
            return path
        open_kids = [c for c in kids if (c.alive or c.complete) and c.score is not None and (st.uid, c.id) not in spent]
        if not open_kids:
            spent.add((st.uid, node.id))
            return _select(search, st, spent) if node.parent is not None else None
        explore = search.params.puct * math.sqrt(max(node.visits, 1)) / len(open_kids)
        node = max(open_kids, key=lambda c: _puct(search, st, c, explore))
        path.append(node)
        if node.complete:
            return path


def _puct(search: Search, st: State, child: Node, explore: float) -> tuple[float, tuple[int, ...]]:
    q = child.value / child.visits if child.visits else search.path_score(st, child)
    return (q + explore / (1 + child.visits), tuple(-i for i in child.path))  # ties: the first child


def _rollouts(search: Search, items: list[tuple[State, Node]]) -> list[tuple[State, Node | None]]:
    """Continue each node to a full solution (kept as one node marked `rollout`, a candidate if it completes) and
    score its steps; returns the node whose path score is the value, None when the rollout was cut."""
    if not items:
        return []
    kids = search.expand([(st, node, 1) for st, node in items], whole=True, salt="rollout", rollout=True)
    out = []
    for (st, _node), (kid,) in zip(items, kids, strict=True):
        out.append((st, kid if kid.complete else None))
    search.score_rollouts([(st, kid) for st, kid in out if kid is not None])
    return out
