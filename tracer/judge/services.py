"""Probes to Services, judged against the kernel's own DNAT and conntrack.

A case is a Service case when its destination is ``svc/NS/NAME[:PORT]`` (the ClusterIP) or a
node (``node:NAME``) with a port that is some Service's NodePort. The kernel lab holds
kube-proxy's real chains, so the probe walks KUBE-SERVICES / KUBE-NODEPORTS → KUBE-EXT →
KUBE-SVC → KUBE-SEP, and the kernel's ``-m statistic --mode random`` rules pick the backend.

How the random choice is made deterministic: we let the kernel draw and *read its choice from
its trace* (the ``JUMP``/``GOTO`` into a ``KUBE-SEP-…`` chain), then trace the simulator with
the same choice pinned (``Pins.statistic``, what ``packet --endpoint N`` uses). The other way,
rewriting the KUBE-SVC probabilities so the kernel must pick backend N, would change the very
rules under test: the kernel would then walk rules the simulator never rendered, and the
comparison would have to excuse them. Reading the draw keeps the kernel's ruleset byte for byte
the rendered one, and every rule the kernel walked (the statistic rules included) is compared.
To cover every backend the probe is repeated, each time from a fresh socket (a new conntrack
entry, so a new draw), until each backend has been drawn or ``DRAWS_PER_BACKEND`` x backends
probes were sent; with three backends the chance that one is never drawn in 36 probes is
3·(2/3)^36 ≈ 1e-6 (it is then reported, never passed over in silence).

Beyond the rules walked and the delivery, a delivered probe must arrive with the same source,
destination and destination port in both: the result of the DNAT and of any SNAT
(KUBE-POSTROUTING's MASQUERADE for NodePorts and hairpins) as conntrack applied it.

A backend on another node than the one that DNATs is not compared (the result says why) when
the path needs a tunnel device this kernel cannot make (ipip, wireguard): the routing would
differ, not the rules; such backends are not waited for.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from ipaddress import IPv4Address
from types import MappingProxyType

from tracer.dataplane.state import Pins
from tracer.dataplane.trace import DeliverRecord
from tracer.judge.topology import LabPlan
from tracer.kernel.compare import Comparison, compare
from tracer.kernel.probe import Probe, ProbeResult, run_probe
from tracer.kernel.realise import KernelLab
from tracer.kernel.xtrace import KernelEvent
from tracer.kubeproxy.probe import ServiceTarget, is_service_ref, resolve_service
from tracer.kubeproxy.services import service_ports
from tracer.model.cluster import Cluster
from tracer.trace.assemble import Dataplane
from tracer.trace.result import PacketTrace
from tracer.trace.tracing import TraceRequest, trace_packet

SEP_PREFIX = "KUBE-SEP-"
DRAWS_PER_BACKEND = 12
NEVER_DRAWN = "the kernel never drew this backend"


@dataclass(frozen=True)
class ServiceDestination:
    """Where a Service case's probe is sent and which node's nat table picks the backend."""

    target: ServiceTarget
    kind: str                          # "ClusterIP" | "NodePort"
    address: IPv4Address               # the cluster IP, or the node address of a NodePort
    port: int                          # the Service port, or the NodePort
    simulator: str                     # the destination as the simulator's request names it


@dataclass(frozen=True)
class Draw:
    """One probe of a Service case: which backend the kernel picked (None: no KUBE-SEP was
    reached, e.g. a Service without endpoints) and the pins that make the simulator agree."""

    index: int | None
    pins: Pins
    kernel: ProbeResult


def service_destination(cluster: Cluster, destination: str, protocol: str,
                        port: int | None, node_address: IPv4Address | None
                        ) -> ServiceDestination | None:
    """The Service a case's destination names, or None for an ordinary destination.
    ``node_address`` is the destination node's address when the destination is a node."""
    if is_service_ref(destination):
        target = resolve_service(cluster, destination, port=port, protocol=protocol)
        return ServiceDestination(target, "ClusterIP", target.cluster_ip, target.port,
                                  f"{destination.partition(':')[0]}:{target.port}")
    if node_address is None or port is None or protocol not in ("tcp", "udp"):
        return None
    for view in service_ports(cluster):
        if view.node_port == port and view.protocol == protocol:
            return ServiceDestination(ServiceTarget(view), "NodePort", node_address, port,
                                      str(node_address))
    return None


def kernel_draw(events: tuple[KernelEvent, ...]) -> dict[str, str]:
    """Every statistic dispatch the kernel made: the chain it was in -> the KUBE-SEP it took."""
    return {e.chain: e.target_chain for e in events
            if e.verdict in ("JUMP", "GOTO") and e.target_chain
            and e.target_chain.startswith(SEP_PREFIX)}


def backend_index(target: ServiceTarget, draws: dict[str, str]) -> int | None:
    chosen = set(draws.values())
    for index in range(len(target.endpoints)):
        if target.sep_chain(index) in chosen:
            return index
    return None


def draw_once(lab: KernelLab, target: ServiceTarget, probe: Probe) -> Draw:
    kernel = run_probe(lab, probe)
    draws = kernel_draw(kernel.events)
    return Draw(backend_index(target, draws), Pins(statistic=MappingProxyType(draws)), kernel)


def backend_draws(lab: KernelLab, dest: ServiceDestination, probe: Probe, wanted: set[int],
                  draws_per_backend: int = DRAWS_PER_BACKEND) -> tuple[list[Draw], list[int]]:
    """Probe until the kernel has drawn every backend in ``wanted`` once (the first draw of
    each backend is kept, wanted or not), or the budget is spent; returns the draws and the
    wanted backends never drawn. A probe that reaches no KUBE-SEP at all ends the loop:
    nothing random happened, one comparison says it all."""
    if not dest.target.endpoints:
        return [draw_once(lab, dest.target, probe)], []   # kube-proxy's REJECT, no draw
    kept: dict[int, Draw] = {}
    for _ in range(len(dest.target.endpoints) * draws_per_backend):
        if wanted <= kept.keys():
            break
        draw = draw_once(lab, dest.target, probe)
        if draw.index is None:
            return [draw], []
        kept.setdefault(draw.index, draw)
    return [kept[i] for i in sorted(kept)], sorted(wanted - kept.keys())


def dnat_node(dataplane: Dataplane, dest: ServiceDestination, src_node: str | None) -> str | None:
    """The node whose nat table DNATs: the NodePort's node, else the sender's own node."""
    if dest.kind == "NodePort":
        node = dataplane.cluster.node_by_ip(dest.address)
        return node.name if node is not None else None
    return src_node


def missing_tunnel(plan: LabPlan, dataplane: Dataplane, dest: ServiceDestination,
                   index: int, src_node: str | None) -> str | None:
    """Why the DNATed packet to backend ``index`` cannot take its real path in this lab (it
    crosses to another node over a tunnel the kernel cannot make), or None."""
    backend = dest.target.endpoints[index]
    ep = dataplane.cluster.endpoint_by_ip(backend.ip)
    where = dnat_node(dataplane, dest, src_node)
    if not plan.unbuildable or ep is None or where is None or ep.pod.node == where:
        return None
    routes = [r for r in plan.unbuildable if r.startswith(f"{where}:")] or list(plan.unbuildable)
    return f"the backend is across a tunnel from {where}: needs {routes[0]}"


def simulate(dataplane: Dataplane, source: str, dest: ServiceDestination, protocol: str,
             draw: Draw) -> PacketTrace:
    note = None
    if draw.index is not None:
        backend = dest.target.endpoints[draw.index]
        note = (f"the kernel picked endpoint {draw.index + 1} of {len(dest.target.endpoints)} "
                f"({backend.describe()}): statistic draws pinned to it")
    return trace_packet(dataplane, TraceRequest(source, dest.simulator, protocol=protocol,
                                                port=dest.port), pins=draw.pins, note=note)


def judge_draw(dest: ServiceDestination, draw: Draw, simulated: PacketTrace,
               events) -> Comparison:
    """Compare one draw. The kernel delivered only if the probe arrived at the backend it
    drew (arriving anywhere else would be a kernel we do not understand). When both
    delivered, the packet must also arrive with the same addresses: the destination proves
    the DNAT, the source the SNAT (KUBE-POSTROUTING's MASQUERADE for NodePorts and hairpins).
    The source port is not compared: ``--random-fully`` picks it."""
    if draw.index is None:
        kernel_delivered = draw.kernel.delivered
    else:
        backend = dest.target.endpoints[draw.index]
        kernel_delivered = draw.kernel.arrived_at == (backend.ip, backend.port)
    comparison = compare(events, draw.kernel.events, simulated.verdict == "allowed",
                         kernel_delivered)
    if not (comparison.agree and kernel_delivered and draw.kernel.arrived_as):
        return comparison
    sim = delivered_as(simulated)
    if sim is not None and sim != draw.kernel.arrived_as:
        return replace(comparison, agree=False, reason=(
            f"the packet arrives as {_show(sim)} in the simulator but as "
            f"{_show(draw.kernel.arrived_as)} in the kernel"))
    return comparison


def delivered_as(trace: PacketTrace) -> tuple[IPv4Address, IPv4Address, int | None] | None:
    """Source, destination and destination port of the packet as the simulator delivers it."""
    last = trace.hops[-1].stages[-1] if trace.hops and trace.hops[-1].stages else None
    if not isinstance(last, DeliverRecord):
        return None
    return last.packet.src, last.packet.dst, last.packet.dport


def _show(addresses: tuple[IPv4Address, IPv4Address, int | None]) -> str:
    src, dst, dport = addresses
    return f"{src} -> {dst}" + (f":{dport}" if dport is not None else "")


def describe_draw(dest: ServiceDestination, index: int | None) -> str:
    if index is None:
        return f"{dest.kind} {dest.target.label}: no endpoint drawn"
    backend = dest.target.endpoints[index]
    return (f"{dest.kind} {dest.target.label} endpoint {index + 1}/"
            f"{len(dest.target.endpoints)} {backend.describe()}")
