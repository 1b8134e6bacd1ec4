"""Inverted label indexes: which labelled items a selector matches, and which selectors match
an item's labels, without evaluating every selector against every item.

felix keeps the same two questions cheap in ``felix/labelindex`` (label -> endpoints, and for
each selector the set of matching endpoints). Here the index is built once per loaded cluster
and answers by candidates: a selector's *required* labels (``a == "x"``, ``a in {...}`` and
``has(a)`` under a top-level ``&&``) name the only label values a match can carry, so only the
items with one of those values are evaluated. A selector without such a requirement (``||`` at
the top, ``!``, ``all()``) is evaluated against every distinct label set, still once per label
set rather than once per item (the replicas of a deployment share one).

Answers are exact: candidates are always checked with the selector's own matcher.
"""

from __future__ import annotations

import functools
from collections.abc import Hashable, Iterable, Mapping, Sequence
from typing import Generic, TypeVar

from tracer.selector.parser import parse_tree
from tracer.selector.selector import Selector, parse_selector
from tracer.selector.syntax import EQ, And, Compare, Has, InSet, Node

T = TypeVar("T", bound=Hashable)
S = TypeVar("S", bound=Hashable)

# A requirement: a label key and the values it must take (None: any value, i.e. has()).
Requirement = tuple[str, frozenset[str] | None]


def requirements(node: Node) -> list[Requirement]:
    """Label conditions every item the selector matches must meet (possibly none)."""
    match node:
        case Compare(label, op, value) if op == EQ:
            return [(label, frozenset((value,)))]
        case InSet(label, values, negated) if not negated:
            return [(label, frozenset(values))]
        case Has(label):
            return [(label, None)]
        case And(operands):
            return [req for operand in operands for req in requirements(operand)]
    return []


@functools.lru_cache(maxsize=65536)
def requirements_of(text: str) -> tuple[Requirement, ...]:
    """:func:`requirements` of selector text (parsed without compiling a matcher)."""
    return tuple(requirements(parse_tree(text)))


class LabelIndex(Generic[T]):
    """Items with labels, for "which items does this selector match?" (ipset members).

    Items sharing a label set are evaluated once; ``matching`` returns items in the order they
    were given and caches the answer per selector (canonical text).
    """

    def __init__(self, items: Iterable[tuple[T, Mapping[str, str]]]):
        self._classes: list[Mapping[str, str]] = []          # distinct label sets
        self._members: list[list[T]] = []                    # class -> items, in order
        self._position: dict[T, int] = {}
        class_of: dict[frozenset, int] = {}
        self._by_value: dict[tuple[str, str], list[int]] = {}
        self._by_key: dict[str, list[int]] = {}
        for position, (item, labels) in enumerate(items):
            self._position[item] = position
            signature = frozenset(labels.items())
            number = class_of.get(signature)
            if number is None:
                number = class_of[signature] = len(self._classes)
                self._classes.append(labels)
                self._members.append([])
                for key, value in labels.items():
                    self._by_value.setdefault((key, value), []).append(number)
                    self._by_key.setdefault(key, []).append(number)
            self._members[number].append(item)
        self._answers: dict[str, tuple[T, ...]] = {}

    def __len__(self) -> int:
        return len(self._position)

    def _candidates(self, selector: Selector) -> Iterable[int]:
        best: set[int] | None = None
        for key, values in requirements(selector.root):
            if values is None:
                found = set(self._by_key.get(key, ()))
            else:
                found = {c for v in values for c in self._by_value.get((key, v), ())}
            if best is None or len(found) < len(best):
                best = found
        return range(len(self._classes)) if best is None else best

    def matching(self, selector: Selector) -> tuple[T, ...]:
        cached = self._answers.get(selector.canonical)
        if cached is not None:
            return cached
        matches = selector.matcher
        items = [item for number in self._candidates(selector)
                 if matches(self._classes[number]) for item in self._members[number]]
        items.sort(key=self._position.__getitem__)
        answer = self._answers[selector.canonical] = tuple(items)
        return answer


class SelectorIndex(Generic[S]):
    """Selectors, for "which of them match these labels?" (the policies of an endpoint).

    Each selector is filed under one of its requirements (the label values it needs); a
    selector with none is checked for every query. ``matching`` returns selectors' owners in
    the order they were given.
    """

    def __init__(self, entries: Sequence[tuple[S, str]]):
        # Selector texts, parsed (and their matchers compiled) only when a query meets them,
        # so the index pickles and a warm start compiles only the selectors it tests.
        self._entries = list(entries)
        self._by_value: dict[tuple[str, str], list[int]] = {}
        self._by_key: dict[str, list[int]] = {}
        self._always: list[int] = []
        reqs = [requirements_of(text) for _, text in self._entries]
        # File each selector under its rarest requirement (``orchestrator == "k8s"`` is
        # shared by every Kubernetes policy, ``app == "x"`` by a few): a query then checks few.
        seen: dict[Requirement, int] = {}
        for found in reqs:
            for req in found:
                seen[req] = seen.get(req, 0) + 1
        for position, found in enumerate(reqs):
            if not found:
                self._always.append(position)
                continue
            key, values = min(found, key=lambda r: (r[1] is None, seen[r] * len(r[1] or "x")))
            if values is None:
                self._by_key.setdefault(key, []).append(position)
            else:
                for value in values:
                    self._by_value.setdefault((key, value), []).append(position)

    def __len__(self) -> int:
        return len(self._entries)

    def matching(self, labels: Mapping[str, str]) -> list[S]:
        candidates = set(self._always)
        for key, value in labels.items():
            candidates.update(self._by_value.get((key, value), ()))
            candidates.update(self._by_key.get(key, ()))
        entries = self._entries
        return [entries[i][0] for i in sorted(candidates)
                if parse_selector(entries[i][1]).matcher(labels)]
