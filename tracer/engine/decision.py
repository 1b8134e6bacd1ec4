"""A decision structure for long flat chains: the first matching rule without the linear walk.

Bit-vector classification (Lakshman and Stiliadis, SIGCOMM '98): each header field the rules
test (source, destination, protocol, source port, destination port) is cut into elementary
intervals at every rule edge; each interval holds a bitmap of the rules whose test on that
field accepts it. A packet's candidates are the AND of five bitmaps, and the first set bit at or
after the resume position is the first matching rule: first-match semantics exactly, including
``!`` (a complement on that field) and a missing port (the value -1, which no port test
accepts). Rules wildcarded on a field are kept in a separate mask, not in every row.

A chain qualifies when it is long (:data:`MIN_RULES`) and every match tests only those five
immutable fields (a target may still set marks or jump: the walk resumes the query after the
rule). Other chains are walked linearly.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numba import njit

from tracer.dataplane.ir import (AddressMatch, LimitMatch, PortMatch, ProtocolMatch,
                                 ProtocolModuleMatch, Rule)
from tracer.protocols import PROTOCOL_NUMBERS

MIN_RULES = 32
MAX_BYTES = 256 << 20              # bitmaps of one chain; past this the chain stays linear
DIMS = 5                           # src, dst, protocol, sport, dport
DOMAINS = ((0, 1 << 32), (0, 1 << 32), (0, 256), (-1, 65536), (-1, 65536))
META_COLS = 2 + 3 * DIMS + 1       # rules, words, per dim (bounds start, end, bits offset), wild


@dataclass(frozen=True)
class Classifier:
    rules: int
    words: int
    bounds: tuple[np.ndarray, ...]     # per dim: sorted interval starts (first = domain min)
    bits: tuple[np.ndarray, ...]       # per dim: uint64[len(bounds), words]
    wild: np.ndarray                   # uint64[DIMS, words]: rules that ignore the field


Intervals = list[tuple[int, int]]      # disjoint, sorted, half-open


def _complement(pieces: Intervals, domain: tuple[int, int]) -> Intervals:
    out, at = [], domain[0]
    for lo, hi in pieces:
        if lo > at:
            out.append((at, lo))
        at = max(at, hi)
    if at < domain[1]:
        out.append((at, domain[1]))
    return out


def _intersect(a: Intervals, b: Intervals) -> Intervals:
    out, i, j = [], 0, 0
    while i < len(a) and j < len(b):
        lo, hi = max(a[i][0], b[j][0]), min(a[i][1], b[j][1])
        if lo < hi:
            out.append((lo, hi))
        if a[i][1] < b[j][1]:
            i += 1
        else:
            j += 1
    return out


def _union(pieces: Intervals) -> Intervals:
    if len(pieces) == 1:
        return pieces
    out: Intervals = []
    for lo, hi in sorted(pieces):
        if out and lo <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], hi))
        else:
            out.append((lo, hi))
    return out


def _predicate(match) -> tuple[int, Intervals] | None:
    """(dimension, accepted intervals) of one match; None: not a field test we index."""
    kind = type(match)
    if kind is LimitMatch:
        return -1, []
    if kind is ProtocolMatch:
        dim, domain = 2, DOMAINS[2]
        accepted = [domain] if match.protocol == 0 else [(match.protocol, match.protocol + 1)]
        return dim, _complement(accepted, domain) if match.negated else accepted
    if kind is ProtocolModuleMatch:
        number = PROTOCOL_NUMBERS.get(match.module)
        return 2, [] if number is None else [(number, number + 1)]
    if kind is AddressMatch:
        dim = 0 if match.direction == "src" else 1
        size = 1 << (32 - match.cidr.prefix_len)
        accepted = [(match.cidr.network, match.cidr.network + size)]
        return dim, _complement(accepted, DOMAINS[dim]) if match.negated else accepted
    if kind is PortMatch:
        dim = 3 if match.direction == "src" else 4
        accepted = _union([(lo, hi + 1) for lo, hi in match.ranges])
        # A packet without ports (-1) fails a port test, ``!`` or not.
        return dim, _complement(accepted, (0, 65536)) if match.negated else accepted
    return None


def qualifies(rules: tuple[Rule, ...]) -> bool:
    """Long enough to be worth it (``build`` then checks that every match is a field test)."""
    return len(rules) >= MIN_RULES


def build(rules: tuple[Rule, ...]) -> Classifier | None:
    """The classifier of a chain (None when a match is not a field test, or it would
    outgrow MAX_BYTES)."""
    per_rule: list[list[Intervals | None]] = []          # None: wildcard on that dim
    for rule in rules:
        dims: list[Intervals | None] = [None] * DIMS
        for m in rule.matches:
            found = _predicate(m)
            if found is None:
                return None                              # not a flat chain of field tests
            dim, pieces = found
            if dim < 0:
                continue
            dims[dim] = pieces if dims[dim] is None else _intersect(dims[dim], pieces)
        per_rule.append(dims)
    n = len(rules)
    words = (n + 63) // 64
    bounds, bit_tables = [], []
    wild = np.zeros((DIMS, words), dtype=np.uint64)
    for d in range(DIMS):
        edges = {DOMAINS[d][0]}
        for dims in per_rule:
            if dims[d] is not None:
                for lo, hi in dims[d]:
                    edges.add(lo)
                    if hi < DOMAINS[d][1]:
                        edges.add(hi)
        starts = np.array(sorted(edges), dtype=np.int64)
        if len(starts) * words * 8 * DIMS > MAX_BYTES:
            return None
        los, his, owners = [], [], []
        for r, dims in enumerate(per_rule):
            if dims[d] is None:
                wild[d, r >> 6] |= np.uint64(1) << np.uint64(r & 63)
                continue
            for lo, hi in dims[d]:
                los.append(lo)
                his.append(hi)
                owners.append(r)
        table = np.zeros((len(starts), words), dtype=np.uint64)
        first = np.searchsorted(starts, np.array(los, dtype=np.int64), side="left")
        last = np.searchsorted(starts, np.array(his, dtype=np.int64), side="left")
        _fill(table, first.astype(np.int64), last.astype(np.int64),
              np.array(owners, dtype=np.int64))
        bounds.append(starts)
        bit_tables.append(table)
    return Classifier(n, words, tuple(bounds), tuple(bit_tables), wild)


@njit(cache=True)
def _fill(table, first, last, owners):
    for i in range(owners.shape[0]):
        r = owners[i]
        word = r >> 6
        bit = np.uint64(1) << np.uint64(r & 63)
        for row in range(first[i], last[i]):
            table[row, word] |= bit


# ------------------------------------------------------------------ flat arrays for a table


@dataclass(frozen=True)
class ClassifierArrays:
    """Every classifier of a table, flattened for the kernel."""

    of_chain: np.ndarray       # int64[c]: classifier index, -1 for a linear chain
    meta: np.ndarray           # int64[k, META_COLS]
    bounds: np.ndarray         # int64
    bits: np.ndarray           # uint64
    wild: np.ndarray           # uint64


def flatten(classifiers: list[Classifier | None]) -> ClassifierArrays:
    of_chain = np.full(len(classifiers), -1, dtype=np.int64)
    metas, bounds, bits, wild = [], [], [], []
    n_bounds = n_bits = n_wild = 0
    for c, cls in enumerate(classifiers):
        if cls is None:
            continue
        of_chain[c] = len(metas)
        meta = [cls.rules, cls.words]
        for d in range(DIMS):
            meta += [n_bounds, n_bounds + len(cls.bounds[d]), n_bits]
            bounds.append(cls.bounds[d])
            bits.append(cls.bits[d].ravel())
            n_bounds += len(cls.bounds[d])
            n_bits += cls.bits[d].size
        meta.append(n_wild)
        wild.append(cls.wild.ravel())
        n_wild += cls.wild.size
        metas.append(meta)

    def cat(parts, dtype):
        return np.concatenate(parts).astype(dtype) if parts else np.zeros(1, dtype=dtype)

    return ClassifierArrays(of_chain, np.array(metas, dtype=np.int64).reshape(-1, META_COLS),
                            cat(bounds, np.int64), cat(bits, np.uint64), cat(wild, np.uint64))


# ------------------------------------------------------------------ the query

_DEBRUIJN = np.array([
    0, 47, 1, 56, 48, 27, 2, 60, 57, 49, 41, 37, 28, 16, 3, 61, 54, 58, 35, 52, 50, 42, 21, 44,
    38, 32, 29, 23, 17, 11, 4, 62, 46, 55, 26, 59, 40, 36, 15, 53, 34, 51, 20, 43, 31, 22, 10,
    45, 25, 39, 14, 33, 19, 30, 9, 24, 13, 18, 8, 12, 7, 6, 5, 63], dtype=np.int64)
_DEBRUIJN_MUL = np.uint64(0x03F79D71B4CB0A89)


@njit(cache=True, inline="always")
def _lowest_bit(x):
    """Index of the lowest set bit of a non-zero uint64 (de Bruijn, x ^ (x - 1) form)."""
    return _DEBRUIJN[((x ^ (x - np.uint64(1))) * _DEBRUIJN_MUL) >> np.uint64(58)]


@njit(cache=True, inline="always")
def _row(bounds, lo, hi, value):
    """The elementary interval holding ``value``: the last start <= value."""
    while lo < hi:
        mid = (lo + hi) >> 1
        if bounds[mid] <= value:
            lo = mid + 1
        else:
            hi = mid
    return lo - 1


@njit(cache=True)
def first_match(meta, bounds, bits, wild, k, start, src, dst, proto, sport, dport):
    """The first rule at or after ``start`` whose field tests all hold (``rules``: none)."""
    n = meta[k, 0]
    words = meta[k, 1]
    if start >= n:
        return n
    w0 = meta[k, 17]
    r0 = (_row(bounds, meta[k, 2], meta[k, 3], src) - meta[k, 2]) * words + meta[k, 4]
    r1 = (_row(bounds, meta[k, 5], meta[k, 6], dst) - meta[k, 5]) * words + meta[k, 7]
    r2 = (_row(bounds, meta[k, 8], meta[k, 9], proto) - meta[k, 8]) * words + meta[k, 10]
    r3 = (_row(bounds, meta[k, 11], meta[k, 12], sport) - meta[k, 11]) * words + meta[k, 13]
    r4 = (_row(bounds, meta[k, 14], meta[k, 15], dport) - meta[k, 14]) * words + meta[k, 16]
    w = start >> 6
    first_mask = ~np.uint64(0) << np.uint64(start & 63)
    while w < words:
        x = ((bits[r0 + w] | wild[w0 + w]) & (bits[r1 + w] | wild[w0 + words + w])
             & (bits[r2 + w] | wild[w0 + 2 * words + w])
             & (bits[r3 + w] | wild[w0 + 3 * words + w])
             & (bits[r4 + w] | wild[w0 + 4 * words + w]))
        if w == start >> 6:
            x &= first_mask
        if x != 0:
            return w * 64 + _lowest_bit(x)
        w += 1
    return n
