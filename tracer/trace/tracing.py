"""``calico-trace packet``'s library entry point: resolve the two ends, run the pipeline,
explain the outcome. Renderers take the returned :class:`PacketTrace` from here."""

from __future__ import annotations

from dataclasses import dataclass, replace
from ipaddress import IPv4Address, ip_address

from tracer.trace.assemble import Dataplane, mtus
from tracer.dataplane.packet import PROTOCOLS_BY_NAME, Packet, make_packet
from tracer.dataplane.pipeline import Probe
from tracer.dataplane.trace import DeliverRecord, DropRecord, Hop, PacketTrace
from tracer.errors import InputError
from tracer.explain import explain
from tracer.kubeproxy.probe import is_service_ref, resolve_service
from tracer.model.cluster import Cluster, WorkloadEndpoint
from tracer.trace.session import Session


@dataclass(frozen=True)
class Place:
    """One end of a trace."""

    kind: str                          # "pod" | "host" | "external"
    ip: IPv4Address
    label: str
    node: str | None = None
    endpoint: WorkloadEndpoint | None = None


@dataclass(frozen=True)
class TraceRequest:
    source: str
    destination: str
    protocol: str = "tcp"
    port: int | None = None
    sport: int | None = None
    state: str = "new"
    size: int | None = None


def resolve(cluster: Cluster, text: str, role: str) -> Place:
    if "/" in text and not _looks_like_ip(text):
        ep = cluster.endpoints.get(text)
        if ep is None:
            pod = cluster.pods.get(text)
            if pod is not None and pod.host_network:
                return Place("host", pod.ip, f"host {pod.node}", node=pod.node)
            raise InputError(f"no pod {text!r} in the cluster", obj=f"--{role}")
        return Place("pod", ep.pod.ip, ep.key, node=ep.pod.node, endpoint=ep)
    try:
        addr = ip_address(text)
    except ValueError:
        raise InputError(f"{text!r} is neither NAMESPACE/POD nor an IPv4 address",
                         obj=f"--{role}") from None
    if not isinstance(addr, IPv4Address):
        raise InputError("only IPv4 is modelled", obj=f"--{role}")
    ep = cluster.endpoint_by_ip(addr)
    if ep is not None:
        return Place("pod", addr, ep.key, node=ep.pod.node, endpoint=ep)
    node = cluster.node_by_ip(addr)
    if node is not None:
        return Place("host", addr, f"host {node.name}", node=node.name)
    return Place("external", addr, f"external {addr}")


def _looks_like_ip(text: str) -> bool:
    try:
        ip_address(text.split("/")[0])
        return True
    except ValueError:
        return False


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
    proto = PROTOCOLS_BY_NAME.get(request.protocol.lower())
    if proto is None:
        raise InputError(f"unknown protocol {request.protocol!r} (tcp, udp, sctp, icmp)",
                         obj="--protocol")
    packet = make_packet(src.ip, dst.ip, proto, dport=request.port, sport=request.sport,
                         length=request.size)
    return probe_for(cluster, packet, src, dst), src, dst


def probe_for(cluster: Cluster, packet: Packet, src: Place, dst: Place) -> Probe:
    """Where ``packet`` from ``src`` first meets a Calico dataplane."""
    if src.kind == "pod":
        return Probe(packet, src.node, src.endpoint.interface, src.label, dst.label)
    if src.kind == "host":
        return Probe(packet, src.node, None, src.label, dst.label)
    entry = dst.node or _node_owning(cluster, packet.dst)
    if entry is None:
        raise InputError(f"both ends are outside the cluster ({src.ip} -> {dst.ip})",
                         obj="--from/--to")
    return Probe(packet, entry, "eth0", src.label, dst.label)


def place_of(cluster: Cluster, addr: IPv4Address) -> Place:
    return resolve(cluster, str(addr), "address")


def _node_owning(cluster: Cluster, addr: IPv4Address) -> str | None:
    node = cluster.node_by_ip(addr)
    return node.name if node is not None else None


def trace_packet(dataplane: Dataplane, request: TraceRequest, *,
                 session: Session | None = None) -> PacketTrace:
    """Trace one packet. With ``--state established`` the connection is first opened for
    real (handshake through every node's conntrack), and the packet traced is the one that
    follows the opening."""
    session = session or Session(dataplane)
    probe, src, dst = build_probe(dataplane, request)
    assumptions = [f"Calico v{dataplane.version} felix iptables dataplane"]
    if request.state == "established":
        exchange, probe = session.open(probe, locate=lambda p: locate(dataplane.cluster, p))
        assumptions.append("connection opened first: " + exchange.summary())
    else:
        assumptions.append("first packet of a new connection")
    for name, node in sorted(dataplane.nodes.items()):
        if not node.rendered:
            assumptions.append(f"{name}: ruleset from {node.source}")

    if src.kind == "pod" and src.ip == dst.ip:
        # A pod talking to itself: the packet never leaves its network namespace.
        where = f"pod {src.label} (itself, over its own loopback)"
        deliver = DeliverRecord(src.node, where, "lo", probe.packet)
        hops = (Hop(node=src.node, iif=None, packet=probe.packet, stages=(deliver,)),)
        return _finish(dataplane, probe, tuple(assumptions), hops, where, None, src, dst)

    pod_mtu = mtus(dataplane.cluster).pod
    if src.kind == "pod" and probe.packet.length > pod_mtu and probe.packet.df:
        drop = DropRecord(src.node, "mtu-exceeded",
                          f"{probe.packet.length}-byte packet with DF does not fit the pod's "
                          f"eth0 (MTU {pod_mtu}); the pod's own stack refuses it (EMSGSIZE)")
        hops = (Hop(node=src.node, iif=None, packet=probe.packet, stages=(drop,)),)
        return _finish(dataplane, probe, tuple(assumptions), hops, None, drop, src, dst)

    outcome = session.send(probe)
    return _finish(dataplane, probe, tuple(assumptions), outcome.hops, outcome.delivered_to,
                   outcome.drop, src, dst)


def locate(cluster: Cluster, packet: Packet) -> Probe:
    """Where a packet sent by whoever owns its source address enters the dataplane."""
    src = place_of(cluster, packet.src)
    dst = place_of(cluster, packet.dst)
    return probe_for(cluster, packet, src, dst)


def _finish(dataplane: Dataplane, probe: Probe, assumptions: tuple[str, ...],
            hops: tuple[Hop, ...], delivered_to: str | None, drop: DropRecord | None,
            src: Place, dst: Place) -> PacketTrace:
    trace = PacketTrace(
        packet=probe.packet, source=src.label, destination=dst.label, assumptions=assumptions,
        hops=hops, verdict="dropped" if drop else "allowed",
        reason=drop.reason if drop else None, deciding=(), delivered_to=delivered_to)
    return explain(dataplane, trace, src, dst)
