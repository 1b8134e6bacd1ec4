"""The live loop: every packet any live end sends goes through the cluster's pipeline, and
what is delivered is written into the destination end's TUN.

One process, one epoll over every end's TUN. A packet read from a pod enters its node's
pipeline at the pod's ``cali…`` interface, one from a node's own stack or the external host
where its source address places it, exactly as ``packet`` traces it, and walks on to the
destination node when it crosses nodes (the pipeline frames and unframes it for the underlay
itself). Conntrack lives in one :class:`~tracer.trace.session.Session` for the whole run, on
the wall clock, so handshakes, replies and timeouts behave as on a node. The dataplane may be
swapped (SIGHUP, a manifest changed) while the session, and so conntrack, stays.
"""
from __future__ import annotations

import os
import random
import select
import time
from collections.abc import Callable
from dataclasses import dataclass

from tracer.dataplane.packet import Packet
from tracer.dataplane.pipeline import Outcome, Probe
from tracer.dataplane.reasons import DropReason
from tracer.dataplane.state import Pins
from tracer.dataplane.trace import ConntrackRecord, DeliverRecord, DropRecord, MtuRecord
from tracer.encap.ipv4 import MalformedPacket
from tracer.errors import InputError
from tracer.explain import explain
from tracer.live import frames
from tracer.live.fastpath import FastPath
from tracer.live.flows import Flow, FlowTable, flow_key, should_print
from tracer.live.netns import Port
from tracer.live.topology import EXTERNAL, NODE_PREFIX
from tracer.model.places import place_of
from tracer.trace.assemble import Dataplane
from tracer.trace.result import PacketTrace
from tracer.trace.session import Session
from tracer.trace.tracing import locate, walk_assumptions

READ_BATCH = 64              # packets read from one TUN before looking at the others
TUN_READ_SIZE = 1 << 17      # a 64 KiB GSO packet and its virtio_net_hdr fit
POLL_SECONDS = 0.2           # how often signals and manifest changes are looked at


@dataclass
class Counters:
    read: int = 0
    delivered: int = 0
    dropped: int = 0
    answers: int = 0                     # ICMP errors and TCP resets sent for drops
    not_written: int = 0     # delivered but the destination's queue was full
    to_host: int = 0         # delivered to a node or outside: no program there in live mode
    internal_errors: int = 0 # the pipeline raised: a bug in the model, reported and survived


class LiveLoop:
    def __init__(self, dataplane: Dataplane, ports: dict[str, Port], *,
                 say: Callable[[str], None] = print, clock=time.monotonic,
                 draw: Callable[[], float] | None = None) -> None:
        self.ports = ports
        self.by_fd = {port.fd: port for port in ports.values()}
        # kube-proxy's random backend choice is drawn per new connection, as the kernel does
        self.session = Session(dataplane, pins=Pins(draw=draw or random.Random().random))
        self.fast = FastPath()
        self.flows = FlowTable()
        self.counters = Counters()
        self.say = say
        self.clock = clock
        self._last_tick = clock()
        self._vhdr: bytes | None = None      # the virtio_net_hdr of the frame being handled
        self._partial = False                # its transport checksum is left to the receiver

    @property
    def dataplane(self) -> Dataplane:
        return self.session.dataplane

    def swap(self, dataplane: Dataplane) -> None:
        """Run new packets through ``dataplane``; conntrack (the session's state) is kept, so
        connections already open stay open as a node's do when felix rewrites its rules."""
        self.session.dataplane = dataplane
        self.fast.clear()                        # remembered paths came from the old rules

    # ------------------------------------------------------------------ the loop

    def run(self, should_stop: Callable[[], bool], tick: Callable[[], None] = lambda: None,
            ) -> None:
        poller = select.epoll()
        for fd in self.by_fd:
            poller.register(fd, select.EPOLLIN)
        try:
            while not should_stop():
                for fd, _ in poller.poll(POLL_SECONDS):
                    self.drain(self.by_fd[fd])
                tick()
        finally:
            poller.close()

    def drain(self, port: Port) -> None:
        fd = port.fd
        for _ in range(READ_BATCH):
            try:
                data = os.read(fd, TUN_READ_SIZE)
            except BlockingIOError:
                return
            self.handle(port, data)

    # ------------------------------------------------------------------ one packet

    def handle(self, port: Port, data: bytes) -> None:
        self.counters.read += 1
        now = self.clock()
        self.session.advance(max(now - self._last_tick, 0.0))
        self._last_tick = now
        gso = 0
        try:
            if port.offload:       # the frame being handled: its virtio_net_hdr goes along
                self._vhdr, data, gso, self._partial = frames.split_vnet(data)
            if not data or data[0] >> 4 != 4:
                return                               # not IPv4 (the model is IPv4 only)
            # a TSO super-packet: MTU checks see one of its segments
            length = frames.segment_length(data, gso) if gso else len(data)
            if self._shortcut(data, length):
                return
            packet = frames.parse(data)
        except MalformedPacket as err:
            self._malformed(port, data, str(err))
            return
        if gso:
            packet = packet.with_(length=length)
        probe = self._probe(port, packet)
        if probe is None:                            # from outside to outside: not ours
            self.counters.to_host += 1
            return
        destination = probe.destination
        try:
            outcome = self.dataplane.pipeline.run(probe, self.session.state, self.session.pins)
        except Exception as err:                     # a model bug: lose the packet, not the run
            self.counters.dropped += 1
            self.counters.internal_errors += 1
            self.say(f"{_stamp()} DROP {packet.describe()} {probe.source} -> {destination}: "
                     f"internal error in the pipeline ({type(err).__name__}: {err}); "
                     "please report it")
            return
        flow, new = self.flows.record(packet, probe.source, destination)
        if outcome.drop is None:
            self._deliver(flow, new, probe, packet, data, outcome)
        else:
            self._drop(flow, new, port, probe, packet, data, outcome)

    def _probe(self, port: Port, packet: Packet) -> Probe | None:
        """Where the packet enters: a pod's cali… interface; for a node's own stack or the
        external host, wherever the sender's address places it (as ``packet`` does)."""
        cluster = self.dataplane.cluster
        if port.end.is_pod:
            return Probe(packet, port.end.node, port.end.interface, port.end.key,
                         place_of(cluster, packet.dst).label, "pod")
        try:
            return locate(cluster, packet)
        except InputError:                           # both ends outside the cluster
            return None

    def _port_of(self, delivered_to: str, packet: Packet) -> Port | None:
        """The end a delivery reaches: the pod, the node's own stack, or the external host
        when the packet is for its address (other outside addresses have no one there)."""
        kind, _, name = delivered_to.partition(" ")
        if kind == "pod":
            return self.ports.get(name)
        if kind == "host":
            return self.ports.get(f"{NODE_PREFIX}{name}")
        outside = self.ports.get(EXTERNAL)
        return outside if kind == "external" and outside and outside.end.ip == packet.dst \
            else None

    def _shortcut(self, data: bytes, length: int) -> bool:
        """Replay the remembered path of an established flow (see ``tracer.live.fastpath``)."""
        hit = self.fast.lookup(data, length, self.session.state)
        if hit is None:
            return False
        flow = self.flows.touch(hit.flow)
        target = self.ports.get(hit.target)
        if flow is None or target is None:
            return False
        flow.delivered += 1
        flow.verdict = f"delivered to {hit.delivered_to}"
        if hit.translation is None:
            out = frames.decrement_ttl(data, hit.ttl_drop)
        else:
            packet = frames.parse(data)
            t = hit.translation
            delivered = packet.with_(src=t.src, dst=t.dst, sport=t.sport, dport=t.dport,
                                     icmp_id=t.icmp_id, ttl=packet.ttl - hit.ttl_drop)
            out = frames.rewrite(data, packet, delivered, partial=self._partial)
        self._write(target, out, self._vhdr)
        self.counters.delivered += 1
        return True

    def _deliver(self, flow: Flow, new: bool, probe: Probe, packet: Packet, data: bytes,
                 outcome: Outcome) -> None:
        flow.delivered += 1
        flow.verdict = f"delivered to {outcome.delivered_to}"
        if new:
            flow.deciding = deciding_text(self._explained(probe, outcome))
            flow._first = (self.dataplane, probe, outcome)
        target = self._port_of(outcome.delivered_to or "", packet)
        if target is None:
            self.counters.to_host += 1
            return
        final = outcome.hops[-1].stages[-1]
        assert isinstance(final, DeliverRecord)
        if new and flow_key(final.packet) != flow_key(packet):   # NAT: the answers come
            self.flows.alias(flow_key(final.packet), flow)         # from the new address
        self.fast.learn(data, packet, target.end.key, flow_key(packet), outcome,
                        self.session.state.now)
        self._write(target, frames.rewrite(data, packet, final.packet, partial=self._partial),
                    self._vhdr)
        self.counters.delivered += 1

    def _drop(self, flow: Flow, new: bool, sender: Port, probe: Probe, packet: Packet,
              data: bytes, outcome: Outcome) -> None:
        drop = outcome.drop
        assert drop is not None
        self.counters.dropped += 1
        flow.dropped += 1
        flow.verdict, flow.node, flow.reason = "dropped", drop.node, str(drop.reason)
        flow._last_drop = (self.dataplane, probe, outcome)
        if new:
            flow._first = flow._last_drop
        self._send_error(sender, data, outcome, drop)
        show, held = should_print(flow, time.time())
        if not show:
            return
        trace = self._explained(probe, outcome)
        flow.deciding, flow.why = deciding_text(trace), trace.why
        more = f" (+{held} more)" if held else ""
        if drop.reason == DropReason.CONNTRACK_INVALID:      # say what conntrack objected to
            notes = [s.note for hop in outcome.hops for s in hop.stages
                     if isinstance(s, ConntrackRecord) and s.ctstate == "INVALID"]
            more += f" (conntrack: {notes[-1]})" if notes else ""
        self.say(f"{_stamp()} DROP {packet.describe()} {probe.source} -> "
                 f"{probe.destination} on {drop.node} [{drop.reason}]"
                 f" by {flow.deciding or drop.detail}{more}")
        if trace.why:
            self.say(f"    why: {trace.why}")

    def _malformed(self, port: Port, data: bytes, problem: str) -> None:
        self.counters.dropped += 1
        self.say(f"{_stamp()} DROP {len(data)} bytes from {port.end.key} "
                 f"[{DropReason.MALFORMED}] {problem}")

    # ------------------------------------------------------------------ answers to drops

    def _send_error(self, sender: Port, data: bytes, outcome: Outcome,
                    drop: DropRecord) -> None:
        """REJECT and frag-needed answer the sender with an ICMP error, as the node would."""
        router = self.dataplane.cluster.nodes[drop.node].address.ip
        error = None
        if drop.event is not None and drop.event.effect == "REJECT":
            with_ = getattr(drop.event.rule.target, "with_", "icmp-port-unreachable") \
                if drop.event.rule is not None else "icmp-port-unreachable"
            if with_ == "tcp-reset":
                error = frames.tcp_reset(data)
            else:
                code = frames.REJECT_CODES.get(with_, 3)
                error = frames.icmp_error(data, router, frames.ICMP_UNREACH, code)
        elif drop.reason == DropReason.MTU_EXCEEDED:
            mtu = next((s.mtu for hop in outcome.hops for s in hop.stages
                        if isinstance(s, MtuRecord) and not s.fits), None)
            if mtu is not None:
                error = frames.icmp_error(data, router, frames.ICMP_UNREACH,
                                          frames.ICMP_FRAG_NEEDED, rest=mtu)
        if error is not None:
            self.counters.answers += 1
            self._write(sender, error)

    def _write(self, port: Port, data: bytes, vhdr: bytes | None = None) -> None:
        """Write one datagram; ``vhdr``: its virtio_net_hdr (ICMP errors we make need none:
        they are whole, checksums done)."""
        if port.offload:
            data = (vhdr or frames.PLAIN_VNET_HDR) + data
        try:
            os.write(port.fd, data)
        except (BlockingIOError, OSError):
            self.counters.not_written += 1       # the pod's queue is full: a lost packet

    def flow_traces(self, flow_id: int) -> dict | None:
        """Flow ``flow_id`` and the hop-by-hop traces of its first packet and its last drop,
        as ``packet`` prints them (text and JSON); None when no such flow is kept."""
        from tracer.render.trace_json import trace_to_dict
        from tracer.render.trace_text import render_text

        flow = self.flows.by_id(flow_id)
        if flow is None:
            return None
        found = {"flow": flow.public()}
        for name, seen in (("first", flow._first), ("last_drop", flow._last_drop)):
            if seen is not None:
                dataplane, probe, outcome = seen
                trace = self._explained(probe, outcome, dataplane)
                found[name] = {"text": render_text(trace), "trace": trace_to_dict(trace)}
        return found

    def _explained(self, probe: Probe, outcome: Outcome,
                   dataplane: Dataplane | None = None) -> PacketTrace:
        dataplane = dataplane or self.dataplane
        cluster = dataplane.cluster
        packet = probe.packet
        said = [f"Calico v{dataplane.version} felix iptables dataplane",
                "seen live: conntrack as the running up held it"]
        trace = PacketTrace(packet=packet, src=place_of(cluster, packet.src),
                            dst=place_of(cluster, packet.dst),
                            assumptions=tuple(said + walk_assumptions(dataplane, outcome)),
                            hops=outcome.hops,
                            verdict="dropped" if outcome.drop else "allowed",
                            reason=outcome.drop.reason if outcome.drop else None,
                            delivered_to=outcome.delivered_to)
        return explain(dataplane, trace)


def deciding_text(trace: PacketTrace) -> str:
    """The rules that decided, each with the Calico object behind it."""
    parts = []
    for d in trace.deciding:
        rule = f"{d.table}/{d.chain} rule {d.rule_number}"
        p = d.provenance
        if p is None:
            parts.append(rule)
        elif p.policy:
            parts.append(f"{p.policy_kind or 'policy'} {p.policy} ({p.direction} rule "
                         f"{p.rule_index}; {rule})")
        elif p.profile:
            parts.append(f"profile {p.profile} ({rule})")
        elif p.role == "tier-end-drop":
            chosen = trace.selected_by.get(f"{p.direction} {p.endpoint}", ())
            parts.append(f"end of tier {p.tier}: no policy allowed {p.direction} of "
                         f"{p.endpoint} (selected by {', '.join(chosen) or 'none'}; {rule})")
        else:
            parts.append(f"{p.role} ({rule})")
    return "; ".join(parts)


def _stamp() -> str:
    now = time.time()
    return time.strftime("%H:%M:%S", time.localtime(now)) + f".{int(now % 1 * 1000):03d}"
