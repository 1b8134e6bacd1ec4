"""The reference pipeline: walk one packet through the nodes' netfilter hooks, conntrack,
routing and tunnels, and record every stage in a :class:`~tracer.dataplane.trace.Hop`.

Data flows one way: a :class:`Probe` goes in, a list of hops and a final disposition come
out. The walker knows the kernel's packet paths (``ip_rcv`` → PREROUTING → routing →
INPUT | FORWARD → POSTROUTING, and ``ip_local_out`` → OUTPUT → POSTROUTING for packets the node
itself sends, such as the outer packet of a tunnel); the tables themselves are run by the
interpreter, and everything it learns about the node comes from :class:`NodeDataplane`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from ipaddress import IPv4Address
from typing import Callable, Protocol

from tracer.conntrack.tuples import PacketKey
from tracer.dataplane.events import NetfilterEvent
from tracer.dataplane.hooks import CONNTRACK_AFTER, HOOK_TABLES, nat_applies
from tracer.dataplane.interpreter import PacketView, run_hook
from tracer.dataplane.ir import Dnat, Masquerade, Snat, Table
from tracer.dataplane.node import NodeDataplane
from tracer.dataplane.packet import ICMP, IPIP, TCP, UDP, Packet
from tracer.dataplane.routing import IPIP_IFACE, UNDERLAY_IFACE, VXLAN_IFACE
from tracer.dataplane.trace import (ConntrackRecord, DecapRecord, DeliverRecord, DropRecord,
                                    EncapRecord, Hop, HookRecord, MtuRecord, NatRecord,
                                    RouteRecord, Stage)

MAX_HOPS = 8


class Tunnels(Protocol):
    """Frames a packet for a tunnel device (``tracer.dataplane.tunnels`` implements it)."""

    def encapsulate(self, node: str, oif: str, packet: Packet,
                    via: IPv4Address | None) -> EncapRecord | str: ...


@dataclass(frozen=True)
class Probe:
    """Where a packet starts: a pod's eth0, a node's own stack, or an external host."""

    packet: Packet
    node: str                          # the node it first enters
    iif: str | None                    # arrival interface there; None: sent by the node itself
    source: str                        # "ns/pod", "host <node>", "external <ip>"
    destination: str


@dataclass(frozen=True)
class Outcome:
    hops: tuple[Hop, ...]
    delivered_to: str | None           # None when dropped
    drop: DropRecord | None


@dataclass
class _Walk:
    """Mutable state of one walk; frozen records are appended to ``stages``."""

    node: NodeDataplane
    iif: str | None
    packet: Packet
    mark: int = 0
    ctstate: str = "NEW"               # conntrack's answer; NEW on a node without a tracker
    ct_status: frozenset[str] = frozenset()
    ct_entry: int | None = None
    ct_direction: str = "original"
    nat_bound: bool = False
    notrack: bool = False
    stages: list[Stage] = field(default_factory=list)


class Pipeline:
    """Runs probes through a set of node dataplanes.

    A packet leaving a node's underlay enters the pipeline of the node owning its next hop;
    ``deliver_local`` names the pod behind a local ``cali`` interface, and ``tunnels`` frames
    packets routed into a tunnel device.
    """

    def __init__(self, nodes: dict[str, NodeDataplane], *,
                 deliver_local: Callable[[str, IPv4Address], str | None],
                 tunnels: Tunnels | None = None, max_hops: int = MAX_HOPS):
        self.nodes = nodes
        self.deliver_local = deliver_local        # (node, dst) -> "pod ns/name" | None
        self.tunnels = tunnels
        self.max_hops = max_hops
        self._by_underlay = {n.underlay_ip: n.name for n in nodes.values()}

    # ------------------------------------------------------------------ public

    def run(self, probe: Probe, *, now: float = 0.0) -> Outcome:
        """Walk one packet. ``now`` is the conntrack clock (seconds); tables persist in the
        nodes between runs, so a sequence of runs is a connection."""
        self.now = now
        hops: list[Hop] = []
        node_name, iif, packet = probe.node, probe.iif, probe.packet
        mark = 0
        for _ in range(self.max_hops):
            walk = _Walk(node=self.nodes[node_name], iif=iif, packet=packet, mark=mark)
            step = self._through_node(walk)
            if step.kind == "drop" and walk.ct_entry is not None:
                self._discard(walk)
            hops.append(Hop(node=node_name, iif=iif, packet=packet, stages=tuple(walk.stages)))
            if step.kind == "deliver":
                return Outcome(tuple(hops), step.where, None)
            if step.kind == "drop":
                return Outcome(tuple(hops), None, step.drop)
            node_name, iif, packet, mark = step.node, step.iif, step.packet, step.mark
        drop = DropRecord(node=node_name, reason="ttl-exceeded",
                          detail=f"more than {self.max_hops} hops: routing loop")
        return Outcome(tuple(hops), None, drop)

    # ------------------------------------------------------------------ per node

    def _through_node(self, walk: _Walk) -> "_Step":
        if walk.iif is None:
            return self._local_out(walk)
        return self._receive(walk)

    def _receive(self, walk: _Walk) -> "_Step":
        """``ip_rcv``: PREROUTING, the routing decision, then INPUT or FORWARD."""
        drop = self._hook(walk, "PREROUTING", oif=None)
        if drop:
            return drop
        route_step = self._route(walk)
        if isinstance(route_step, _Step):
            return route_step
        route, oif = route_step
        if route.kind == "local":
            return self._input(walk)
        if walk.packet.ttl <= 1:
            return self._drop(walk, "ttl-exceeded", "TTL would reach zero when forwarding")
        mtu_drop = self._mtu(walk, oif)
        if mtu_drop:
            return mtu_drop
        walk.packet = walk.packet.with_(ttl=walk.packet.ttl - 1)
        drop = self._hook(walk, "FORWARD", oif=oif)
        if drop:
            return drop
        drop = self._hook(walk, "POSTROUTING", oif=oif)
        if drop:
            return drop
        self._confirm(walk)
        return self._transmit(walk, route, oif)

    def _input(self, walk: _Walk) -> "_Step":
        drop = self._hook(walk, "INPUT", oif=None)
        if drop:
            return drop
        self._confirm(walk)
        decap = self._decapsulate(walk)
        if decap is not None:
            return decap
        where = f"host {walk.node.name}"
        walk.stages.append(DeliverRecord(walk.node.name, where, None, walk.packet))
        return _Step(kind="deliver", where=where)

    def _local_out(self, walk: _Walk) -> "_Step":
        """``ip_local_out``: the routing decision comes first, then OUTPUT and POSTROUTING."""
        route_step = self._route(walk)
        if isinstance(route_step, _Step):
            return route_step
        route, oif = route_step
        destination = walk.packet.dst
        drop = self._hook(walk, "OUTPUT", oif=oif)
        if drop:
            return drop
        if walk.packet.dst != destination:
            # nat OUTPUT changed the destination: ip_route_me_harder routes it again.
            route_step = self._route(walk)
            if isinstance(route_step, _Step):
                return route_step
            route, oif = route_step
        if route.kind == "local":
            walk.iif = "lo"
            return self._input(walk)
        drop = self._hook(walk, "POSTROUTING", oif=oif)
        if drop:
            return drop
        self._confirm(walk)
        return self._transmit(walk, route, oif)

    # ------------------------------------------------------------------ stages

    def _hook(self, walk: _Walk, hook: str, *, oif: str | None) -> "_Step | None":
        for table in HOOK_TABLES[hook]:
            if table is Table.NAT:
                # Bound connections are rewritten by conntrack; the nat rules never run again.
                self._established_nat(walk, hook)
                if walk.notrack or not nat_applies(walk.ctstate, walk.nat_bound):
                    continue
            chains = walk.node.ruleset.tables.get(table, {})
            if hook not in chains:
                if (hook, table) in CONNTRACK_AFTER:
                    drop = self._conntrack(walk)
                    if drop:
                        return drop
                continue
            view = PacketView(
                src=int(walk.packet.src), dst=int(walk.packet.dst), protocol=walk.packet.protocol,
                sport=walk.packet.sport, dport=walk.packet.dport,
                icmp_type=walk.packet.icmp_type, icmp_code=walk.packet.icmp_code,
                tcp_flags=walk.packet.tcp_flags, iif=walk.iif, oif=oif, mark=walk.mark,
                ct_state="UNTRACKED" if walk.notrack else walk.ctstate,
                ct_status=walk.ct_status)
            result = run_hook(walk.node.ruleset, table, hook, view, walk.node.environment)
            walk.stages.append(HookRecord(
                node=walk.node.name, hook=hook, table=table.value, packet=walk.packet,
                iif=walk.iif, oif=oif, events=result.events, verdict=result.verdict,
                mark_before=walk.mark, mark_after=view.mark))
            walk.mark = view.mark
            if result.verdict in ("DROP", "REJECT"):
                return self._netfilter_drop(walk, table.value, result.deciding, result.verdict)
            if result.notrack:
                walk.notrack = True
            if result.nat is not None:
                self._apply_nat(walk, result.nat, oif)
            if (hook, table) in CONNTRACK_AFTER:
                drop = self._conntrack(walk)
                if drop:
                    return drop
        return None

    def _conntrack(self, walk: _Walk) -> "_Step | None":
        """``nf_conntrack_in`` right after raw: the state every later ctstate match sees."""
        if walk.notrack:
            walk.stages.append(ConntrackRecord(walk.node.name, "UNTRACKED",
                                               note="NOTRACK in raw: conntrack skips it"))
            return None
        table = walk.node.conntrack
        if table is None:
            walk.stages.append(ConntrackRecord(walk.node.name, walk.ctstate,
                                               note="no connection tracker: assumed"))
            return None
        verdict = table.process(conntrack_key(walk.packet), self.now)
        if verdict.dropped:
            return self._drop(walk, "conntrack-full", verdict.reason or "conntrack table full")
        walk.ctstate, walk.ct_entry, walk.ct_direction = (verdict.ctstate, verdict.entry_id,
                                                          verdict.direction)
        walk.ct_status = frozenset(
            name for flag, name in (("SRC_NAT", "SNAT"), ("DST_NAT", "DNAT"))
            if flag in verdict.status)
        walk.nat_bound = "CONFIRMED" in verdict.status
        note = verdict.direction + (f", {verdict.reason}" if verdict.reason else "")
        walk.stages.append(ConntrackRecord(walk.node.name, verdict.ctstate, verdict.tcp_state,
                                           note=note))
        return None

    def _established_nat(self, walk: _Walk, hook: str) -> None:
        """``nf_nat_packet`` for packets of a connection whose NAT is already bound: the
        destination is rewritten where DNAT would run (PREROUTING, OUTPUT), the source where
        SNAT would (POSTROUTING, INPUT) — including replies, which is how de-NAT happens."""
        table = walk.node.conntrack
        if table is None or walk.ct_entry is None or not walk.nat_bound:
            return
        rewrite = table.translate(walk.ct_entry, walk.ct_direction)
        before = walk.packet
        if hook in ("PREROUTING", "OUTPUT") and rewrite.dst_changed:
            walk.packet = before.with_(dst=IPv4Address(rewrite.dst), dport=_port(before,
                                       rewrite.dport))
        elif hook in ("POSTROUTING", "INPUT") and rewrite.src_changed:
            walk.packet = before.with_(src=IPv4Address(rewrite.src), sport=_port(before,
                                       rewrite.sport))
        if walk.packet != before:
            kind = "de-NAT" if walk.ct_direction == "reply" else "NAT (bound)"
            walk.stages.append(NatRecord(walk.node.name, kind, before, walk.packet,
                                         note="conntrack binding"))

    def _confirm(self, walk: _Walk) -> None:
        """``__nf_conntrack_confirm`` as the packet leaves (POSTROUTING) or is delivered."""
        table = walk.node.conntrack
        if table is not None and walk.ct_entry is not None and not walk.nat_bound:
            table.confirm(walk.ct_entry, self.now)
            walk.nat_bound = True

    def _discard(self, walk: _Walk) -> None:
        """A dropped packet's unconfirmed entry dies with it."""
        table = walk.node.conntrack
        if table is not None and walk.ct_entry is not None and not walk.nat_bound:
            table.discard(walk.ct_entry)

    def _apply_nat(self, walk: _Walk, target, oif: str | None) -> None:
        before = walk.packet
        table = walk.node.conntrack if walk.ct_entry is not None else None
        if isinstance(target, Dnat):
            addr, _, port = target.to_destination.partition(":")
            walk.packet = before.with_(dst=IPv4Address(addr),
                                       dport=int(port) if port else before.dport)
            walk.ct_status = walk.ct_status | {"DNAT"}
            kind = "DNAT"
            if table is not None:
                table.dnat(walk.ct_entry, int(walk.packet.dst), walk.packet.dport)
        elif isinstance(target, (Snat, Masquerade)):
            if isinstance(target, Snat):
                addr = IPv4Address(target.to_source.partition(":")[0])
                kind = "SNAT"
            else:
                addr = walk.node.source_address_for(oif)
                kind = "MASQUERADE"
            walk.ct_status = walk.ct_status | {"SNAT"}
            if table is not None:
                table.masquerade(walk.ct_entry, int(addr), self.now)
                rewrite = table.translate(walk.ct_entry, "original")
                walk.packet = before.with_(src=IPv4Address(rewrite.src),
                                           sport=_port(before, rewrite.sport))
            else:
                walk.packet = before.with_(src=addr)
        else:
            return
        walk.stages.append(NatRecord(walk.node.name, kind, before, walk.packet))

    def _route(self, walk: _Walk):
        routing = walk.node.routing
        route = routing.lookup(walk.packet.dst, mark=walk.mark)
        if route is None:
            walk.stages.append(RouteRecord(walk.node.name, str(walk.packet.dst), None,
                                           "no-route", None))
            return self._drop(walk, "no-route", f"no route to {walk.packet.dst} on "
                              f"{walk.node.name} (ICMP host unreachable to the sender)")
        if route.kind == "blackhole":
            walk.stages.append(RouteRecord(walk.node.name, str(walk.packet.dst), route,
                                           "blackhole", None))
            return self._drop(walk, "no-route", f"{walk.packet.dst} hits `{route}`: an "
                              "address in this node's IPAM block that no pod holds")
        decision = "local" if route.kind == "local" else "forward"
        walk.stages.append(RouteRecord(walk.node.name, str(walk.packet.dst), route, decision,
                                       route.dev))
        return route, route.dev

    def _mtu(self, walk: _Walk, oif: str | None) -> "_Step | None":
        """``ip_forward``'s check, before the FORWARD hook: DF and too big → ICMP frag-needed."""
        mtu = walk.node.interfaces.get(oif or "", 1500)
        fits = walk.packet.length <= mtu
        if fits and not _is_tunnel(oif):
            return None
        walk.stages.append(MtuRecord(walk.node.name, oif or "?", mtu, walk.packet.length, fits))
        if fits or not walk.packet.df:
            return None
        return self._drop(walk, "mtu-exceeded", f"{walk.packet.length}-byte packet with DF set "
                          f"does not fit {oif} (MTU {mtu}); the node sends ICMP "
                          f"fragmentation-needed (next-hop MTU {mtu}) to {walk.packet.src}")

    def _transmit(self, walk: _Walk, route, oif: str | None) -> "_Step":
        node = walk.node
        if oif and oif.startswith(node.workload_prefixes):
            where = self.deliver_local(node.name, walk.packet.dst)
            if where is None:
                return self._drop(walk, "no-route", f"{oif} leads to no pod with "
                                  f"{walk.packet.dst}")
            walk.stages.append(DeliverRecord(node.name, where, oif, walk.packet))
            return _Step(kind="deliver", where=where)
        if _is_tunnel(oif):
            return self._tunnel_out(walk, route, oif)
        next_hop = route.via or walk.packet.dst
        peer = self._by_underlay.get(next_hop) or self._by_underlay.get(walk.packet.dst)
        if peer is None:
            where = f"external {walk.packet.dst}"
            walk.stages.append(DeliverRecord(node.name, where, oif, walk.packet))
            return _Step(kind="deliver", where=where)
        return _Step(kind="next", node=peer, iif=UNDERLAY_IFACE, packet=walk.packet, mark=0)

    def _tunnel_out(self, walk: _Walk, route, oif: str) -> "_Step":
        """The tunnel device re-sends the packet from the node itself: the outer packet takes
        the OUTPUT path (raw cali-OUTPUT, filter cali-OUTPUT allowing it to Calico hosts)."""
        framed = (self.tunnels.encapsulate(walk.node.name, oif, walk.packet, route.via)
                  if self.tunnels else f"no tunnel framing available for {oif}")
        if isinstance(framed, str):
            return self._drop(walk, "no-route", framed)
        walk.stages.append(framed)
        # Same network namespace: skb_scrub_packet keeps the mark on the outer skb.
        outer_walk = _Walk(node=walk.node, iif=None, packet=framed.outer, mark=walk.mark,
                           stages=walk.stages)
        return self._local_out(outer_walk)

    def _decapsulate(self, walk: _Walk) -> "_Step | None":
        packet = walk.packet
        mode = None
        if packet.protocol == IPIP:
            mode, iface = "ipip", IPIP_IFACE
        elif packet.protocol == UDP and packet.dport == 4789:
            mode, iface = "vxlan", VXLAN_IFACE
        elif packet.protocol == UDP and packet.dport == 51820:
            mode, iface = "wireguard", "wireguard.cali"
        if mode is None:
            return None
        inner = packet.inner
        if inner is None:
            return self._drop(walk, "unknown-tunnel-peer", f"{mode} packet carries no inner "
                              "packet the simulator framed")
        walk.stages.append(DecapRecord(walk.node.name, mode, packet, inner, iface))
        return _Step(kind="next", node=walk.node.name, iif=iface, packet=inner, mark=0)

    # ------------------------------------------------------------------ drops

    def _netfilter_drop(self, walk: _Walk, table: str, event: NetfilterEvent | None,
                        verdict: str) -> "_Step":
        from tracer.dataplane.classify import classify_drop
        reason, detail = classify_drop(event, table)
        if verdict == "REJECT":
            detail += " (REJECT: an ICMP error goes back to the sender)"
        record = DropRecord(walk.node.name, reason, detail, event, table)
        walk.stages.append(record)
        return _Step(kind="drop", drop=record)

    def _drop(self, walk: _Walk, reason: str, detail: str) -> "_Step":
        record = DropRecord(walk.node.name, reason, detail)
        walk.stages.append(record)
        return _Step(kind="drop", drop=record)


def _port(packet: Packet, port: int) -> int | None:
    return port if packet.sport is not None else None


def conntrack_key(packet: Packet) -> PacketKey:
    """The header fields nf_conntrack reads, from the trace's packet record."""
    inner = conntrack_key(packet.inner) if packet.protocol == ICMP and packet.inner else None
    if packet.protocol == ICMP:
        return PacketKey(int(packet.src), int(packet.dst), ICMP, sport=packet.icmp_id,
                         icmp_type=packet.icmp_type, icmp_code=packet.icmp_code,
                         icmp_inner=inner)
    return PacketKey(int(packet.src), int(packet.dst), packet.protocol,
                     sport=packet.sport or 0, dport=packet.dport or 0,
                     tcp_flags=packet.tcp_flags if packet.protocol == TCP else None,
                     seq=packet.seq, ack=packet.ack_seq, window=packet.window,
                     payload_len=packet.payload_len)


def _is_tunnel(oif: str | None) -> bool:
    return oif in (IPIP_IFACE, VXLAN_IFACE) or (oif or "").startswith("wireguard")


@dataclass(frozen=True)
class _Step:
    kind: str                          # "deliver" | "drop" | "next"
    where: str | None = None
    drop: DropRecord | None = None
    node: str | None = None
    iif: str | None = None
    packet: Packet | None = None
    mark: int = 0
