"""A packet to a Service forks at kube-proxy's random choice: one trace per backend.

Each fork is a run of its own whose pins make the KUBE-SVC statistic rules pick one backend
(as ovn-trace's ``--lb-dst`` does), so Calico policy is judged on the DNATed packet, exactly as
the FORWARD hook sees it after nat PREROUTING. A Service with no endpoints has one fork:
kube-proxy's REJECT.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from types import MappingProxyType

from tracer.dataplane.state import Pins
from tracer.kubeproxy.probe import ServiceTarget, pick_endpoint, resolve_service
from tracer.kubeproxy.services import Backend
from tracer.trace.assemble import Dataplane
from tracer.trace.result import PacketTrace
from tracer.trace.tracing import TraceRequest, trace_packet


@dataclass(frozen=True)
class Fork:
    target: ServiceTarget
    index: int | None                  # 0-based in kube-proxy's order; None: no endpoints
    trace: PacketTrace

    @property
    def backend(self) -> Backend | None:
        return None if self.index is None else self.target.endpoints[self.index]

    def header(self) -> str:
        count = len(self.target.endpoints)
        if self.backend is None:
            return f"== {self.target.label}: no endpoints =="
        return (f"== {self.target.label} fork {self.index + 1}/{count}: endpoint "
                f"{self.backend.describe()} via {self.target.sep_chain(self.index)} ==")

    def with_trace(self, trace: PacketTrace) -> "Fork":
        return replace(self, trace=trace)


def backend_pins(target: ServiceTarget, index: int) -> Pins:
    """Every node's KUBE-SVC chain for the Service port picks backend ``index`` (0-based,
    kube-proxy's order); the pin names chains, so it holds for a dump whose endpoint order
    differs from ours."""
    return Pins(statistic=MappingProxyType({target.svc_chain: target.sep_chain(index)}))


def trace_forks(dataplane: Dataplane, request: TraceRequest,
                endpoint: str | None = None) -> list[Fork]:
    """Trace ``request`` (destination ``svc/...``) once per backend, or only for ``endpoint``
    (``--endpoint N|POD``)."""
    target = resolve_service(dataplane.cluster, request.destination, port=request.port,
                             protocol=request.protocol)
    if not target.endpoints:
        if endpoint is not None:
            pick_endpoint(target, endpoint)        # raises: nothing to pick
        return [Fork(target, None, trace_packet(dataplane, request))]
    count = len(target.endpoints)
    indices = [pick_endpoint(target, endpoint)] if endpoint is not None else range(count)
    forks = []
    for index in indices:
        note = (f"kube-proxy picked endpoint {index + 1} of {count} "
                f"({target.endpoints[index].describe()}): statistic draws pinned")
        trace = trace_packet(dataplane, request, pins=backend_pins(target, index), note=note)
        forks.append(Fork(target, index, trace))
    return forks
