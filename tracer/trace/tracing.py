"""``calico-trace packet``'s library entry point: resolve the two ends, build the probe, run
it through the dataplane. The trace that comes back is the dataplane's answer; explaining it
(``tracer.explain``) and rendering it (``tracer.render``) are later, separate passes."""

from __future__ import annotations

from dataclasses import dataclass, replace

from tracer.dataplane.packet import PROBE_PROTOCOLS, Packet, make_packet
from tracer.dataplane.pipeline import Probe
from tracer.dataplane.state import NO_PINS, Pins
from tracer.errors import InputError
from tracer.kubeproxy.probe import is_service_ref, resolve_service
from tracer.model.cluster import Cluster
from tracer.model.places import Place, place_of, resolve
from tracer.trace.assemble import Dataplane
from tracer.trace.result import PacketTrace
from tracer.trace.session import Session


@dataclass(frozen=True)
class TraceRequest:
    source: str
    destination: str
    protocol: str = "tcp"
    port: int | None = None
    sport: int | None = None
    state: str = "new"
    size: int | None = None


def build_probe(dataplane: Dataplane, request: TraceRequest) -> tuple[Probe, Place, Place]:
    cluster = dataplane.cluster
    src = resolve(cluster, request.source, "from")
    if is_service_ref(request.destination):     # svc/NS/NAME[:PORT]: the cluster IP and port
        target = resolve_service(cluster, request.destination, port=request.port,
                                 protocol=request.protocol)
        dst = Place("service", target.cluster_ip, target.label)
        request = replace(request, port=target.port)
    else:
        dst = resolve(cluster, request.destination, "to")
    proto = PROBE_PROTOCOLS.get(request.protocol.lower())
    if proto is None:
        raise InputError(f"unknown protocol {request.protocol!r} (tcp, udp, sctp, icmp)",
                         obj="--protocol")
    packet = make_packet(src.ip, dst.ip, proto, dport=request.port, sport=request.sport,
                         length=request.size)
    return probe_for(cluster, packet, src, dst), src, dst


def probe_for(cluster: Cluster, packet: Packet, src: Place, dst: Place) -> Probe:
    """Where ``packet`` from ``src`` first meets a Calico dataplane."""
    if src.kind == "pod":
        return Probe(packet, src.node, src.endpoint.interface, src.label, dst.label, "pod")
    if src.kind == "host":
        return Probe(packet, src.node, None, src.label, dst.label, "host")
    entry = dst.node or _node_owning(cluster, packet)
    if entry is None:
        raise InputError(f"both ends are outside the cluster ({src.ip} -> {dst.ip})",
                         obj="--from/--to")
    return Probe(packet, entry, "eth0", src.label, dst.label, "external")


def _node_owning(cluster: Cluster, packet: Packet) -> str | None:
    node = cluster.node_by_ip(packet.dst)
    return node.name if node is not None else None


def locate(cluster: Cluster, packet: Packet) -> Probe:
    """Where a packet sent by whoever owns its source address enters the dataplane."""
    return probe_for(cluster, packet, place_of(cluster, packet.src),
                     place_of(cluster, packet.dst))


def trace_packet(dataplane: Dataplane, request: TraceRequest, *, pins: Pins = NO_PINS,
                 note: str | None = None) -> PacketTrace:
    """Trace one packet in a run of its own. With ``--state established`` the connection is
    first opened for real (handshake through every node's conntrack), and the packet traced is
    the one that follows the opening. ``note`` adds an assumption line (a pinned choice)."""
    session = Session(dataplane, pins=pins)
    probe, src, dst = build_probe(dataplane, request)
    assumptions = [f"Calico v{dataplane.version} felix iptables dataplane"]
    if request.state == "established":
        exchange, probe = session.open(probe, locate=lambda p: locate(dataplane.cluster, p))
        assumptions.append("connection opened first: " + exchange.summary())
    else:
        assumptions.append("first packet of a new connection")
    if note:
        assumptions.append(note)
    outcome = session.send(probe)
    for hop in dict.fromkeys(hop.node for hop in outcome.hops):
        node = dataplane.nodes[hop]
        if not node.rendered:
            assumptions.append(f"{hop}: ruleset from {node.source}")
    return PacketTrace(
        packet=probe.packet, src=src, dst=dst, assumptions=tuple(assumptions),
        hops=outcome.hops, verdict="dropped" if outcome.drop else "allowed",
        reason=outcome.drop.reason if outcome.drop else None,
        delivered_to=outcome.delivered_to)
