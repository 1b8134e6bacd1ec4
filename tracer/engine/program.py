"""Lower one table of the typed IR to flat arrays the kernels walk.

A table becomes three integer arrays: ``chains`` (first rule, rule count, policy), ``rules``
(first match, end of matches, target kind and operands) and ``matches`` (kind, ``!`` and
operands), plus ``ranges`` for port lists. Names become ids: chains by their position in the
table, interface patterns, ipsets and ``-m statistic`` rules by their position in the node's
:class:`Symbols`. Each chain is lowered on its own (:func:`lower_chain`) and the table is the
concatenation, so a changed chain is lowered again without touching the others.

A match or target this module does not know raises :class:`Unsupported`; the node then runs
that table through the reference interpreter and says so.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import numpy as np

from tracer.dataplane.ir import (
    AddressMatch, AddrTypeMatch, Chain, ConnmarkMatch, ConnMarkTarget, ConntrackMatch, Dnat,
    Goto, IcmpMatch, InterfaceMatch, IpvsMatch, Jump, LimitMatch, Log, MarkMatch, Masquerade, Match,
    Nflog, NoTrack, PortMatch, ProtocolMatch, ProtocolModuleMatch, Reject, RpfilterMatch, Rule,
    SetMark, SetMatch, Snat, StatisticMatch, Table, Target, TcpFlagsMatch, TraceTarget, Verdict,
)
from tracer.engine import codes as C
from tracer.engine import decision
from tracer.protocols import PROTOCOL_NUMBERS


class Unsupported(Exception):
    """The IR holds something the arrays cannot express; the message says what."""


@dataclass
class Symbols:
    """Names a node's tables share, interned to ids as the compiler meets them."""

    iface_patterns: dict[str, int] = field(default_factory=dict)     # "cali+" -> column
    ipsets: dict[str, int] = field(default_factory=dict)             # set name -> id
    # one entry per -m statistic match: (its chain, its rule, the match), for the run's pins
    statistics: list[tuple[str, Rule, StatisticMatch]] = field(default_factory=list)
    status_bits: dict[str, int] = field(default_factory=lambda: dict(C.STATUS_BIT))

    def pattern(self, name: str) -> int:
        return self.iface_patterns.setdefault(name, len(self.iface_patterns))

    def ipset(self, name: str) -> int:
        return self.ipsets.setdefault(name, len(self.ipsets))

    def copy(self) -> "Symbols":
        return Symbols(dict(self.iface_patterns), dict(self.ipsets), list(self.statistics),
                       dict(self.status_bits))

    def status(self, name: str) -> int:
        if name not in self.status_bits:
            self.status_bits[name] = 1 << (8 + len(self.status_bits))
        return self.status_bits[name]


@dataclass(frozen=True)
class LoweredChain:
    """One chain's rows; match and range offsets are relative to the chain."""

    rules: np.ndarray          # int64[n, RULE_COLS]
    matches: np.ndarray        # int64[m, MATCH_COLS]
    ranges: np.ndarray         # int64[r, 2]
    jump_rows: tuple[tuple[int, str], ...]   # (rule, chain it jumps or goes to)
    set_names: frozenset[str]                  # ipsets its matches name
    classifier: decision.Classifier | None = None   # long flat chains: first match by bitmaps


@dataclass(frozen=True)
class TableProgram:
    """One table, flat. ``chain_names[i]`` is chain id ``i``; ``rule_objects[i]`` the IR rule
    of global rule row ``i`` (events name it)."""

    table: Table
    chain_names: tuple[str, ...]
    chain_ids: dict[str, int]
    chains: np.ndarray         # int64[c, 3]: first rule row, rule count, policy (1 DROP)
    rules: np.ndarray          # int64[n, RULE_COLS], match offsets absolute
    matches: np.ndarray        # int64[m, MATCH_COLS], range offsets absolute
    ranges: np.ndarray         # int64[r, 2]
    rule_objects: tuple[Rule, ...]
    classifiers: decision.ClassifierArrays


def _mask(prefix_len: int) -> int:
    return (0xFFFFFFFF << (32 - prefix_len)) & 0xFFFFFFFF


def _row(kind: int, negated: bool, *operands: int) -> list[int]:
    row = [kind, int(negated), *operands]
    return row + [0] * (C.MATCH_COLS - len(row))


def _states(names, symbols: Symbols) -> int:
    bits = 0
    for name in names:
        if name not in C.STATE_BIT:
            raise Unsupported(f"conntrack state {name!r}")
        bits |= C.STATE_BIT[name]
    return bits


def _addr_types(text: str | None) -> int:
    if not text:
        return 0
    # Types the node's environment never answers (BLACKHOLE, ...) simply never match.
    return sum(C.ADDR_TYPE_BIT.get(t, 0) for t in set(text.split(",")))


def lower_match(m: Match, ranges: list[tuple[int, int]], symbols: Symbols, chain: str,
                rule: Rule) -> list[int]:
    """One match as a row of the match table."""
    kind = type(m)
    if kind is ProtocolMatch:
        return _row(C.M_PROTO, m.negated, m.protocol)
    if kind is AddressMatch:
        return _row(C.M_ADDR, m.negated, int(m.direction == "dst"), m.cidr.network,
                    _mask(m.cidr.prefix_len))
    if kind is InterfaceMatch:
        return _row(C.M_IFACE, m.negated, int(m.direction == "out"), symbols.pattern(m.name))
    if kind is PortMatch:
        start = len(ranges)
        ranges.extend(m.ranges)
        return _row(C.M_PORT, m.negated, int(m.direction == "dst"), start, len(ranges))
    if kind is IcmpMatch:
        return _row(C.M_ICMP, m.negated, C.NO_VALUE if m.icmp_type is None else m.icmp_type,
                    C.NO_VALUE if m.icmp_code is None else m.icmp_code)
    if kind is MarkMatch:
        return _row(C.M_MARK, m.negated, m.value, m.mask)
    if kind is ConnmarkMatch:
        return _row(C.M_CONNMARK, m.negated, m.value, m.mask)
    if kind is ConntrackMatch:
        statuses = 0
        for name in m.statuses or ():
            statuses |= symbols.status(name)
        return _row(C.M_CONNTRACK, m.negated, _states(m.states, symbols), statuses,
                    int(m.statuses is not None), int(m.status_negated))
    if kind is SetMatch:
        flags = sum(1 << i for i, side in enumerate(m.flags) if side == "src")
        return _row(C.M_SET, m.negated, symbols.ipset(m.set_name), flags)
    if kind is AddrTypeMatch:
        limit = {None: 0, "in": 1, "out": 2}[m.limit_iface]
        return _row(C.M_ADDRTYPE, False, _addr_types(m.src_type), _addr_types(m.dst_type),
                    limit, int(m.src_negated), int(m.dst_negated),
                    int(bool(m.src_type)) | int(bool(m.dst_type)) << 1)
    if kind is RpfilterMatch:
        if m.accept_local:
            raise Unsupported("rpfilter --accept-local")
        return _row(C.M_RPF, m.invert, int(m.validmark), int(m.loose))
    if kind is LimitMatch:
        return _row(C.M_TRUE, False)
    if kind is TcpFlagsMatch:
        return _row(C.M_TCPFLAGS, m.negated, m.mask, m.comp)
    if kind is ProtocolModuleMatch:
        return _row(C.M_PROTOMOD, False, PROTOCOL_NUMBERS.get(m.module, C.NO_VALUE))
    if kind is StatisticMatch:
        symbols.statistics.append((chain, rule, m))
        return _row(C.M_STATISTIC, m.negated, len(symbols.statistics) - 1)
    if kind is IpvsMatch:
        raise Unsupported("-m ipvs (the reference says the dump lacks the kernel's IPVS table)")
    raise Unsupported(f"match {kind.__name__}")


def lower_target(t: Target | None) -> tuple[list[int], str | None]:
    """A target as (kind and operands, the chain it names)."""
    kind = type(t)
    if t is None or kind in (Log, Nflog, TraceTarget):
        return [C.E_CONTINUE], None
    if kind is Verdict:
        return [C.EFFECT_CODE[t.name]], None
    if kind is Reject:
        return [C.E_REJECT], None
    if kind is Jump:
        return [C.E_JUMP], t.chain
    if kind is Goto:
        return [C.E_GOTO], t.chain
    if kind is SetMark:
        return [C.T_SETMARK, t.value, t.mask], None
    if kind is ConnMarkTarget:
        mode = {"set": C.CONNMARK_SET, "save": C.CONNMARK_SAVE,
                "restore": C.CONNMARK_RESTORE}[t.mode]
        return [C.T_CONNMARK, mode, t.value, t.mask, t.nfmask, t.ctmask], None
    if kind is NoTrack:
        return [C.E_NOTRACK], None
    if kind is Dnat:
        return [C.E_DNAT], None
    if kind is Snat:
        return [C.E_SNAT], None
    if kind is Masquerade:
        return [C.E_MASQUERADE], None
    raise Unsupported(f"target {kind.__name__}")


def lower_chain(chain: Chain, symbols: Symbols, *, classify: bool = True) -> LoweredChain:
    rules, matches, jumps = [], [], []
    ranges: list[tuple[int, int]] = []
    for rule in chain.rules:
        start = len(matches)
        matches.extend(lower_match(m, ranges, symbols, chain.name, rule) for m in rule.matches)
        target, jump = lower_target(rule.target)
        row = [start, len(matches), *target]
        rules.append(row + [0] * (C.RULE_COLS - len(row)))
        jumps.append(jump)
    classifier = (decision.build(chain.rules)
                  if classify and decision.qualifies(chain.rules) else None)
    sets = frozenset(m.set_name for rule in chain.rules for m in rule.matches
                     if isinstance(m, SetMatch))
    return LoweredChain(_array(rules, C.RULE_COLS), _array(matches, C.MATCH_COLS),
                        _array(ranges, 2),
                        tuple((r, j) for r, j in enumerate(jumps) if j is not None), sets,
                        classifier)


def _array(rows: list, width: int) -> np.ndarray:
    return np.array(rows, dtype=np.int64).reshape(len(rows), width)


def link_table(table: Table, chains: dict[str, Chain],
               lowered: dict[str, LoweredChain]) -> TableProgram:
    """Concatenate lowered chains, make offsets absolute and resolve chain names to ids
    (-1: an undefined chain, an error only if a packet takes that jump, as in the reference).
    Vectorised: an incremental compile of a large node spends its time here."""
    names = tuple(chains)
    ids = {name: i for i, name in enumerate(names)}
    parts = [lowered[name] for name in names]
    rule_counts = np.array([len(p.rules) for p in parts], dtype=np.int64)
    match_counts = np.array([len(p.matches) for p in parts], dtype=np.int64)
    range_counts = np.array([len(p.ranges) for p in parts], dtype=np.int64)
    rule_starts = np.cumsum(rule_counts) - rule_counts
    chain_rows = np.zeros((len(names), 3), dtype=np.int64)
    chain_rows[:, 0] = rule_starts
    chain_rows[:, 1] = rule_counts
    chain_rows[:, 2] = [int(chains[name].policy == "DROP") for name in names]
    rules = _concat([p.rules for p in parts], C.RULE_COLS)
    match_shift = np.repeat(np.cumsum(match_counts) - match_counts, rule_counts)
    rules[:, 0] += match_shift
    rules[:, 1] += match_shift
    for c, part in enumerate(parts):
        for r, jump in part.jump_rows:
            rules[rule_starts[c] + r, 3] = ids.get(jump, -1)
    matches = _concat([p.matches for p in parts], C.MATCH_COLS)
    range_shift = np.repeat(np.cumsum(range_counts) - range_counts, match_counts)
    ported = matches[:, 0] == C.M_PORT
    matches[ported, 3] += range_shift[ported]
    matches[ported, 4] += range_shift[ported]
    objects = tuple(itertools.chain.from_iterable(chains[name].rules for name in names))
    return TableProgram(
        table=table, chain_names=names, chain_ids=ids, chains=chain_rows, rules=rules,
        matches=matches, ranges=_concat([p.ranges for p in parts], 2), rule_objects=objects,
        classifiers=decision.flatten([p.classifier for p in parts]))


def _concat(parts: list[np.ndarray], width: int) -> np.ndarray:
    """A fresh array (callers shift its offsets in place)."""
    if not parts:
        return np.zeros((0, width), dtype=np.int64)
    return np.concatenate(parts)
