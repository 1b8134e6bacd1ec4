"""An allowed packet to a host with a host endpoint says what let it in: felix's failsafe rule
(before any policy) or the host endpoint's policy, never "no Calico policy applied"."""

from __future__ import annotations

from pathlib import Path

import pytest

from tracer.explain import explain
from tracer.model.loader import load_cluster
from tracer.trace.assemble import build_dataplane
from tracer.trace.tracing import TraceRequest, trace_packet

LAB = Path(__file__).resolve().parent.parent / "scenarios" / "labs" / "13-host-endpoint-failsafe"


@pytest.fixture(scope="module")
def dataplane():
    return build_dataplane(load_cluster([LAB]), version="3.32")


def trace_to_host(dataplane, port: int):
    return explain(dataplane, trace_packet(dataplane, TraceRequest("10.0.0.9", "10.0.0.1",
                                                                   port=port)))


@pytest.mark.parametrize("port", [22, 6443])
def test_a_failsafe_port_is_decided_by_the_failsafe_rule(dataplane, port):
    trace = trace_to_host(dataplane, port)
    assert trace.verdict == "allowed" and trace.delivered_to == "host node-1"
    (decision,) = trace.deciding
    assert (decision.table, decision.chain) == ("filter", "cali-failsafe-in")
    assert decision.provenance.role == "failsafe"
    assert f"--dports {port} -j ACCEPT" in decision.rule_text
    assert "cali-failsafe-in" in trace.why and "failsafe port" in trace.why
    assert "no Calico policy applied" not in trace.why


def test_a_port_the_host_policy_allows_names_that_policy(dataplane):
    trace = trace_to_host(dataplane, 443)
    assert trace.verdict == "allowed"
    assert [d.provenance.policy for d in trace.deciding] == ["host-allow-https"]
    assert "GlobalNetworkPolicy host-allow-https ingress rule 0" in trace.why
    assert "failsafe" not in trace.why and "no Calico policy applied" not in trace.why


def test_pod_to_pod_through_the_same_node_is_unchanged(dataplane):
    trace = explain(dataplane, trace_packet(dataplane, TraceRequest("web/curl", "web/nginx",
                                                                    port=80)))
    assert trace.verdict == "allowed"
    assert all(d.provenance.role == "profile-rule" for d in trace.deciding)
    assert "failsafe" not in trace.why and "host endpoint policy" not in trace.why
