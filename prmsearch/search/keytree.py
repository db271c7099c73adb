"""The key tree a step scorer keeps its per-node state in: a root per prompt, every other key a step under its
parent, each holding whatever the scorer stores for it (a cache of the step's key/value states, its text).

Release is reference counted: the search releases keys it no longer needs (a pruned beam, a finished tree), and a
key's state goes once it is released and nothing below it lives, so a pruned branch is freed at once while a kept
one stays. `StepScorer` and `AdapterScorer` each own one (composition), with a callback for what a dropped key
frees.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterator, Sequence
from typing import Generic, TypeVar

V = TypeVar("V")
Key = Hashable


class KeyTree(Generic[V]):
    def __init__(self, on_drop: Callable[[V], None] | None = None, error: type[Exception] = ValueError) -> None:
        """`on_drop`: what a dropped key's value frees; `error`: raised for a key in use or an unknown parent."""
        self._error = error
        self._values: dict[Key, V] = {}
        self._parent: dict[Key, Key | None] = {}
        self._children: dict[Key, int] = {}
        self._released: set[Key] = set()
        self._on_drop = on_drop

    def add(self, key: Key, parent: Key | None, value: V) -> None:
        """A root (`parent` None) or a step under a live key."""
        if key in self._values:
            raise self._error(f"key {key!r} is already in use")
        if parent is not None:
            if parent not in self._values:
                raise self._error(f"unknown parent key {parent!r}")
            self._children[parent] += 1
        self._values[key], self._parent[key], self._children[key] = value, parent, 0

    def __contains__(self, key: Key) -> bool:
        return key in self._values

    def __getitem__(self, key: Key) -> V:
        return self._values[key]

    def __iter__(self) -> Iterator[Key]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def values(self) -> Iterator[V]:
        return iter(self._values.values())

    def parent(self, key: Key) -> Key | None:
        return self._parent[key]

    def is_root(self, key: Key) -> bool:
        return self._parent[key] is None

    def chain(self, key: Key) -> list[V]:
        """The values from the root down to `key`."""
        out = []
        while key is not None:
            out.append(self._values[key])
            key = self._parent[key]
        return out[::-1]

    def release(self, keys: Sequence[Key]) -> None:
        """The caller no longer needs these keys: each is dropped (and `on_drop` called with its value) once no live
        key descends from it, so releasing a beam that still has kept children frees nothing until they go too.
        Unknown or already released keys are ignored."""
        for key in keys:
            if key in self._values and key not in self._released:
                self._released.add(key)
                self._drop_if_unused(key)

    def _drop_if_unused(self, key: Key | None) -> None:
        while key is not None:
            if key not in self._released or self._children[key]:
                return
            value, parent = self._values.pop(key), self._parent.pop(key)
            del self._children[key]
            self._released.discard(key)
            if self._on_drop is not None:
                self._on_drop(value)
            if parent is not None:
                self._children[parent] -= 1
            key = parent
