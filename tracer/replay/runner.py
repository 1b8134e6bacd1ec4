"""Replay captured packets through the dataplane, in capture order, one run state for all.

Each row of each capture becomes one :class:`~tracer.dataplane.pipeline.Probe` (where it
entered: :mod:`tracer.replay.entry`) and runs through the shared, immutable dataplane with one
:class:`~tracer.dataplane.state.RunState`: the nodes' connection trackers remember earlier
packets, and the capture's timestamps set the conntrack clock, so a reply is ESTABLISHED, a
packet after its entry timed out is NEW again, and a stray segment gets what
``nf_conntrack_tcp_loose`` makes of it.

Rows the reader could not classify are verdicts too: malformed headers and failed reassembly
are *dropped* (the kernel drops them before netfilter, ``ip_rcv_core`` / ``ip_defrag``), frames
that are not IPv4 are *not parsed*. Nothing a capture holds ends the run.

The result is column lists (:class:`Replay`), turned into frames by :mod:`tracer.replay.tables`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
import zlib
from dataclasses import dataclass, field
from ipaddress import IPv4Address
from time import process_time

import numpy as np

from tracer.capture import REASONS, SKIPS, Capture, Frame, Reason, Skip, Tunnel, category
from tracer.dataplane.packet import Packet, tcp_flag_names
from tracer.dataplane.pipeline import Outcome, Probe
from tracer.dataplane.state import DEFAULT_CONNTRACK_MAX
from tracer.dataplane.ir import SetMark
from tracer.dataplane.trace import ConntrackRecord, NatRecord
from tracer.explain import explain
from tracer.explain.deciding import decision_for
from tracer.policy.felix import mark_bits
from tracer.protocols import ICMP, PORTED, TCP, display_name
from tracer.render.trace_pcap import trace_frames
from tracer.replay.decisions import DecisionCache, Hit, replayable, served_outcome
from tracer.replay.entry import At, Entries, NotEntered
from tracer.replay.rows import RowPackets
from tracer.trace.assemble import Dataplane
from tracer.trace.result import Decision, PacketTrace
from tracer.trace.session import Session, delivered_packet

ROW_CHUNK = 65536          # capture rows turned into packets at a time

# Verdicts of the per-packet table.
ALLOWED, DROPPED, NOT_PARSED, NOT_MODELLED = "allowed", "dropped", "not parsed", "not modelled"

# column -> pandas dtype, in the order the tables show them.
PACKET_COLUMNS: dict[str, str] = {
    "capture": "string", "frame": "Int64", "time_ns": "Int64",
    "src": "string", "sport": "Int64", "dst": "string", "dport": "Int64",
    "protocol": "string", "tcp_flags": "string", "length": "Int64", "tunnel": "string",
    "entry": "string", "source": "string", "destination": "string",
    "verdict": "string", "reason": "string", "detail": "string", "node": "string",
    "delivered_to": "string",
    "deciding_table": "string", "deciding_chain": "string", "deciding_rule": "Int64",
    "policy": "string", "policy_kind": "string", "tier": "string", "policy_rule": "Int64",
    "direction": "string", "ct_state": "string", "tcp_state": "string", "nat": "string",
    "flow": "Int64",
}

# Felix's policy and profile chains: an allowed packet is decided where one sets the accept mark.
POLICY_CHAINS = ("cali-pi-", "cali-po-", "cali-pri-", "cali-pro-")

# Rows whose IPv4 header could not be read: their addresses are not addresses.
NO_ADDRESSES = frozenset({Reason.BAD_VERSION, Reason.BAD_IHL, Reason.TRUNCATED_IP_HEADER})

TUNNEL_NAMES = {Tunnel.NONE: "", Tunnel.IPIP: "ipip", Tunnel.VXLAN: "vxlan",
                Tunnel.WIREGUARD: "wireguard"}


@dataclass
class Replay:
    """What a replay produced: per-packet columns, the explained trace of each flow's
    representative packet, and where each row's bytes are (for the annotated pcapng)."""

    columns: dict[str, list] = field(default_factory=lambda: {c: [] for c in PACKET_COLUMNS})
    why: dict[int, str] = field(default_factory=dict)           # flow -> why (explained)
    selected_by: dict[int, str] = field(default_factory=dict)   # flow -> policies selecting
    keys: list[tuple | None] = field(default_factory=list)      # each row's flow key
    hop_frames: list = field(default_factory=list)   # with hops=True: Frame per path point
    origin: list[tuple[int, int]] = field(default_factory=list)  # (capture index, row | -1)
    captures: list[Capture] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    fast_path: str = "off"     # the decision cache: "off (why)" or its hit counts
    explain_seconds: float = 0.0   # CPU time spent explaining the flows (for the benchmark)

    def __len__(self) -> int:
        return len(self.origin)


def replay_captures(dataplane: Dataplane, captures: Sequence[Capture], *, at: At | None = None,
                    tcp_loose: bool = True, capacity: int = DEFAULT_CONNTRACK_MAX,
                    progress: Callable[[int], None] | None = None,
                    part: tuple[int, int] = (0, 1), first_ns: int | None = None,
                    hops: bool = False, fast: bool = True) -> Replay:
    """Send every row of ``captures`` (in order, files one after another) through
    ``dataplane`` with one run state; ``progress(n)`` is told after every ``n`` rows.

    ``part=(k, n)`` replays only the flows whose key hashes to ``k`` of ``n`` (rows that
    belong to no flow go to part 0), for a scale-out where each part has its own conntrack;
    ``first_ns`` is then the whole run's first timestamp, so every part keeps the same clock.
    ``hops``: also keep each packet as it is at every point of its path (``hop_frames``).
    ``fast``: take known walks from the decision cache (:mod:`tracer.replay.decisions`; the
    same tables, tested); it does not apply with ``hops`` (every path point is needed), and
    ``Replay.fast_path`` says whether it ran and how often it hit."""
    run = _Run(dataplane, Entries(dataplane, at), tcp_loose=tcp_loose, capacity=capacity,
               part=part, first_ns=first_ns)
    run.hops = hops
    if fast and not hops:
        run.fast = DecisionCache(dataplane)
    for index, capture in enumerate(captures):
        run.result.captures.append(capture)
        run.result.warnings.extend(f"{capture.path}: {w}" for w in capture.warnings)
        run.capture(index, capture, progress)
    return run.finish()


class _Run:
    def __init__(self, dataplane: Dataplane, entries: Entries, *, tcp_loose: bool,
                 capacity: int, part: tuple[int, int] = (0, 1), first_ns: int | None = None):
        self.dataplane = dataplane
        self.entries = entries
        self.session = Session(dataplane, tcp_loose=tcp_loose, capacity=capacity)
        self.result = Replay()
        self.flows: dict[tuple, int] = {}
        self.decisions: dict[tuple, Decision] = {}
        self.first_ns = first_ns
        self.part, self.parts = part
        self.errors = 0
        self.translations: dict[tuple, tuple] = {}     # reply as seen -> as its sender sent it
        self.hops = False
        self.accept_marks: dict[str, int] = {}     # node -> its felix's accept bit
        self.fast: DecisionCache | None = None
        self.names: dict[IPv4Address, str] = {}     # address -> its text, for the columns
        self.lazy: dict[int, tuple] = {}    # flow -> (probe, calls, now) of a cached trace
        # flow -> (trace, dropped?) of the packet that explains it: the first drop, else the first
        self.representative: dict[int, tuple[PacketTrace, bool]] = {}

    # ------------------------------------------------------------------ per capture

    def capture(self, index: int, capture: Capture, progress) -> None:
        skipped = {int(s["frame"]): s for s in capture.skipped}
        rows = np.argsort(capture.meta["frame"], kind="stable")
        frames = capture.meta["frame"]
        done = 0
        next_skip = sorted(skipped)
        k = 0
        addresses: dict = {}
        for start in range(0, len(rows), ROW_CHUNK):
            chunk = rows[start:start + ROW_CHUNK]
            packets = RowPackets(capture.packets, chunk, addresses)
            for j, row in enumerate(chunk.tolist()):
                frame = int(frames[row])
                while k < len(next_skip) and next_skip[k] < frame:
                    self._skipped(index, capture, skipped[next_skip[k]])
                    k += 1
                self._row(index, capture, row, packets[j])
                done += 1
                if progress is not None and done % 256 == 0:
                    progress(256)
        for frame in next_skip[k:]:
            self._skipped(index, capture, skipped[frame])
        if progress is not None:
            progress(done % 256)

    def _skipped(self, index: int, capture: Capture, skip: np.void) -> None:
        if self.part != 0:
            return
        values = _blank(capture.path, int(skip["frame"]))
        values.update(verdict=NOT_PARSED, reason="skipped",
                      detail=f"not parsed: {SKIPS[Skip(int(skip['reason']))]}")
        self._append(values, (index, -1))

    def _row(self, index: int, capture: Capture, row: int, packet: Packet) -> None:
        meta = capture.meta[row]
        values = _blank(capture.path, int(meta["frame"]))
        values.update(_header_columns(packet, meta, self.names))
        reason = Reason(int(meta["reason"]))
        kind = category(reason)
        key = None if kind in ("malformed", "fragment") else flow_key(packet)
        if self.parts > 1 and partition(key, self.parts) != self.part:
            return
        if key is None:
            # ip_rcv_core / ip_defrag drop these before any table sees them.
            if reason in NO_ADDRESSES:
                values.update(src=None, dst=None, protocol=None, length=None, sport=None,
                              dport=None, tcp_flags=None)
            values.update(verdict=DROPPED, reason="malformed" if kind == "malformed" else
                          "fragment", detail=f"not parsed: {REASONS[reason][1]}")
            self._append(values, (index, row))
            return
        self._clock(int(meta["ts_ns"]))
        flow = self._flow(key)
        values["flow"] = flow
        sent_as = self._untranslated(packet)
        try:
            probe = self.entries.probe(sent_as, meta)
        except NotEntered as why:
            values.update(verdict=NOT_MODELLED, reason="outside-cluster", detail=str(why))
            self._append(values, (index, row), key)
            return
        got = None
        try:
            if self.fast is not None and replayable(probe.packet):
                got = self.fast.run(probe, self.session.state, self.session.pins)
                if isinstance(got, Hit):
                    self._hit(values, probe, got, flow, sent_as, packet, kind, reason)
                    self._append(values, (index, row), key)
                    return
                outcome = got.outcome
            else:
                outcome = self.dataplane.pipeline.run(probe, self.session.state,
                                                      self.session.pins)
        except Exception as err:   # noqa: BLE001 - a dataplane bug must not end the replay
            # The row says so and the run goes on; the warning makes it impossible to miss.
            values.update(verdict=NOT_MODELLED, reason="internal-error",
                          detail=f"internal error: {type(err).__name__}: {err}")
            self.errors += 1
            self._append(values, (index, row), key)
            return
        trace = self._trace(probe, outcome)
        walked = _outcome_columns(probe, outcome)
        decision = self._decision(trace)
        if decision is not None:
            walked.update(_decision_columns(decision))
        values.update(walked)
        translation = self._translation(probe.packet, outcome)
        if translation is not None:
            self.translations[translation[0]] = translation[1]
        if got is not None:
            self.fast.learn(probe, got, walked, translation)
        self._adjust_detail(values, sent_as is not packet, sent_as, kind, reason)
        self._keep_representative(flow, trace)
        self.lazy.pop(flow, None)
        if self.hops:
            self._hop_frames(trace, int(meta["frame"]), int(meta["ts_ns"]), values)
        self._append(values, (index, row), key)

    # ------------------------------------------------------------------ helpers

    def _append(self, values: dict, origin: tuple[int, int], key: tuple | None = None) -> None:
        for name, column in self.result.columns.items():
            column.append(values.get(name))
        self.result.origin.append(origin)
        self.result.keys.append(key)

    def _hit(self, values: dict, probe: Probe, hit: Hit, flow: int, sent_as: Packet,
             packet: Packet, kind: str, reason: Reason) -> None:
        """A walk the decision cache knew: its columns, and what else a walk leaves behind
        (the translation for the reply, the flow's representative trace, rebuilt on demand)."""
        leaf = hit.leaf
        values.update(leaf.columns(hit.calls))
        if leaf.translation is not None:
            self.translations[leaf.translation[0]] = leaf.translation[1]
        self._adjust_detail(values, sent_as is not packet, sent_as, kind, reason)
        kept = self.representative.get(flow)
        if kept is None or (leaf.ends_in_drop and not kept[1]):
            trace = self._trace(probe, leaf.outcome)
            self.representative[flow] = (trace, trace.drop is not None)
            self.lazy[flow] = (probe, hit.calls, self.session.state.now)

    @staticmethod
    def _adjust_detail(values: dict, resent: bool, sent_as: Packet | None, kind: str,
                       reason: Reason) -> None:
        if resent:
            values["detail"] += (f" (replayed as its sender sent it, before de-NAT: "
                                 f"{sent_as.describe()})")
        if kind == "unreadable":
            values["detail"] = f"{values['detail']} (outer packet only: {REASONS[reason][1]})"

    def _translation(self, sent: Packet, outcome: Outcome) -> tuple[tuple, tuple] | None:
        """A connection's first packet that NAT changed on its way (kube-proxy's DNAT to a
        Service backend, felix's MASQUERADE): its reply, as a capture next to the client
        shows it, is already de-NATed, which is not what the backend sent. Remember how the
        backend addressed it, so the reply is replayed from there (:meth:`_untranslated`)."""
        if outcome.drop is not None or sent.protocol not in PORTED:
            return None
        got = delivered_packet(outcome)
        before = (sent.src, sent.sport, sent.dst, sent.dport)
        after = (got.src, got.sport, got.dst, got.dport)
        if before == after:
            return None
        reply_seen = (sent.protocol, sent.dst, sent.dport, sent.src, sent.sport)
        return reply_seen, (got.dst, got.dport, got.src, got.sport)

    def _untranslated(self, packet: Packet) -> Packet:
        """``packet`` as its sender put it on the wire (see :meth:`_remember_translation`)."""
        if not self.translations or packet.protocol not in PORTED:
            return packet
        sent = self.translations.get((packet.protocol, packet.src, packet.sport, packet.dst,
                                      packet.dport))
        if sent is None:
            return packet
        return packet.with_(src=sent[0], sport=sent[1], dst=sent[2], dport=sent[3])

    def _clock(self, ts_ns: int) -> None:
        """Capture time drives conntrack: seconds since the first packet, never backwards
        (a capture merged from several interfaces can be slightly out of order)."""
        if self.first_ns is None:
            self.first_ns = ts_ns
        state = self.session.state
        state.now = max(state.now, (ts_ns - self.first_ns) / 1e9)

    def _flow(self, key: tuple) -> int:
        """Flow ids in order of first appearance."""
        flow = self.flows.get(key)
        if flow is None:
            flow = self.flows[key] = len(self.flows)
        return flow

    def _trace(self, probe: Probe, outcome: Outcome) -> PacketTrace:
        place = self.entries.place
        return PacketTrace(
            packet=probe.packet, src=place(probe.packet.src), dst=place(probe.packet.dst),
            assumptions=(), hops=outcome.hops,
            verdict="dropped" if outcome.drop else "allowed",
            reason=outcome.drop.reason if outcome.drop else None,
            delivered_to=outcome.delivered_to)

    def _decision(self, trace: PacketTrace) -> Decision | None:
        """The rule that decided: the dropping rule, else the accepting policy rule nearest
        the destination (the last accept-mark rule, as ``tracer.explain.deciding`` finds
        them). Cached per rule: formatting a rule's text is the slow part."""
        drop = trace.drop
        if drop is not None:
            if drop.event is None:
                return None
            node, event = drop.node, drop.event
        else:
            events = trace.netfilter_events()
            found = [(node, event) for node, event in events if self._accepts(node, event)] or \
                [(node, event) for node, event in events if _conntrack_accept(event)]
            if not found:
                return None
            node, event = found[-1]
        key = (node, event.table, event.chain, event.rule_number)
        decision = self.decisions.get(key)
        if decision is None:
            decision = self.decisions[key] = decision_for(node, event, self.dataplane)
        return decision

    def _accept_mark(self, node: str) -> int:
        mark = self.accept_marks.get(node)
        if mark is None:
            felix = self.dataplane.cluster.felix_for(node)
            mark = self.accept_marks[node] = mark_bits(self.dataplane.version, felix).accept
        return mark

    def _accepts(self, node: str, event) -> bool:
        rule = event.rule
        return (event.kind == "rule" and rule is not None and isinstance(rule.target, SetMark)
                and bool(rule.target.value & self._accept_mark(node))
                and event.chain.startswith(POLICY_CHAINS))

    def _hop_frames(self, trace: PacketTrace, frame: int, ts_ns: int, values: dict) -> None:
        """The packet where it was sent, on every underlay it crossed (tunnel framing
        included, byte-exact) and where it was received; the last carries the verdict."""
        points = trace_frames(trace)
        verdict = f"calico-trace: {values['verdict']}" + (
            f" [{values['reason']}] on {values['node']}" if values.get("reason") else "")
        if values.get("policy"):
            verdict += f"\ndecided by {values['deciding_table']}/{values['deciding_chain']} " \
                       f"rule {values['deciding_rule']}: {values['policy']}"
        for i, (iface, where, data) in enumerate(points):
            comment = f"frame {frame}: {where}"
            if i == len(points) - 1:
                comment += "\n" + verdict
            # Microseconds apart, so tools keep the path's order within one captured packet.
            self.result.hop_frames.append(Frame(data, iface, ts_ns / 1e9 + i * 1e-6, comment))

    def _keep_representative(self, flow: int, trace: PacketTrace) -> None:
        kept = self.representative.get(flow)
        if kept is None or (trace.drop is not None and not kept[1]):
            self.representative[flow] = (trace, trace.drop is not None)

    def finish(self) -> Replay:
        """Explain each flow's representative packet. Connections from one pod to the same
        port of another are explained alike (only the client port differs): once."""
        if self.entries.foreign:
            self.result.warnings.append(
                f"--at {self.entries.at.label}: {self.entries.foreign} packet(s) neither from "
                "nor to that pod (entered where their source is)")
        if self.errors:
            self.result.warnings.append(
                f"{self.errors} packet(s) hit an internal error of the dataplane model "
                "(verdict 'not modelled', reason internal-error); please report it")
        said: dict[tuple, tuple[str, str, str]] = {}
        started = process_time()
        for flow, (trace, _) in self.representative.items():
            packet = trace.packet
            key = (trace.src.label, trace.dst.label, packet.protocol, packet.dport,
                   packet.icmp_type, packet.tcp_flags, trace.verdict, trace.reason,
                   trace.delivered_to, _last_events(trace))
            if key not in said:
                if flow in self.lazy:        # a cached walk: rebuild its exact trace
                    probe, calls, now = self.lazy[flow]
                    trace = self._trace(probe, served_outcome(
                        self.dataplane.pipeline, probe, calls, now, self.session.pins))
                explained = explain(self.dataplane, trace)
                said[key] = (explained.why, "; ".join(
                    f"{k}: {', '.join(names) or 'none'}"
                    for k, names in sorted(explained.selected_by.items())),
                    packet.describe())
            why, selected_by, described = said[key]
            # The text quotes the packet it explained; this flow's differs in its port only.
            self.result.why[flow] = why.replace(described, packet.describe())
            self.result.selected_by[flow] = selected_by
        self.result.explain_seconds = process_time() - started
        if self.fast is not None:
            cache = self.fast
            self.result.fast_path = (f"on: {cache.hits:,} packets from the decision cache, "
                                     f"{cache.misses:,} walked and learnt, {cache.opaque:,} "
                                     "walked in full (tunnels, MTU drops); the walks took "
                                     f"{cache.walk_seconds:.1f} CPU-s")
        elif self.hops:
            self.result.fast_path = "off: --hops needs every packet's full path"
        else:
            self.result.fast_path = "off: not asked for (--no-decision-cache)"
        return self.result


def _last_events(trace: PacketTrace) -> tuple:
    """Where the trace ended, rule by rule (two traces that end alike are explained alike)."""
    return tuple((hop.node, len(hop.stages)) for hop in trace.hops) + tuple(
        (event.table, event.chain, event.rule_number)
        for _, event in trace.netfilter_events()[-3:])


def _conntrack_accept(event) -> bool:
    """Felix's ``--ctstate RELATED,ESTABLISHED -j ACCEPT``: what lets a reply through."""
    prov = event.rule.provenance if event.rule is not None else None
    return event.kind == "rule" and prov is not None and prov.role == "conntrack-accept"


def flow_key(packet: Packet) -> tuple:
    """One key per connection, the same for both directions (the lower end first); an ICMP
    error has the key of the flow it quotes."""
    proto, a, pa, b, pb = _tuple(packet.inner) if packet.protocol == ICMP and packet.inner \
        else _tuple(packet)
    ends = sorted([(int(a), -1 if pa is None else pa), (int(b), -1 if pb is None else pb)])
    return (proto, *ends[0], *ends[1])


def partition(key: tuple | None, parts: int) -> int:
    """Which of ``parts`` a flow goes to: a hash stable across processes (unlike hash())."""
    if key is None or parts == 1:
        return 0
    return zlib.crc32(repr(key).encode()) % parts


def _tuple(packet: Packet) -> tuple:
    if packet.protocol in PORTED:
        return (packet.protocol, packet.src, packet.sport, packet.dst, packet.dport)
    if packet.protocol == ICMP:
        return (packet.protocol, packet.src, packet.icmp_id, packet.dst, packet.icmp_id)
    return (packet.protocol, packet.src, None, packet.dst, None)


def _blank(path: str, frame: int) -> dict:
    return {"capture": path, "frame": frame}


def _header_columns(packet: Packet, meta: np.void, names: dict) -> dict:
    src, dst = names.get(packet.src), names.get(packet.dst)
    if src is None:
        src = names[packet.src] = str(packet.src)
    if dst is None:
        dst = names[packet.dst] = str(packet.dst)
    values = {"time_ns": int(meta["ts_ns"]), "src": src, "dst": dst,
              "protocol": display_name(packet.protocol), "length": packet.length,
              "tunnel": TUNNEL_NAMES.get(Tunnel(int(meta["tunnel"])), "")}
    if packet.protocol in PORTED:
        values["sport"], values["dport"] = packet.sport, packet.dport
    if packet.protocol == TCP and packet.tcp_flags is not None:
        values["tcp_flags"] = tcp_flag_names(packet.tcp_flags)
    if packet.protocol == ICMP:
        values["tcp_flags"] = f"icmp {packet.icmp_type}/{packet.icmp_code}"
    return values


def _outcome_columns(probe: Probe, outcome: Outcome) -> dict:
    entry = f"{probe.node}/{probe.iif}" if probe.iif else f"{probe.node} (sent by the node)"
    values = {"entry": entry, "source": probe.source, "destination": probe.destination}
    if outcome.drop is not None:
        values.update(verdict=DROPPED, reason=str(outcome.drop.reason),
                      detail=outcome.drop.detail, node=outcome.drop.node)
    else:
        last = outcome.hops[-1].node if outcome.hops else probe.node
        values.update(verdict=ALLOWED, reason="", detail=f"delivered to {outcome.delivered_to}",
                      node=last, delivered_to=outcome.delivered_to)
    conntrack = [s for hop in outcome.hops for s in hop.stages if isinstance(s, ConntrackRecord)]
    if conntrack:
        values["ct_state"] = conntrack[0].ctstate
        values["tcp_state"] = conntrack[0].tcp_state
    nat = [s for hop in outcome.hops for s in hop.stages if isinstance(s, NatRecord)]
    if nat:
        values["nat"] = "; ".join(f"{n.node} {n.kind} {_end(n.before)} -> {_end(n.after)}"
                                  for n in nat)
    return values


def _end(packet: Packet) -> str:
    """The addresses NAT changes, source and destination with their ports."""
    def one(ip: IPv4Address, port: int | None) -> str:
        return f"{ip}:{port}" if port is not None else str(ip)
    return f"{one(packet.src, packet.sport)}>{one(packet.dst, packet.dport)}"


def _decision_columns(decision: Decision) -> dict:
    values = {"deciding_table": decision.table, "deciding_chain": decision.chain,
              "deciding_rule": decision.rule_number}
    prov = decision.provenance
    if prov is not None:
        values.update(policy=policy_label(prov), policy_kind=prov.policy_kind or "",
                      tier=prov.tier or "", policy_rule=prov.rule_index,
                      direction=prov.direction or "")
    return values


def policy_label(prov) -> str:
    """The Calico object behind a rule, as a person names it."""
    if prov.policy:
        return f"{prov.policy_kind or 'policy'} {prov.policy}"
    if prov.profile:
        return f"Profile {prov.profile}"
    if prov.role == "tier-end-drop":
        return f"end of tier {prov.tier}" if prov.tier else "end of tier"
    if prov.role == "conntrack-accept":
        return "established connection (conntrack)"
    if prov.role == "no-profile-drop":
        return "no profile accepted"
    return prov.role
