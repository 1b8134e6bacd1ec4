"""The reachability matrix measured through the dataplane: one traced probe per ordered pod
pair, on whichever engine runs the dataplane's tables. The policy evaluator
(``tracer.policy.matrix``) answers the same question from the policies alone, faster; this
is the one that sees everything the rendered rules and the packet path do."""

from __future__ import annotations

import numpy as np

from tracer.policy.matrix import Probe, ReachabilityMatrix, matrix_pods
from tracer.protocols import display_name
from tracer.trace.assemble import Dataplane
from tracer.trace.tracing import TraceRequest, trace_packet


def dataplane_matrix(dataplane: Dataplane, probe: Probe, progress=None) -> ReachabilityMatrix:
    pods = matrix_pods(dataplane.cluster)
    protocol = display_name(probe.protocol).lower()
    allowed = np.zeros((len(pods), len(pods)), dtype=bool)
    for i, src in enumerate(pods):
        for j, dst in enumerate(pods):
            if src.pod.ip == dst.pod.ip:
                allowed[i, j] = True           # never leaves the pod's namespace
                continue
            trace = trace_packet(dataplane, TraceRequest(src.key, dst.key, protocol=protocol,
                                                         port=probe.port))
            allowed[i, j] = trace.verdict == "allowed"
        if progress is not None:
            progress(i + 1, len(pods))
    return ReachabilityMatrix(tuple(p.key for p in pods), probe, allowed, len(pods))
