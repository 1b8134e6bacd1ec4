"""Calico label selectors: parse once, match fast, and name them exactly as felix does.

Public API (others code against these names):

- ``parse_selector(text) -> Selector`` (cached); raises ``SelectorError`` with a 1-based column.
- ``Selector``: ``source``, ``canonical`` (libcalico-go ``Selector.String()``), ``unique_id``
  (``Selector.UniqueID()``, the ipset ID), ``ipset_name``, ``label_keys``, ``matches(labels)``,
  ``with_label_prefix(prefix)``, ``replace_all_and_global(all_repl, global_repl)``.
- ``and_selectors(*texts)``: the ``(a) && (b)`` text libcalico-go builds.
- ``ALL``: ``parse_selector("all()")``.

Sources: libcalico-go ``lib/selector/{tokenizer,parser}``, ``lib/hash/unique_id.go``,
``lib/backend/syncersv1/updateprocessors/{rules,selectors}.go`` and felix
``ipsets/ipset_defs.go`` (v3.32.1).
"""

from __future__ import annotations

import base64
import functools
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field

from tracer.selector.syntax import Node, canonical_text, label_keys, map_labels
from tracer.selector.matcher import Matcher, compile_matcher
from tracer.selector.lexer import SelectorError
from tracer.selector.parser import parse_tree

__all__ = [
    "ALL",
    "MAX_IPSET_NAME_LENGTH",
    "Selector",
    "SelectorError",
    "and_selectors",
    "ipset_name",
    "make_unique_id",
    "parse_selector",
]

MAX_IPSET_NAME_LENGTH = 31  # felix ipsets.MaxIPSetNameLength
_IPSET_PREFIX = {4: "cali40", 6: "cali60"}  # "cali" + version + format-version token "0"


def make_unique_id(prefix: str, content: str) -> str:
    """hash.MakeUniqueID: ``prefix:`` + unpadded URL-safe base64 of SHA-224(``prefix:content``)."""
    digest = hashlib.sha224(f"{prefix}:{content}".encode()).digest()
    return f"{prefix}:{base64.urlsafe_b64encode(digest).rstrip(b'=').decode()}"


def ipset_name(set_id: str, ip_version: int = 4) -> str:
    """Main ipset name for a set ID (IPVersionConfig.NameForMainIPSet: prefix + ID, cut to 31)."""
    return (_IPSET_PREFIX[ip_version] + set_id)[:MAX_IPSET_NAME_LENGTH]


@dataclass(frozen=True, eq=False)
class Selector:
    """A parsed selector. Equal (and hashing equal) when the canonical text is equal, which is
    how Calico compares selectors (``Selector.Equal`` compares unique IDs)."""

    source: str
    root: Node = field(repr=False)
    canonical: str = field(init=False)
    unique_id: str = field(init=False, repr=False)
    label_keys: frozenset[str] = field(init=False, repr=False)
    matcher: Matcher = field(init=False, repr=False)
    """The compiled ``labels -> bool`` function; bind it once in hot loops."""

    def __post_init__(self) -> None:
        canonical = canonical_text(self.root)
        object.__setattr__(self, "canonical", canonical)
        object.__setattr__(self, "unique_id", make_unique_id("s", canonical))
        object.__setattr__(self, "label_keys", label_keys(self.root))
        object.__setattr__(self, "matcher", compile_matcher(self.root))

    def matches(self, labels: Mapping[str, str]) -> bool:
        """Whether an endpoint with these labels is selected (ast.go Evaluate semantics:
        ``!=`` and ``not in`` are true for a missing label; the other comparisons false)."""
        return self.matcher(labels)

    @property
    def ipset_name(self) -> str:
        """felix's IPv4 selector set name, e.g. ``cali40s:4g010_DunYvItGg3dv2Mxna``."""
        return ipset_name(self.unique_id, 4)

    @property
    def ipset_name_v6(self) -> str:
        """felix's IPv6 selector set name (``cali60`` prefix)."""
        return ipset_name(self.unique_id, 6)

    def with_label_prefix(self, prefix: str) -> Selector:
        """Every label key gets ``prefix`` (parser.PrefixVisitor, as
        updateprocessors.parseSelectorAttachPrefix uses for namespaceSelector -> ``pcns.``).
        The result's source is its canonical text, the string Calico carries on."""
        root = map_labels(self.root, lambda key: prefix + key)
        return Selector(canonical_text(root), root)

    def replace_all_and_global(self, all_repl: str, global_repl: str) -> Selector:
        """updateprocessors.getEndpointSelector's rewrite of a namespaceSelector: replace every
        ``all()`` then every ``global()`` in the canonical text, then parse again.

        Like Calico this is a plain text substitution, so it also rewrites those words inside
        quoted values (``a == "all()"``). Callers normally apply it after
        ``with_label_prefix("pcns.")`` with ``has(projectcalico.org/namespace)`` and
        ``!has(projectcalico.org/namespace)``.
        """
        text = self.canonical.replace("all()", all_repl).replace("global()", global_repl)
        return parse_selector(text)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Selector):
            return NotImplemented
        return self.canonical == other.canonical

    def __hash__(self) -> int:
        return hash(self.canonical)

    def __str__(self) -> str:
        return self.canonical


@functools.lru_cache(maxsize=65536)
def parse_selector(text: str) -> Selector:
    """Parse selector text (cached). ``""`` or only spaces/tabs means ``all()``.

    Raises ``SelectorError`` (a ``ValueError`` and a ``tracer.errors.InputError``) for text
    libcalico-go's parser rejects, naming the 1-based column of the problem.
    """
    return Selector(text, parse_tree(text))


def and_selectors(*selectors: str) -> str:
    """Join selector texts the way libcalico-go does, ``(a) && (b) && (c)``.

    Empty (or blank) texts are skipped; a single remaining text is returned unchanged and none
    gives ``""``, as in updateprocessors.getEndpointSelector.
    """
    parts = [text for text in selectors if text.strip(" \t")]
    if len(parts) <= 1:
        return parts[0] if parts else ""
    return "(" + ") && (".join(parts) + ")"


ALL = parse_selector("all()")
