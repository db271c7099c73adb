"""The search tree of one problem: every step any strategy generated, kept with its score, parent and finish reason,
so a run can be inspected after the fact (`--save-trees`, `prmsearch show-tree`) and compute can be counted.

A node is one generated step (or, for best-of-N and majority, one whole sampled solution). Its `path` (child
indices from the root) names it independently of the order nodes were created in: seeds are derived from paths, so
the same node gets the same sample whether problems run batched or one at a time.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

COMPLETE, STEP, CUT, EMPTY = "eos", "stop", "length", "empty"


@dataclass
class Node:
    id: int
    parent: int | None
    path: tuple[int, ...]
    text: str = ""
    finish: str | None = None  # "stop": a step ended; "eos": the solution ended; "length": cut; "empty": no text
    score: float | None = None  # P(step correct) from a PRM, or a whole-solution score
    tokens: int = 0  # tokens the policy generated for this node
    selected: bool = False  # kept by the strategy (a beam, a subtree's best, an answer)
    visits: int = 0  # MCTS: simulations that went through this node
    value: float = 0.0  # MCTS: the sum of the values those simulations backed up
    meta: dict[str, Any] = field(default_factory=dict)  # what a strategy marks: rollout, lookahead, step_scores

    @property
    def depth(self) -> int:
        return len(self.path)

    @property
    def complete(self) -> bool:
        return self.finish == COMPLETE

    @property
    def alive(self) -> bool:
        """Can be extended by another step."""
        return self.finish == STEP


class Tree:
    def __init__(self, problem_id: str) -> None:
        self.problem_id = problem_id
        self.nodes: list[Node] = [Node(0, None, ())]
        self.children: dict[int, list[int]] = {}

    @property
    def root(self) -> Node:
        return self.nodes[0]

    def add(self, parent: Node, text: str, finish: str, tokens: int, **meta: Any) -> Node:
        """A new child of `parent`; its path index is the number of children `parent` already has."""
        siblings = self.children.setdefault(parent.id, [])
        node = Node(len(self.nodes), parent.id, (*parent.path, len(siblings)), text, finish, None, tokens, meta=meta)
        siblings.append(node.id)
        self.nodes.append(node)
        return node

    def lineage(self, node: Node) -> list[Node]:
        """The nodes from the root's first child down to `node`."""
        out = []
        while node.parent is not None:
            out.append(node)
            node = self.nodes[node.parent]
        return out[::-1]

    def steps(self, node: Node) -> list[str]:
        """The solution steps ending at `node` (empty steps, which add nothing, left out)."""
        return [n.text for n in self.lineage(node) if n.text.strip()]

    def step_scores(self, node: Node) -> list[float]:
        """The PRM scores of the steps ending at `node`; a node holding several steps (a rollout) keeps its own
        in meta["step_scores"]."""
        out: list[float] = []
        for n in self.lineage(node):
            if n.text.strip() and n.score is not None:
                out += n.meta.get("step_scores") or [n.score]
        return out

    def generated_tokens(self) -> int:
        return sum(n.tokens for n in self.nodes)

    def to_dict(self) -> dict[str, Any]:
        return {"problem_id": self.problem_id, "nodes": [_node_dict(n) for n in self.nodes]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Tree:
        tree = cls(data["problem_id"])
        tree.nodes = [Node(**{**n, "path": tuple(n["path"])}) for n in data["nodes"]]
        for n in tree.nodes[1:]:
            tree.children.setdefault(n.parent, []).append(n.id)
        return tree

    def render(self, max_chars: int = 60) -> str:
        """The tree as indented text: one line per node with its score and finish; kept nodes marked with '*'."""
        lines = [f"problem {self.problem_id}: {len(self.nodes) - 1} nodes, {self.generated_tokens()} tokens"]

        def walk(node_id: int, indent: int) -> None:
            for child_id in self.children.get(node_id, []):
                n = self.nodes[child_id]
                text = " ".join(n.text.split())
                text = text if len(text) <= max_chars else text[: max_chars - 1] + "…"
                score = "  -  " if n.score is None else f"{n.score:.3f}"
                extra = "".join(f" {k}={v}" for k, v in n.meta.items() if isinstance(v, (int, float, str, bool)))
                extra += f" visits={n.visits} value={n.value:.3f}" if n.visits else ""
                mark = "*" if n.selected else " "
                lines.append(f"{'  ' * indent}{mark}[{n.id}] {score} {n.finish:<6} {text!r}{extra}")
                walk(child_id, indent + 1)

        walk(0, 0)
        return "\n".join(lines)


def _node_dict(node: Node) -> dict[str, Any]:
    data = asdict(node)
    data["path"] = list(node.path)
    return data
