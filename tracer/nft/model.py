"""The nftables form of a node's ruleset: one table of base chains, regular chains, sets and
verdict maps.

Rules keep the typed matches and targets of :mod:`tracer.dataplane.ir` (the one rule IR), so the
walker evaluates them with the same match semantics as the iptables interpreter; only what
nftables adds has its own type here (a verdict-map lookup). Jump/goto targets and map verdicts
name nftables chains (``filter-cali-fw-cali1234``), not iptables ones.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Union

from tracer.dataplane import ir

# The hook a base chain is attached to, by the iptables built-in chain it stands in for.
HOOKS = {"PREROUTING": "prerouting", "INPUT": "input", "FORWARD": "forward",
         "OUTPUT": "output", "POSTROUTING": "postrouting"}

# knftables' priority keywords and their numbers (nft(8) "Standard priority names").
PRIORITY_VALUES = {"raw": -300, "mangle": -150, "dstnat": -100, "filter": 0, "security": 50,
                   "srcnat": 100}


@dataclass(frozen=True)
class VmapMatch:
    """``iifname vmap @MAP`` / ``oifname vmap @MAP``: look the interface up in a verdict map;
    a hit applies the element's verdict, a miss goes on with the next rule."""

    direction: ir.IfaceDirection
    map_name: str


NftMatch = Union[ir.Match, VmapMatch]


@dataclass(frozen=True)
class NftRule:
    """One rule: typed matches and target, the text felix writes, its comment."""

    matches: tuple[NftMatch, ...]
    target: ir.Target | None
    text: str                              # the rule body as felix renders it (no comment)
    comment: str | None = None             # "cali:<hash>; <felix comments>"
    provenance: ir.Provenance | None = field(default=None, compare=False, hash=False)
    # Where it came from: (iptables table, chain, 1-based rule number) of the felix rule.
    origin: tuple[str, str, int] | None = field(default=None, compare=False, hash=False)


@dataclass(frozen=True)
class BaseChain:
    """A base chain's attachment: ``type T hook H priority P; policy accept;``."""

    type: Literal["filter", "nat", "route"]
    hook: str
    priority: str                          # as written: "filter", "srcnat+10", ...
    policy: Literal["accept", "drop"] = "accept"

    @property
    def priority_value(self) -> int:
        word, _, offset = self.priority.partition("+")
        base = PRIORITY_VALUES[word] if word in PRIORITY_VALUES else int(word)
        return base + (int(offset) if offset else 0)


@dataclass(frozen=True)
class NftChain:
    name: str
    rules: tuple[NftRule, ...] = ()
    base: BaseChain | None = None


@dataclass(frozen=True)
class NftSet:
    """A named set: ``type`` is nftables' (``ipv4_addr``, ``ipv4_addr . inet_proto .
    inet_service``); ``elements`` are in nft syntax; ``ipset`` is the ipset it stands for."""

    name: str
    type: str
    flags: tuple[str, ...]
    elements: tuple[str, ...]
    ipset: ir.IpSet


@dataclass(frozen=True)
class NftMap:
    """A verdict map ``ifname : verdict``: interface name to ``goto CHAIN`` (or ``return``)."""

    name: str
    type: str
    elements: tuple[tuple[str, ir.Target], ...]

    def lookup(self, key: str | None) -> ir.Target | None:
        for name, verdict in self.elements:
            if name == key:
                return verdict
        return None


@dataclass(frozen=True)
class NftTable:
    family: str
    name: str
    chains: dict[str, NftChain]
    sets: dict[str, NftSet] = field(default_factory=dict)
    maps: dict[str, NftMap] = field(default_factory=dict)

    def base_chains(self, hook: str) -> list[NftChain]:
        """The table's base chains on ``hook`` in the order the kernel runs them."""
        found = [c for c in self.chains.values() if c.base is not None and c.base.hook == hook]
        return sorted(found, key=lambda c: c.base.priority_value)   # type: ignore[union-attr]


@dataclass(frozen=True)
class NftRuleset:
    tables: tuple[NftTable, ...]
    warnings: tuple[str, ...] = ()
