"""Run probes through the simulator and the kernel, side by side, and judge each one.

For each case the simulator traces a fresh first packet; the kernel lab sends a real one from
the source pod's namespace with ``-j TRACE`` on. Both traces are normalised by
``tracer.kernel.compare`` (node, table, chain, rule, verdict) and must be equal, and so must
the delivered/dropped outcome.

A case whose destination is a Service (``svc/NS/NAME[:PORT]``, or a node at a NodePort) goes
through the kernel's real DNAT and is judged once per backend the kernel draws: see
:mod:`tracer.judge.services`.
"""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Address

from tracer.dataplane.events import NetfilterEvent
from tracer.dataplane.trace import HookRecord
from tracer.errors import InputError
from tracer.judge import services
from tracer.judge.topology import LabPlan, lab_plan
from tracer.kernel.compare import Comparison, compare
from tracer.kernel.probe import Probe, run_probe
from tracer.kernel.realise import KernelLab, missing_requirements
from tracer.kubeproxy.services import service_ports
from tracer.model.cluster import Cluster
from tracer.trace.assemble import Dataplane
from tracer.trace.result import PacketTrace
from tracer.trace.tracing import TraceRequest, trace_packet

KERNEL_PROTOCOLS = ("tcp", "udp", "icmp")


NODE = "node:"                         # an end that is a node's own stack: "node:<name>"
EXTERNAL = "external"                  # the host outside the cluster, on the underlay


@dataclass(frozen=True)
class Case:
    source: str                        # "ns/pod", "node:<name>" or "external"
    destination: str                   # likewise, or "svc/NS/NAME[:PORT]" (a ClusterIP)
    protocol: str = "tcp"
    port: int | None = None

    def describe(self) -> str:
        port = f"/{self.port}" if self.port else ""
        return f"{self.source} -> {self.destination} {self.protocol}{port}"


@dataclass(frozen=True)
class CaseResult:
    case: Case
    simulated: PacketTrace | None
    comparison: Comparison | None
    skipped: str | None = None
    detail: str | None = None          # a Service case: which backend the kernel drew

    @property
    def agree(self) -> bool:
        return self.comparison is not None and self.comparison.agree


def ends_of(cluster: Cluster, *, hosts: bool) -> list[str]:
    """Every pod, and with ``hosts`` every node's own stack and the external host."""
    ends = sorted(cluster.endpoints)
    if hosts:
        ends += [f"{NODE}{name}" for name in sorted(cluster.nodes)] + [EXTERNAL]
    return ends


def all_pairs(cluster: Cluster, *, hosts: bool = False) -> list[tuple[str, str]]:
    """Ordered pairs of distinct ends, at least one of them a pod."""
    ends = ends_of(cluster, hosts=hosts)
    return [(a, b) for a in ends for b in ends
            if a != b and (a in cluster.endpoints or b in cluster.endpoints)]


def service_cases(cluster: Cluster, *, hosts: bool = False) -> list[Case]:
    """Every pod (with ``hosts`` every node too) to every proxied Service port's cluster IP,
    and to every NodePort on every node (with ``hosts`` also from the external host)."""
    sources = ends_of(cluster, hosts=hosts)
    cases = []
    for view in service_ports(cluster):
        ref = f"svc/{view.service.namespace}/{view.service.name}"
        cases += [Case(src, ref, view.protocol, view.port.port)
                  for src in sources if src != EXTERNAL]
        if view.node_port:
            cases += [Case(src, f"{NODE}{node}", view.protocol, view.node_port)
                      for node in sorted(cluster.nodes) for src in sources
                      if src != f"{NODE}{node}"]
    return cases


def simulator_events(trace: PacketTrace) -> list[tuple[str, NetfilterEvent]]:
    """The probe's own events, first visit per node: what the kernel's TRACE can see.

    The outer packet of a tunnel is not the probe (the kernel clears the trace flag when it
    encapsulates), so its OUTPUT/INPUT traversals are left out.
    """
    events: list[tuple[str, NetfilterEvent]] = []
    visited: list[str] = []
    for hop in trace.hops:
        probe_stages = [s for s in hop.stages
                        if isinstance(s, HookRecord) and s.packet.inner is None]
        if not probe_stages:
            continue
        if hop.node in visited:
            continue
        visited.append(hop.node)
        events += [(hop.node, e) for stage in probe_stages for e in stage.events]
    return events


def run_cases(dataplane: Dataplane, cases: list[Case], *, timeout: float = 0.5,
              progress=None) -> list[CaseResult]:
    problem = missing_requirements()
    if problem is not None:
        raise InputError(f"the kernel judge {problem}", obj="verify")
    plan = lab_plan(dataplane)
    results: list[CaseResult] = []
    with KernelLab(plan.spec) as lab:
        for case in cases:
            for result in _judge(dataplane, plan, lab, case, timeout):
                results.append(result)
                if progress is not None:
                    progress(result)
    return results


def _judge(dataplane: Dataplane, plan: LabPlan, lab: KernelLab, case: Case,
           timeout: float) -> list[CaseResult]:
    if case.protocol not in KERNEL_PROTOCOLS:
        return [CaseResult(case, None, None,
                           f"the lab sends {', '.join(KERNEL_PROTOCOLS)} only")]
    src = _end(dataplane, plan, case.source)
    node_address = None
    if case.destination.startswith(NODE):
        node_address = _end(dataplane, plan, case.destination).ip
    dest = services.service_destination(dataplane.cluster, case.destination, case.protocol,
                                        case.port, node_address)
    if dest is not None:
        return _judge_service(dataplane, plan, lab, case, src, dest, timeout)
    return [_judge_plain(dataplane, plan, lab, case, src, timeout)]


def _judge_plain(dataplane: Dataplane, plan: LabPlan, lab: KernelLab, case: Case, src: _End,
                 timeout: float) -> CaseResult:
    dst = _end(dataplane, plan, case.destination)
    if src.kind == dst.kind == EXTERNAL:
        raise InputError(f"{case.describe()}: one end must be in the cluster", obj="verify")
    if case.source == case.destination:
        return CaseResult(case, None, None, "an end talking to itself never meets netfilter")
    nodes = {src.node or dst.node, dst.node or src.node}
    if len(nodes) > 1 and plan.crosses_missing_device(*nodes):
        return CaseResult(case, None, None, "needs " + "; ".join(plan.unbuildable[:1]))
    simulated = trace_packet(dataplane, TraceRequest(src.simulator, dst.simulator,
                                                     protocol=case.protocol, port=case.port))
    kernel = run_probe(lab, Probe(src.kernel, dst.ip, case.protocol, dport=case.port,
                                  timeout=timeout))
    comparison = compare(simulator_events(simulated), kernel.events,
                         simulated.verdict == "allowed", kernel.delivered)
    return CaseResult(case, simulated, comparison)


def _judge_service(dataplane: Dataplane, plan: LabPlan, lab: KernelLab, case: Case, src: _End,
                   dest: services.ServiceDestination, timeout: float) -> list[CaseResult]:
    if src.kind == EXTERNAL and dest.kind == "ClusterIP":
        return [CaseResult(case, None, None, "the external host has no route to cluster IPs "
                           "(kube-proxy answers them on the nodes only)")]
    backends = tuple((b.ip, b.port) for b in dest.target.endpoints)
    if any(dataplane.cluster.endpoint_by_ip(ip) is None for ip, _ in backends):
        return [CaseResult(case, None, None, "a backend is not a pod (host network or "
                           "outside the cluster): the lab waits for pods only")]
    probe = Probe(src.kernel, dest.address, case.protocol, dport=dest.port, timeout=timeout,
                  arrivals=backends)
    unreachable = {i: services.missing_tunnel(plan, dataplane, dest, i, src.node)
                   for i in range(len(backends))}
    wanted = {i for i, why in unreachable.items() if why is None}
    draws, missing = services.backend_draws(lab, dest, probe, wanted)
    results = []
    for draw in draws:
        if draw.index is not None and unreachable[draw.index]:
            continue                               # reported below, drawn or not
        detail = services.describe_draw(dest, draw.index)
        simulated = services.simulate(dataplane, src.simulator, dest, case.protocol, draw)
        comparison = services.judge_draw(dest, draw, simulated, simulator_events(simulated))
        results.append(CaseResult(case, simulated, comparison, detail=detail))
    for index in missing:
        results.append(CaseResult(case, None, None, f"{services.NEVER_DRAWN} in "
                                  f"{len(dest.target.endpoints) * services.DRAWS_PER_BACKEND}"
                                  " probes", services.describe_draw(dest, index)))
    if not draws or draws[0].index is not None:    # (no draw at all: none was wanted)
        results += [CaseResult(case, None, None, why, services.describe_draw(dest, i))
                    for i, why in unreachable.items() if why]
    results.sort(key=lambda r: r.detail or "")
    return results


@dataclass(frozen=True)
class _End:
    kind: str                          # "pod" | "node" | "external"
    ip: IPv4Address
    node: str | None                   # the node it lives on (None: outside the cluster)
    simulator: str                     # how the simulator's request names it
    kernel: str                        # how the kernel lab's probe names it


def _end(dataplane: Dataplane, plan: LabPlan, name: str) -> _End:
    cluster = dataplane.cluster
    if name == EXTERNAL:
        gateway = plan.spec.underlay_gateway
        if gateway is None:
            raise InputError("the cluster has no external host (no underlay gateway)",
                             obj="verify")
        return _End(EXTERNAL, gateway.ip, None, str(gateway.ip), EXTERNAL)
    if name.startswith(NODE):
        node = cluster.nodes.get(name[len(NODE):])
        if node is None:
            raise InputError(f"no node {name[len(NODE):]!r} in the cluster", obj="verify")
        return _End("node", node.address.ip, node.name, str(node.address.ip), name)
    ep = cluster.endpoints.get(name)
    if ep is None:
        raise InputError(f"{name!r} is neither a pod, node:NAME nor external", obj="verify")
    return _End("pod", ep.pod.ip, ep.pod.node, ep.key, ep.key)
