"""Run probes through the simulator and the kernel, side by side, and judge each one.

For each case the simulator traces a fresh first packet; the kernel lab sends a real one from
the source pod's namespace with ``-j TRACE`` on. Both traces are normalised by
``tracer.kernel.compare`` (node, table, chain, rule, verdict) and must be equal, and so must
the delivered/dropped outcome.
"""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Address

from tracer.dataplane.events import NetfilterEvent
from tracer.dataplane.trace import HookRecord
from tracer.errors import InputError
from tracer.judge.topology import LabPlan, lab_plan
from tracer.kernel.compare import Comparison, compare
from tracer.kernel.probe import Probe, run_probe
from tracer.kernel.realise import KernelLab, missing_requirements
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
    destination: str                   # likewise
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
            result = _judge(dataplane, plan, lab, case, timeout)
            results.append(result)
            if progress is not None:
                progress(result)
    return results


def _judge(dataplane: Dataplane, plan: LabPlan, lab: KernelLab, case: Case,
           timeout: float) -> CaseResult:
    if case.protocol not in KERNEL_PROTOCOLS:
        return CaseResult(case, None, None, f"the lab sends {', '.join(KERNEL_PROTOCOLS)} only")
    src, dst = _end(dataplane, plan, case.source), _end(dataplane, plan, case.destination)
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
