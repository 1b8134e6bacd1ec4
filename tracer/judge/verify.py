"""Run probes through the simulator and the kernel, side by side, and judge each one.

For each case the simulator traces a fresh first packet; the kernel lab sends a real one from
the source pod's namespace with ``-j TRACE`` on. Both traces are normalised by
``tracer.kernel.compare`` (node, table, chain, rule, verdict) and must be equal, and so must
the delivered/dropped outcome.
"""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Address

from tracer.trace.assemble import Dataplane
from tracer.dataplane.events import NetfilterEvent
from tracer.dataplane.trace import HookRecord
from tracer.trace.result import PacketTrace
from tracer.errors import InputError
from tracer.judge.topology import LabPlan, lab_plan
from tracer.kernel.compare import Comparison, compare
from tracer.kernel.probe import Probe, run_probe
from tracer.kernel.realise import KernelLab, missing_requirements
from tracer.trace.tracing import TraceRequest, trace_packet

KERNEL_PROTOCOLS = ("tcp", "udp", "icmp")


@dataclass(frozen=True)
class Case:
    source: str                        # "ns/pod"
    destination: str                   # "ns/pod"
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
    cluster = dataplane.cluster
    if case.protocol not in KERNEL_PROTOCOLS:
        return CaseResult(case, None, None, f"the lab sends {', '.join(KERNEL_PROTOCOLS)} only")
    src, dst = cluster.endpoints.get(case.source), cluster.endpoints.get(case.destination)
    if src is None or dst is None:
        raise InputError(f"{case.describe()}: both ends must be pods", obj="verify")
    if plan.crosses_missing_device(src.pod.node, dst.pod.node):
        return CaseResult(case, None, None, "needs " + "; ".join(plan.unbuildable[:1]))
    if src.key == dst.key:
        return CaseResult(case, None, None, "a pod to itself never meets netfilter")
    simulated = trace_packet(dataplane, TraceRequest(case.source, case.destination,
                                                     protocol=case.protocol, port=case.port))
    kernel = run_probe(lab, Probe(case.source, IPv4Address(dst.pod.ip), case.protocol,
                                  dport=case.port, timeout=timeout))
    comparison = compare(simulator_events(simulated), kernel.events,
                         simulated.verdict == "allowed", kernel.delivered)
    return CaseResult(case, simulated, comparison)
