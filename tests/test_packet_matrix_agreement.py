"""The dataplane trace and the policy matrix must agree on every pod pair and port of every
bundled scenario: two independent implementations of Calico's semantics checking each other
(iptables rules interpreted vs. policies evaluated directly)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tracer.trace.assemble import build_dataplane
from tracer.model.loader import load_cluster
from tracer.policy.matrix import Probe, compute_matrix
from tracer.trace.tracing import TraceRequest, trace_packet

SCENARIOS = Path(__file__).resolve().parent.parent / "scenarios"


def scenario_ports(directory: Path, cluster) -> list[tuple[str, int | None]]:
    """The scenario's own ports (its expectations and every numeric port its policies name,
    one below and above the edges of ranges), plus ICMP."""
    probes: set[tuple[str, int | None]] = {("icmp", None), ("tcp", 80), ("udp", 53)}
    meta = yaml.safe_load((directory / "scenario.yaml").read_text()) or {}
    for item in meta.get("expect", []):
        probes.add((item.get("protocol", "TCP").lower(), item.get("port")))
    for policy in cluster.policies:
        for rule in policy.ingress + policy.egress:
            proto = (rule.protocol or "TCP").lower()
            if proto not in ("tcp", "udp", "sctp"):
                continue
            for port in rule.destination.ports:
                if port.first is not None:
                    probes.update({(proto, port.first), (proto, port.last),
                                   (proto, port.last + 1)})
    return sorted(probes, key=lambda p: (p[0], p[1] or 0))


@pytest.mark.parametrize("directory", sorted(p.parent for p in SCENARIOS.glob("*/scenario.yaml")),
                         ids=lambda p: p.name)
def test_trace_agrees_with_matrix_on_every_pair_and_port(directory):
    cluster = load_cluster([directory])
    dataplane = build_dataplane(cluster, version="3.32")
    checked = 0
    for protocol, port in scenario_ports(directory, cluster):
        matrix = compute_matrix(cluster, Probe.make(protocol, port))
        for src in matrix.pods:
            for dst in matrix.pods:
                request = TraceRequest(src, dst, protocol=protocol, port=port)
                result = trace_packet(dataplane, request)
                expected = matrix.is_allowed(src, dst)
                assert (result.verdict == "allowed") == expected, (
                    f"{protocol}/{port} {src} -> {dst}: matrix says "
                    f"{'allowed' if expected else 'denied'}, trace says {result.verdict} "
                    f"({result.reason}): {result.why}")
                checked += 1
    assert checked > 0
