"""Replay's decision cache: a packet whose pipeline walk is known takes the known verdict,
while every connection tracker it would touch still sees it.

The pipeline is a deterministic function of two inputs: the packet's fields that the rules,
routing, MTU and TTL checks read (and where it entered), and the answers of the nodes'
connection trackers. Everything else (TCP sequence numbers, windows, the ephemeral port when no
rule reads source ports) reaches the verdict only through conntrack. So the cache is a trie:

- its **root key** is every non-conntrack input (:meth:`DecisionCache._key`): the entry point,
  addresses, protocol, ICMP type/code, DF, the TTL up to what the hop limit can tell apart, the
  interval of known MTUs the length falls in, and each port's interval among the port bounds
  of every rule and tunnel port of the nodes (two ports in one interval match the same rules);
  a port itself when a node matches that side's port in an ipset (named ports), both ports
  and the echo id when NAT rewrote the packet (the nat column shows them), and the TCP flags
  when a node's rule reads them (a walk that needed a field its key left out is not stored,
  and its key's base holds the field from then on);
- each **step** is one call the walk made on a conntrack table (``process``, ``confirm``,
  ``discard``, ``translate``, ``dnat``, ``masquerade``), with its arguments written relative to
  the packet (the packet key with NAT's rewrites, entry ids as "the entry step k found");
  its children are keyed by what the table answered, as far as the pipeline reads it;
- a **leaf** holds the walk's per-packet columns and deciding rule.

A packet walks the trie making each call *for real* on the run's tables (so TCP window
tracking, timeouts, early drop and NAT port choice happen exactly as in a full walk) and
follows the answer. A leaf is a hit. An answer no child has is a miss: the full pipeline then
runs with the calls already made served from the log (a deterministic walk makes the same calls
in the same order), and the rest of its calls are made for real and added as a new branch.
Walks the cache cannot express (tunnels, which carry per-packet framing and WireGuard
counters; MTU drops, whose text names the length; fields a node reads but the key left out)
become opaque leaves: always the full walk. The same "served" walk rebuilds a hit's full
trace when the flow table needs it to explain the flow.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections import Counter
from dataclasses import dataclass, field, replace
from time import process_time
from typing import Any

from tracer.conntrack.tuples import CtVerdict, NatRewrite, PacketKey
from tracer.dataplane.ir import IpvsMatch, PortMatch, SetMatch, TcpFlagsMatch
from tracer.dataplane.packet import Packet
from tracer.dataplane.pipeline import Outcome, Probe
from tracer.dataplane.reasons import DropReason
from tracer.dataplane.stages import conntrack_key
from tracer.dataplane.state import Pins, RunState
from tracer.dataplane.trace import (ConntrackRecord, DecapRecord, DropRecord, EncapRecord,
                                    NatRecord)
from tracer.trace.assemble import Dataplane

# The conntrack status bits the pipeline reads (stages.Conntrack.lookup).
READ_STATUS = frozenset({"SRC_NAT", "DST_NAT", "CONFIRMED"})
# Packet key fields NAT may rewrite between the entry and a later conntrack lookup.
REWRITTEN = ("src", "dst", "sport", "dport")
ENTRY_METHODS = frozenset({"confirm", "discard", "translate", "dnat", "masquerade"})
DEFAULT_MTU = 1500          # InterfaceTable.mtu's answer for an unknown device
NOW = "<now>"               # an argument that is the run's clock


class ServedMismatch(AssertionError):
    """A served walk asked for a call other than the one logged: the walk is not
    deterministic in what the key holds (a bug in the key, never a user error)."""


# ---------------------------------------------------------------------- calls and answers

@dataclass
class _Log:
    """The conntrack calls of one walk: made for real, or served from ``served``."""

    served: list[tuple[tuple, Any]]
    real: RunState | None              # None: every call must be served
    calls: list[tuple[tuple, Any]] = field(default_factory=list)

    def call(self, node: str, method: str, args: tuple, kwargs: dict) -> Any:
        concrete = (node, method, args, tuple(sorted(kwargs.items())))
        i = len(self.calls)
        if i < len(self.served):
            logged, result = self.served[i]
            if logged != concrete:
                raise ServedMismatch(f"call {i}: walk asked {concrete}, log has {logged}")
        elif self.real is None:
            raise ServedMismatch(f"call {i} ({method} on {node}) beyond the served log")
        else:
            result = getattr(self.real.conntrack(node), method)(*args, **kwargs)
        self.calls.append((concrete, result))
        return result


class _TableProxy:
    def __init__(self, log: _Log, node: str):
        self._log, self._node = log, node

    def __getattr__(self, method: str):
        def call(*args, **kwargs):
            return self._log.call(self._node, method, args, kwargs)
        return call


class _LoggedState:
    """What the pipeline sees as the run state: the real one, conntrack through the log."""

    def __init__(self, base, log: _Log):
        self._base, self._log = base, log

    def conntrack(self, node: str) -> _TableProxy:
        return _TableProxy(self._log, node)

    def __getattr__(self, name: str):
        return getattr(self._base, name)


@dataclass
class _Scratch:
    """A stand-in run state for a fully served walk (changes nothing of the run)."""

    now: float
    drops: Counter = field(default_factory=Counter)
    tunnel_sessions: dict = field(default_factory=dict)


def answer(result: Any, earlier: list) -> Any:
    """What of a call's result the pipeline reads: the branch label. ``earlier``: the walk's
    calls before this one."""
    if isinstance(result, CtVerdict):
        # tcp_state is only written down (the packet table's tcp_state column): a hit takes it
        # from its own call (Leaf.tcp_state_call), so it does not split the trie.
        return (result.ctstate, result.direction, result.entry_id is None, result.reason,
                result.dropped, result.status & READ_STATUS)
    if isinstance(result, NatRewrite):
        # NatBinding reads the addresses only when a side changes; NatRule reads them after
        # its own DNAT/MASQUERADE call (then the walk is keyed by its exact ports).
        if result.src_changed or result.dst_changed or any(
                c[1] in ("dnat", "masquerade") for c, _ in earlier):
            return result
        return "unchanged"
    return result


# ---------------------------------------------------------------------- the trie

@dataclass
class Leaf:
    """A walk's end: the per-packet columns it gave and what else it changed."""

    values: dict                       # outcome and deciding-rule columns
    drop: tuple[str, str] | None       # (node, reason) counted in RunState.drops
    outcome: Outcome                   # the recorded walk (its hops name the path)
    translation: tuple[tuple, tuple] | None = None
    tcp_state_call: int | None = None  # the call whose answer is the tcp_state column

    def columns(self, calls: list) -> dict:
        """The row's columns for a hit whose conntrack calls answered ``calls``."""
        if self.tcp_state_call is None:
            return self.values
        return {**self.values, "tcp_state": calls[self.tcp_state_call][1].tcp_state}

    @property
    def ends_in_drop(self) -> bool:
        """As ``PacketTrace.drop`` sees it: the last record of the last hop is a drop."""
        hops = self.outcome.hops
        return bool(hops and hops[-1].stages and isinstance(hops[-1].stages[-1], DropRecord))


OPAQUE = "opaque"                      # a walk the cache cannot express: always walk in full


@dataclass
class _Step:
    call: tuple                        # (node, method, abstract args, kwargs)
    children: dict = field(default_factory=dict)   # answer -> _Step | Leaf | OPAQUE


@dataclass
class Hit:
    leaf: Leaf
    calls: list                        # this packet's calls: to rebuild its trace on demand


@dataclass
class Miss:
    outcome: Outcome
    token: tuple | None                # where to learn the walk (None: do not)


# ---------------------------------------------------------------------- the cache

class DecisionCache:
    """The trie of known walks over one dataplane, for one run state."""

    def __init__(self, dataplane: Dataplane):
        self.dataplane = dataplane
        self.pipeline = dataplane.pipeline
        self.roots: dict[tuple, Any] = {}
        # base key -> which exact fields its keys hold: (sport and echo id, dport, TCP flags)
        self.shapes: dict[tuple, tuple[bool, bool, bool]] = {}
        self.global_reads = (False, False, False)   # the known nodes' reads: a base's default
        self.mtus: list[int] = [DEFAULT_MTU]
        self.port_bounds: list[int] = [0]     # a port's class: bisect_right over these
        self._known_nodes: set[str] = set()
        self._reads: dict[str, tuple[bool, bool, bool]] = {}
        self.hits = self.misses = self.opaque = 0
        self.walk_seconds = 0.0               # CPU time of the full walks (misses, opaque)

    # ---------------------------------------------------------------- keys

    def _key(self, probe: Probe) -> tuple[tuple, tuple]:
        p = probe.packet
        length = bisect_left(self.mtus, p.length)      # p.length <= mtus[i] for i >= this
        bounds = self.port_bounds
        base = (probe.node, probe.iif, probe.origin, probe.source, probe.destination,
                int(p.src), int(p.dst), p.protocol,
                None if p.sport is None else bisect_right(bounds, p.sport),
                None if p.dport is None else bisect_right(bounds, p.dport), p.icmp_type,
                p.icmp_code, p.tcp_flags is None, p.df,
                min(p.ttl, self.pipeline.max_hops + 2), length, len(self.mtus), len(bounds))
        shape = self.shapes.get(base, self.global_reads)
        by_sport, by_dport, by_flags = shape
        extra = (shape, p.sport if by_sport else None, p.icmp_id if by_sport else None,
                 p.dport if by_dport else None, p.tcp_flags if by_flags else None)
        return base, extra

    def node_reads(self, name: str) -> tuple[bool, bool, bool]:
        """Whether node ``name`` needs the exact source port, the exact destination port (an
        ipset with a port dimension reads that side; an IPVS match both), the TCP flags."""
        reads = self._reads.get(name)
        if reads is None:
            node = self.dataplane.nodes[name]
            ipsets = node.ruleset.ipsets
            sport = dport = flags = False
            for m in _matches(node):
                if isinstance(m, IpvsMatch):
                    sport = dport = True
                elif isinstance(m, SetMatch) and m.set_name in ipsets:
                    # set_contains: dimension i reads the side flag i names (dst without one).
                    kinds = ipsets[m.set_name].set_type.partition(":")[2].split(",")
                    for i, kind in enumerate(kinds):
                        if kind == "port" or "port" in kind:
                            side = m.flags[i] if i < len(m.flags) else "dst"
                            sport |= side != "dst"
                            dport |= side == "dst"
                elif isinstance(m, TcpFlagsMatch):
                    flags = True
            reads = self._reads[name] = (sport, dport, flags)
        return reads

    def _learn_nodes(self, nodes: set[str]) -> bool:
        """Add the MTUs of ``nodes``' devices and the port bounds of their rules and tunnel
        devices; True when one was new (a key's interval may then have split: the walk is
        not stored)."""
        grew = False
        for name in nodes - self._known_nodes:
            self._known_nodes.add(name)
            node = self.dataplane.nodes[name]
            mtus, bounds = set(), set()
            for iface in node.interfaces.interfaces:
                mtus.add(iface.mtu)
                if iface.udp_port is not None:            # tunnel_receiving reads dport
                    bounds.update((iface.udp_port, iface.udp_port + 1))
            for m in _matches(node):
                if isinstance(m, PortMatch):
                    for lo, hi in m.ranges:
                        bounds.update((lo, hi + 1))
            grew |= _merge(self.mtus, mtus) | _merge(self.port_bounds, bounds)
        return grew

    # ---------------------------------------------------------------- walking

    def run(self, probe: Probe, state: RunState, pins: Pins) -> Hit | Miss:
        """The walk of ``probe``: a :class:`Hit` from the trie (its conntrack calls made), or a
        :class:`Miss` after the full pipeline ran (learn it with :meth:`learn`)."""
        base, extra = self._key(probe)
        root_key = (base, extra)
        packet_key = conntrack_key(probe.packet)
        node = self.roots.get(root_key)
        log = _Log([], state)
        parent: tuple | None = None            # (step, answer) whose child is missing
        while isinstance(node, _Step):
            args = self._concrete(node.call, packet_key, log, state.now)
            result = log.call(*args)
            label = answer(result, log.calls[:-1])
            child = node.children.get(label)
            if child is None:
                parent = (node, label)
                break
            node = child
        if isinstance(node, Leaf):
            self.hits += 1
            if node.drop is not None:
                state.drops[node.drop] += 1
            return Hit(node, log.calls)
        # A miss (or an opaque walk): the full pipeline, the calls made so far served.
        full = _Log(log.calls, state)
        started = process_time()
        outcome = self.pipeline.run(probe, _LoggedState(state, full), pins)
        self.walk_seconds += process_time() - started
        if node is OPAQUE:
            self.opaque += 1
            return Miss(outcome, None)
        self.misses += 1
        return Miss(outcome, (root_key, parent, len(log.calls), full.calls, packet_key,
                              (len(self.mtus), len(self.port_bounds)), state.now))

    @staticmethod
    def _concrete(call: tuple, packet_key: PacketKey, log: _Log, now: float) -> tuple:
        node, method, args, kwargs = call
        if method == "process":
            delta, rest = args
            key = replace(packet_key, **dict(delta)) if delta else packet_key
            return node, method, (key, *(now if a == NOW else a for a in rest)), dict(kwargs)
        out = []
        for a in args:
            if isinstance(a, tuple) and len(a) == 2 and a[0] == "<entry>":
                out.append(log.calls[a[1]][1].entry_id)
            else:
                out.append(now if a == NOW else a)
        return node, method, tuple(out), {k: now if v == NOW else v for k, v in kwargs}

    def learn(self, probe: Probe, miss: Miss, values: dict,
              translation: tuple[tuple, tuple] | None) -> None:
        """Store a missed walk: ``values`` are the columns the replay made of its outcome."""
        if miss.token is None:
            return
        root_key, parent, made, calls, packet_key, versions, now = miss.token
        outcome = miss.outcome
        visited = {hop.node for hop in outcome.hops}
        if self._learn_nodes(visited | {probe.node}) or versions != (len(self.mtus),
                                                                     len(self.port_bounds)):
            return          # a new MTU or port bound: the key's intervals were too coarse
        end: Any = self._leaf(probe, root_key, outcome, values, translation, visited, calls)
        steps = [self._abstract(c, packet_key, calls, i, now) for i, (c, _) in
                 enumerate(calls[made:], start=made)]
        # Chain the new calls after the known ones; an inexpressible call ends in OPAQUE.
        tail: Any = end
        for i in range(len(steps) - 1, -1, -1):
            if steps[i] is None:
                tail = OPAQUE
                continue
            step = _Step(steps[i])
            step.children[answer(calls[made + i][1], calls[:made + i])] = tail
            tail = step
        if parent is None:
            if root_key not in self.roots:
                self.roots[root_key] = tail
        else:
            step, label = parent
            step.children.setdefault(label, tail)

    def _leaf(self, probe: Probe, root_key: tuple, outcome: Outcome, values: dict,
              translation, visited: set[str], calls: list) -> Leaf | str:
        stages = [s for hop in outcome.hops for s in hop.stages]
        if any(isinstance(s, (EncapRecord, DecapRecord)) for s in stages):
            return OPAQUE       # framing and WireGuard counters are per packet
        drop = outcome.drop
        if drop is not None and drop.reason == DropReason.MTU_EXCEEDED:
            return OPAQUE       # its text names the packet's length
        nat = any(isinstance(s, NatRecord) for s in stages)   # the nat column shows ports
        needs = [nat, nat, False]
        for name in visited:
            needs = [a or b for a, b in zip(needs, self.node_reads(name))]
        for name in self._known_nodes:
            self.global_reads = tuple(a or b for a, b in zip(self.global_reads,
                                                             self.node_reads(name)))
        base, (keyed, *_) = root_key
        stored = self.shapes.get(base)
        self.shapes[base] = tuple(needs) if stored is None else tuple(
            a or b for a, b in zip(stored, needs))
        if any(need and not have for need, have in zip(needs, keyed)):
            return OPAQUE       # the key left out a field this walk reads (next time it won't)
        # The packet table's ct_state/tcp_state are the walk's first conntrack record; a
        # tracked one is the answer of the walk's first process call (its only caller).
        first = next((s for s in stages if isinstance(s, ConntrackRecord)), None)
        call = None
        if first is not None and first.ctstate != "UNTRACKED":
            call = next(i for i, (c, _) in enumerate(calls) if c[1] == "process")
            assert calls[call][1].tcp_state == values.get("tcp_state")
        return Leaf(dict(values), (drop.node, drop.reason) if drop is not None else None,
                    outcome, translation, call)

    @staticmethod
    def _abstract(call: tuple, packet_key: PacketKey, calls: list, index: int,
                  now: float) -> tuple | None:
        """A concrete call written relative to the packet; None when it cannot be."""
        node, method, args, kwargs = call

        def arg(a):
            if isinstance(a, float):
                return NOW if a == now else None
            return a

        if method == "process":
            key, *rest = args
            if not isinstance(key, PacketKey):
                return None
            delta = tuple((f, getattr(key, f)) for f in REWRITTEN
                          if getattr(key, f) != getattr(packet_key, f))
            if replace(packet_key, **dict(delta)) != key:
                return None     # not the packet (a tunnel's outer packet, an ICMP error)
            rest = [arg(a) for a in rest]
            if any(a is None for a in rest):
                return None
            return node, method, (delta, tuple(rest)), _abstract_kwargs(kwargs, now)
        if method not in ENTRY_METHODS or not args:
            return None
        entry = _entry_step(calls, index, node, args[0])
        if entry is None:
            return None
        rest = [arg(a) for a in args[1:]]
        if any(a is None for a in rest):
            return None
        kw = _abstract_kwargs(kwargs, now)
        if kw is None:
            return None
        return node, method, (("<entry>", entry), *rest), kw


def _matches(node):
    for chains in node.ruleset.tables.values():
        for chain in chains.values():
            for rule in chain.rules:
                yield from rule.matches


def _merge(sorted_values: list[int], new: set[int]) -> bool:
    added = False
    for value in new:
        i = bisect_left(sorted_values, value)
        if i == len(sorted_values) or sorted_values[i] != value:
            sorted_values.insert(i, value)
            added = True
    return added


def _abstract_kwargs(kwargs: tuple, now: float | None) -> tuple | None:
    out = []
    for k, v in kwargs:
        if isinstance(v, float):
            if v != now:
                return None
            v = NOW
        out.append((k, v))
    return tuple(out)


def _entry_step(calls: list, index: int, node: str, entry_id) -> int | None:
    """The latest earlier process call on ``node`` that found entry ``entry_id``."""
    if entry_id is None:
        return None
    for i in range(index - 1, -1, -1):
        (n, method, _, _), result = calls[i]
        if n == node and method == "process" and isinstance(result, CtVerdict) and \
                result.entry_id == entry_id:
            return i
    return None


def served_outcome(pipeline, probe: Probe, calls: list, now: float, pins: Pins) -> Outcome:
    """The full walk of a packet whose conntrack calls are ``calls`` (a hit's), rebuilt
    without touching the run: every call is served from the log."""
    return pipeline.run(probe, _LoggedState(_Scratch(now), _Log(list(calls), None)), pins)


def replayable(packet: Packet) -> bool:
    """Packets the cache takes: not a tunnel's outer packet nor an ICMP error (their inner
    packet is read by conntrack and by the tunnel code)."""
    return packet.inner is None
