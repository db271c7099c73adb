"""The policy's prefix cache: the key/value states of every token sequence it has fed, so a search feeds only what
each node adds.

Step-wise search asks the policy to continue prompt + path at every depth. Re-feeding the whole path makes depth d
cost d steps of prefill, quadratic in depth (beam search spent 9.4x more time per generated token than best-of-N on
SmolLM2 before this). Here fed sequences live in a token trie: a span of tokens with its states per layer, chained
to its parent, so the states of a prefix are its chain's concatenation (the PRM's step cache in `scorer.py` keeps
steps the same way). Prompts are matched by their token ids, as vLLM's automatic prefix caching does, not by who
asks: siblings share their parent's spans, a path whose text re-tokenizes differently from how it was sampled
still reuses its longest common prefix, and every caller (beam, DVTS, MCTS, lookahead, label rollouts) gains
without bookkeeping. A search that prunes a branch or finishes a tree says so (`drop`, through
`HFGenerator.release`): the leaf its path ends in goes at once. A cap in tokens evicts least recently used leaves;
a dropped or evicted span is fed again when next needed, so neither changes tokens, only speed.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # kv loads torch and transformers; a CLI parser reaching this module must not
    from .kv import States


@dataclass(eq=False)
class Span:
    ids: list[int]
    states: States
    parent: Span | None = None
    children: dict[int, Span] = field(default_factory=dict)  # by first token
    used: int = 0


Match = list[tuple[Span, int]]  # spans from the root down, and how many tokens of each the prefix uses


class PrefixCache:
    def __init__(self, max_tokens: int = 200_000) -> None:
        self.root = Span([], [])
        self.max_tokens = max_tokens
        self.tokens = 0
        self.stats = {"reused_tokens": 0, "fed_tokens": 0, "evicted_tokens": 0, "dropped_tokens": 0}
        self._clock = itertools.count(1)

    def match(self, ids: Sequence[int]) -> tuple[Match, int]:
        """The longest cached prefix of `ids`: its spans and its length."""
        chain: Match = []
        node, at, tick = self.root, 0, next(self._clock)
        while at < len(ids):
            child = node.children.get(ids[at])
            if child is None:
                break
            n = _common(child.ids, ids, at)
            child.used = tick
            chain.append((child, n))
            at += n
            if n < len(child.ids):
                break
            node = child
        return chain, at

    @staticmethod
    def states(chain: Match) -> States | None:
        """The states of a matched prefix, or None for an empty one."""
        if not chain:
            return None
        from .kv import concat

        return concat([[(k[:, :n], v[:, :n]) for k, v in span.states] for span, n in chain])

    def insert(self, ids: Sequence[int], start: int, states: States) -> None:
        """Keep `states` (of ids[start:]) as the states of `ids`, whose first `start` tokens are cached already (a
        `match` in the same call found them). Shared heads are split, never copied."""
        node, at, tick = self.root, 0, next(self._clock)
        while at < len(ids):
            child = node.children.get(ids[at])
            if child is None:
                if at < start:
                    return  # the prefix went missing: nothing to hang these states on
                span = Span(list(ids[at:]), [(k[:, at - start :], v[:, at - start :]) for k, v in states], node)
                span.used = tick
                node.children[ids[at]] = span
                self.tokens += len(span.ids)
                return
            n = _common(child.ids, ids, at)
            if n < len(child.ids):
                _split(child, n)
            child.used = tick
            node, at = child, at + n

    def drop(self, ids: Sequence[int], *, subtree: bool = False) -> int:
        """Free the states only `ids` leads to: the leaf span its cached prefix ends in, when that prefix is all of
        `ids` but at most its last token (a sampled step's states stop short of the stop string that ended it). A
        shorter match ends in the span of a shorter path, still another node's prefix; a span with children is too,
        unless `subtree` (a finished search: everything that extends `ids` goes first). Returns the tokens freed."""
        chain, at = self.match(ids)
        if not chain or at < len(ids) - 1:
            return 0
        span, _ = chain[-1]
        if span.children and not subtree:
            return 0
        freed = _size(span)
        del span.parent.children[span.ids[0]]  # type: ignore[union-attr]
        self.tokens -= freed
        self.stats["dropped_tokens"] += freed
        return freed

    def evict(self) -> None:
        """Drop least recently used leaves until the cache holds at most `max_tokens`."""
        while self.tokens > self.max_tokens:
            leaves = sorted(_leaves(self.root), key=lambda s: s.used)
            if not leaves:
                return
            for span in leaves:
                del span.parent.children[span.ids[0]]  # type: ignore[union-attr]
                self.tokens -= len(span.ids)
                self.stats["evicted_tokens"] += len(span.ids)
                if self.tokens <= self.max_tokens:
                    return

    def clear(self) -> None:
        self.root.children.clear()
        self.tokens = 0


def _common(span: list[int], ids: Sequence[int], at: int) -> int:
    n = 0
    while n < len(span) and at + n < len(ids) and span[n] == ids[at + n]:
        n += 1
    return n


def _split(span: Span, n: int) -> None:
    """Cut `span` after its first `n` tokens; the rest becomes its only child, owning its old children."""
    tail = Span(span.ids[n:], [(k[:, n:], v[:, n:]) for k, v in span.states], span, span.children, span.used)
    for c in tail.children.values():
        c.parent = tail
    span.ids, span.states, span.children = span.ids[:n], [(k[:, :n], v[:, :n]) for k, v in span.states], {}
    span.children[tail.ids[0]] = tail


def _leaves(root: Span) -> list[Span]:
    out, todo = [], list(root.children.values())
    while todo:
        span = todo.pop()
        if span.children:
            todo.extend(span.children.values())
        else:
            out.append(span)
    return out


def _size(root: Span) -> int:
    """Tokens in `root` and every span below it."""
    total, todo = 0, [root]
    while todo:
        span = todo.pop()
        total += len(span.ids)
        todo.extend(span.children.values())
    return total
