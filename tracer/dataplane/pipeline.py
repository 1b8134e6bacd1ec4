"""The reference pipeline: walk one packet through the nodes' netfilter hooks, conntrack,
routing and tunnels, and record every stage in a :class:`~tracer.dataplane.trace.Hop`.

Data flows one way: a :class:`Probe` and a run's state go in, hops and a final disposition
come out. The pipeline itself is immutable and shared; everything that changes as packets
flow is in the :class:`~tracer.dataplane.state.RunState` passed to :meth:`Pipeline.run`. The
walker knows the kernel's packet paths (``ip_rcv`` → PREROUTING → routing → INPUT | FORWARD →
POSTROUTING, and ``ip_local_out`` → OUTPUT → POSTROUTING for packets the node itself sends,
such as the outer packet of a tunnel); each step is a stage of ``stages``, and everything it
learns about a node comes from that node's frozen :class:`~tracer.dataplane.node.NodeDataplane`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from ipaddress import IPv4Address
from typing import Literal

from tracer.conntrack.reference import ConntrackTable
from tracer.dataplane.interfaces import IfaceKind
from tracer.dataplane.node import NodeDataplane
from tracer.dataplane.packet import Packet
from tracer.dataplane.reasons import DropReason
from tracer.dataplane.routing import Route
from tracer.dataplane.stages import (Conntrack, Delivery, Dropped, Forward, HopLimit, Netfilter,
                                     PodStack, Routing, TableRunner, Tunnel, Walk,
                                     reference_tables)
from tracer.dataplane.state import NO_PINS, Pins, RunState
from tracer.dataplane.trace import DecapRecord, DeliverRecord, DropRecord, Hop
from tracer.dataplane.tunnels import TunnelDirectory

MAX_HOPS = 8

Origin = Literal["pod", "host", "external"]


@dataclass(frozen=True)
class Probe:
    """Where a packet starts: a pod's eth0, a node's own stack, or an external host."""

    packet: Packet
    node: str                          # the node it first enters
    iif: str | None                    # arrival interface there; None: sent by the node itself
    source: str                        # "ns/pod", "host <node>", "external <ip>"
    destination: str
    origin: Origin = "external"


@dataclass(frozen=True)
class Outcome:
    hops: tuple[Hop, ...]
    delivered_to: str | None           # None when dropped
    drop: DropRecord | None


@dataclass(frozen=True)
class _Next:
    """The packet leaves this node for another (or re-enters it after decapsulation)."""

    node: str
    iif: str
    packet: Packet


class Pipeline:
    """Runs probes through a set of node dataplanes.

    ``nodes`` may build nodes on first access (a lazy mapping); ``underlay`` says which node
    owns an underlay address without building it; ``tunnels`` frames packets routed into a
    tunnel device; ``tables`` runs each netfilter table (the reference interpreter unless an
    engine is given).
    """

    def __init__(self, nodes: Mapping[str, NodeDataplane], *,
                 underlay: Mapping[IPv4Address, str], tunnels: TunnelDirectory,
                 max_hops: int = MAX_HOPS, tables: TableRunner = reference_tables,
                 conntrack_table: Callable[..., ConntrackTable] = ConntrackTable):
        self.nodes = nodes
        self.underlay = underlay
        self.tunnels = tunnels
        self.max_hops = max_hops
        self.tables = tables
        self.conntrack_table = conntrack_table      # what a new RunState's tables are

    def with_tables(self, tables: TableRunner,
                    conntrack_table: Callable[..., ConntrackTable] | None = None) -> "Pipeline":
        """The same nodes and tunnels, netfilter tables run by ``tables`` (and conntrack
        tables made by ``conntrack_table``, when given)."""
        return Pipeline(self.nodes, underlay=self.underlay, tunnels=self.tunnels,
                        max_hops=self.max_hops, tables=tables,
                        conntrack_table=conntrack_table or self.conntrack_table)

    def new_state(self, **options) -> RunState:
        """A run's state whose conntrack tables are the kind this pipeline's engine uses."""
        return RunState(conntrack_table=self.conntrack_table, **options)

    def run(self, probe: Probe, state: RunState, pins: Pins = NO_PINS) -> Outcome:
        """Walk one packet. Conntrack tables persist in ``state`` between runs, so a sequence
        of runs with one state is a connection."""
        hops: list[Hop] = []
        node_name, iif, packet = probe.node, probe.iif, probe.packet
        mark, origin = 0, probe.origin
        for _ in range(self.max_hops):
            node = self.nodes[node_name]
            walk = Walk(node=node, env=node.environment(pins), state=state, iif=iif,
                        packet=packet, mark=mark, tables=self.tables)
            try:
                step = self._through_node(walk, origin)
            except Dropped as dropped:
                Conntrack.discard(walk)
                state.drops[(node_name, dropped.record.reason)] += 1
                in_pod = dropped.record.stage == PodStack.name
                hops.append(Hop(node_name, None if in_pod else iif, packet, tuple(walk.records)))
                return Outcome(tuple(hops), None, dropped.record)
            in_pod = origin == "pod" and isinstance(step, DeliverRecord) and step.iface == "lo"
            hops.append(Hop(node_name, None if in_pod else iif, packet, tuple(walk.records)))
            if isinstance(step, DeliverRecord):
                return Outcome(tuple(hops), step.where, None)
            node_name, iif, packet, mark, origin = step.node, step.iif, step.packet, 0, "external"
        record = DropRecord(node_name, DropReason.TTL_EXCEEDED,
                            f"more than {self.max_hops} hops: routing loop", stage=HopLimit.name)
        state.drops[(node_name, record.reason)] += 1
        return Outcome(tuple(hops), None, record)

    # ------------------------------------------------------------------ packet paths

    def _through_node(self, walk: Walk, origin: Origin) -> DeliverRecord | _Next:
        if origin == "pod":
            itself = PodStack.leaves_pod(walk)
            if itself is not None:
                return itself
        if walk.iif is None:
            return self._local_out(walk)
        return self._receive(walk)

    def _receive(self, walk: Walk) -> DeliverRecord | _Next:
        """``ip_rcv``: PREROUTING, the routing decision, then INPUT or FORWARD."""
        Netfilter.hook(walk, "PREROUTING", oif=None)
        route = Routing.decide(walk)
        if route.kind == "local":
            return self._input(walk)
        Forward.check(walk, route.dev)
        Netfilter.hook(walk, "FORWARD", oif=route.dev)
        Netfilter.hook(walk, "POSTROUTING", oif=route.dev)
        Conntrack.confirm(walk)
        return self._transmit(walk, route)

    def _input(self, walk: Walk) -> DeliverRecord | _Next:
        Netfilter.hook(walk, "INPUT", oif=None)
        Conntrack.confirm(walk)
        tunnel = walk.node.interfaces.tunnel_receiving(walk.packet.protocol, walk.packet.dport)
        if tunnel is not None:
            inner = walk.packet.inner
            if inner is None:
                raise Tunnel.not_ours(walk, tunnel.mode)
            if tunnel.kind is IfaceKind.VXLAN:
                self._check_vni(walk)
            walk.records.append(DecapRecord(walk.node.name, tunnel.mode, walk.packet, inner,
                                            tunnel.name))
            return _Next(walk.node.name, tunnel.name, inner)
        if walk.packet.inner is not None:
            raise Tunnel.no_device(walk)
        where = f"host {walk.node.name}"
        record = DeliverRecord(walk.node.name, where, None, walk.packet)
        walk.records.append(record)
        return record

    def _check_vni(self, walk: Walk) -> None:
        """vxlan_rcv finds the device by port and VNI: a frame whose VNI (the sender's
        vxlanVNI) is not this node's device's finds none and is dropped."""
        sender = self.underlay.get(walk.packet.src)
        if sender is None:
            return
        sent, own = self.tunnels.vxlan_of(sender)[0], self.tunnels.vxlan_of(walk.node.name)[0]
        if sent != own:
            raise Tunnel.wrong_vni(walk, sent, own)

    def _local_out(self, walk: Walk) -> DeliverRecord | _Next:
        """``ip_local_out``: the routing decision comes first, then OUTPUT and POSTROUTING."""
        route = Routing.decide(walk)
        destination = walk.packet.dst
        Netfilter.hook(walk, "OUTPUT", oif=route.dev)
        if walk.packet.dst != destination:
            # nat OUTPUT changed the destination: ip_route_me_harder routes it again.
            route = Routing.decide(walk)
        if route.kind == "local":
            walk.iif = "lo"
            return self._input(walk)
        Netfilter.hook(walk, "POSTROUTING", oif=route.dev)
        Conntrack.confirm(walk)
        return self._transmit(walk, route)

    def _transmit(self, walk: Walk, route: Route) -> DeliverRecord | _Next:
        interfaces = walk.node.interfaces
        oif = route.dev
        iface = interfaces.get(oif)
        if (iface is not None and iface.kind is IfaceKind.WORKLOAD) or \
                interfaces.is_workload_name(oif):
            return Delivery.to_workload(walk, oif)
        if iface is not None and iface.is_tunnel:
            return self._tunnel_out(walk, route)
        next_hop = route.via or walk.packet.dst
        peer = self.underlay.get(next_hop) or self.underlay.get(walk.packet.dst)
        if peer is None:
            record = DeliverRecord(walk.node.name, f"external {walk.packet.dst}", oif,
                                   walk.packet)
            walk.records.append(record)
            return record
        return _Next(peer, self.nodes[peer].interfaces.of_kind(IfaceKind.UNDERLAY)[0].name,
                     walk.packet)

    def _tunnel_out(self, walk: Walk, route: Route) -> DeliverRecord | _Next:
        """The tunnel device re-sends the packet from the node itself: the outer packet takes
        the OUTPUT path (raw cali-OUTPUT, filter cali-OUTPUT allowing it to Calico hosts)."""
        iface = walk.node.interfaces[route.dev]
        framed = self.tunnels.encapsulate(walk.node.name, iface, walk.packet, route.via,
                                          walk.state)
        if isinstance(framed, str):
            raise Tunnel.no_peer(walk, framed)
        walk.records.append(framed)
        # Same network namespace: skb_scrub_packet keeps the mark on the outer skb.
        outer = Walk(node=walk.node, env=walk.env, state=walk.state, iif=None,
                     packet=framed.outer, mark=walk.mark, records=walk.records,
                     tables=walk.tables)
        return self._local_out(outer)
