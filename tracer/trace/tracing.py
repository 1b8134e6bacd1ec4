"""``calico-trace packet``'s library entry point: resolve the two ends, build the probe, run
it through the dataplane. The trace that comes back is the dataplane's answer; explaining it
(``tracer.explain``) and rendering it (``tracer.render``) are later, separate passes."""

from __future__ import annotations

from dataclasses import dataclass, replace

from tracer.dataplane.packet import PROBE_PROTOCOLS, Packet, make_packet
from tracer.dataplane.pipeline import Outcome, Probe
from tracer.dataplane.state import NO_PINS, Pins
from tracer.dataplane.trace import HookRecord
from tracer.errors import InputError, quote
from tracer.kubeproxy.probe import is_service_ref, resolve_service
from tracer.model.cluster import Cluster
from tracer.model.places import Place, place_of, resolve
from tracer.trace.assemble import Dataplane
from tracer.trace.result import PacketTrace
from tracer.protocols import ICMP, ICMP_ECHO_REQUEST, TCP, TCP_FLAG_BITS
from tracer.trace.session import Session, answer_to, delivered_packet, opening


@dataclass(frozen=True)
class TraceRequest:
    source: str
    destination: str
    protocol: str = "tcp"
    port: int | None = None
    sport: int | None = None
    state: str = "new"
    size: int | None = None
    icmp_type: int | None = None       # ICMP only; default an echo request (8/0)
    icmp_code: int | None = None
    reply: bool = False                # trace the answer to the packet instead
    tcp_flags: str | None = None       # TCP only: "ACK", "SYN,ACK", ... instead of a SYN


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
        raise InputError(f"unknown protocol {quote(request.protocol)} (tcp, udp, sctp, icmp)",
                         obj="--protocol")
    if proto != ICMP and (request.icmp_type is not None or request.icmp_code is not None):
        raise InputError("--icmp-type/--icmp-code need --protocol icmp", obj="--icmp-type")
    icmp_type = ICMP_ECHO_REQUEST if request.icmp_type is None else request.icmp_type
    packet = make_packet(src.ip, dst.ip, proto, dport=request.port, sport=request.sport,
                         length=request.size, icmp_type=icmp_type,
                         icmp_code=request.icmp_code or 0)
    if request.tcp_flags is not None:
        packet = replace(packet, tcp_flags=parse_tcp_flags(request.tcp_flags, proto))
    return probe_for(cluster, packet, src, dst), src, dst


def parse_tcp_flags(text: str, proto: int) -> int:
    """``"SYN,ACK"`` -> the flag bits; a packet that is not TCP has no flags to set."""
    if proto != TCP:
        raise InputError("--tcp-flags needs --protocol tcp", obj="--tcp-flags")
    bits = 0
    for name in filter(None, (part.strip().upper() for part in text.split(","))):
        if name not in TCP_FLAG_BITS:
            raise InputError(f"unknown TCP flag {name!r} (one of {', '.join(TCP_FLAG_BITS)})",
                             obj="--tcp-flags")
        bits |= TCP_FLAG_BITS[name]
    if not bits:
        raise InputError("--tcp-flags names no flag", obj="--tcp-flags")
    return bits


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
    if request.tcp_flags is not None and (request.state == "established" or request.reply):
        raise InputError("--tcp-flags sends one stray packet; it cannot be combined with "
                         "--state established or --reply", obj="--tcp-flags")
    session = Session(dataplane, pins=pins)
    probe, src, dst = build_probe(dataplane, request)
    where = lambda packet: locate(dataplane.cluster, packet)  # noqa: E731
    kind = getattr(dataplane.pipeline.tables, "dataplane_name", "iptables")   # tracer.nft
    assumptions = [f"Calico v{dataplane.version} felix {kind} dataplane"]
    if request.state == "established":
        exchange, probe = session.open(probe, locate=where)
        assumptions.append("connection opened first: " + exchange.summary())
    else:
        assumptions.append("first packet of a new connection")
    if note:
        assumptions.append(note)
    if request.reply:
        if request.state == "established":
            raise InputError("--reply traces the answer to a connection's first packet; it "
                             "cannot be combined with --state established", obj="--reply")
        probe, src, dst, said = _reply_probe(session, probe, src, dst, where)
        assumptions.append(said)
    outcome = session.send(probe)
    assumptions += walk_assumptions(dataplane, outcome)
    return PacketTrace(
        packet=probe.packet, src=src, dst=dst, assumptions=tuple(assumptions),
        hops=outcome.hops, verdict="dropped" if outcome.drop else "allowed",
        reason=outcome.drop.reason if outcome.drop else None,
        delivered_to=outcome.delivered_to)


def walk_assumptions(dataplane: Dataplane, outcome: Outcome) -> list[str]:
    """What the walk took on trust: rulesets not rendered by us, the nodes' and the rules'
    warnings (chains or sets the dump lacked), per node it crossed."""
    said = []
    for hop in dict.fromkeys(hop.node for hop in outcome.hops):
        node = dataplane.nodes[hop]
        if not node.rendered:
            said.append(f"{hop}: ruleset from {node.source}")
        said.extend(f"{hop}: {warning}" for warning in node.warnings)
    said.extend(dict.fromkeys(
        f"{hop.node}: {warning}" for hop in outcome.hops for stage in hop.stages
        if isinstance(stage, HookRecord) for warning in stage.warnings))
    return said


def _reply_probe(session: Session, probe: Probe, src: Place, dst: Place, where):
    """Send ``probe`` (the request), then return the probe of the answer its receiver sends
    back, the two ends swapped, and a line saying so. A request that does not arrive has no
    answer: then the request itself is what gets traced, and the line says why."""
    if probe.packet.protocol == ICMP and probe.packet.icmp_type != ICMP_ECHO_REQUEST:
        raise InputError("--reply needs a request that is answered (TCP, UDP or an ICMP echo "
                         "request)", obj="--reply")
    first = opening(probe.packet)
    sent = session.send(replace(probe, packet=first))
    if sent.drop is not None:
        return (replace(probe, packet=first), src, dst,
                f"--reply: the request was dropped on {sent.drop.node} [{sent.drop.reason}], "
                "so no reply is sent; tracing the request")
    answer = answer_to(delivered_packet(sent))
    reply = where(answer)
    label = "SYN-ACK" if answer.protocol == TCP else "reply"
    return (reply, place_of(session.dataplane.cluster, answer.src),
            place_of(session.dataplane.cluster, answer.dst),
            f"the request was delivered ({sent.delivered_to}); tracing the {label}")
