"""A read-only mapping whose values are built the first time they are asked for.

A node's ipsets and a cluster's nodes are many and a packet meets few of them, so both are
named up front and built on demand. A built value never changes, so sharing the mapping between
threads is safe; the lock only keeps two threads from building the same value twice.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import TypeVar

K = TypeVar("K")
V = TypeVar("V")


class LazyMapping(Mapping[K, V]):
    """``keys`` known now, each value made by ``build(key)`` on first access, then kept."""

    def __init__(self, keys: Iterable[K], build: Callable[[K], V]):
        self._keys = tuple(keys)
        self._known = frozenset(self._keys)
        self._build = build
        self._built: dict[K, V] = {}
        self._lock = threading.Lock()

    def __getitem__(self, key: K) -> V:
        value = self._built.get(key)
        if value is not None:
            return value
        if key not in self._known:
            raise KeyError(key)
        with self._lock:
            value = self._built.get(key)
            if value is None:
                value = self._built[key] = self._build(key)
        return value

    def __contains__(self, key: object) -> bool:
        return key in self._known

    def __iter__(self) -> Iterator[K]:
        return iter(self._keys)

    def __len__(self) -> int:
        return len(self._keys)

    @property
    def built(self) -> tuple[K, ...]:
        """The keys whose values have been built so far, in key order."""
        return tuple(k for k in self._keys if k in self._built)
