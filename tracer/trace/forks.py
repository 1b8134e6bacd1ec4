"""A packet to a Service forks at kube-proxy's random choice: one trace per backend.

Each fork pins the KUBE-SVC statistic rules (``pinning``) to one backend and runs the normal
trace, so Calico policy is judged on the DNATed packet, exactly as the FORWARD hook sees it
after nat PREROUTING. A Service with no endpoints has one fork: kube-proxy's REJECT.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace

from tracer.dataplane.trace import PacketTrace
from tracer.trace.pinning import pinned
from tracer.kubeproxy.probe import ServiceTarget, pick_endpoint, resolve_service
from tracer.kubeproxy.services import Backend


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


def trace_forks(dataplane, request, endpoint: str | None = None) -> list[Fork]:
    """Trace ``request`` (destination ``svc/...``) once per backend, or only for ``endpoint``
    (``--endpoint N|POD``)."""
    from tracer.trace.tracing import trace_packet

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
        with pinned(dataplane, target, index):
            trace = trace_packet(dataplane, request)
        note = (f"kube-proxy picked endpoint {index + 1} of {count} "
                f"({target.endpoints[index].describe()}): statistic draws pinned")
        forks.append(Fork(target, index, replace(trace, assumptions=trace.assumptions + (note,))))
    return forks


def render_forks(forks: list[Fork], output: str, verbosity: str) -> str:
    """Text: each fork's header then its trace. JSON: a list of ``{"fork", "endpoint",
    "pod", "trace"}`` objects."""
    from tracer.render.trace_json import trace_to_dict
    from tracer.render.trace_text import render_text

    if output == "json":
        items = [{"fork": None if f.index is None else f.index + 1,
                  "endpoint": f.backend.address if f.backend else None,
                  "pod": f.backend.pod if f.backend else None,
                  "trace": trace_to_dict(f.trace)} for f in forks]
        return json.dumps(items, indent=2) + "\n"
    return "\n".join(f"{f.header()}\n{render_text(f.trace, verbosity)}" for f in forks)
