"""``flows --trace ID``: the loop keeps what it needs to explain a flow's first packet and its
last drop, and renders them as ``packet`` does, on request."""

from __future__ import annotations

from dataclasses import replace

from scapy.layers.inet import IP, TCP

from pipe_loop import Harness, ip_of
from tracer.explain import explain
from tracer.render.trace_text import render_text
from tracer.trace.tracing import TraceRequest, trace_packet

SCENARIO = "multinode-vxlan"
FRONT, BACK, BATCH = "shop/frontend-7d4b9", "shop/backend-5f8c2", "shop/batch-2k9xq"


def test_a_denied_flow_has_the_trace_packet_prints():
    harness = Harness(SCENARIO, fast=True)
    try:
        bip, xip = ip_of(SCENARIO, BACK), ip_of(SCENARIO, BATCH)
        syn = bytes(IP(src=xip, dst=bip) / TCP(sport=41000, dport=6379, flags="S", seq=1))
        harness.send(BATCH, syn, 0.1)
        harness.send(BATCH, syn, 1.0)                 # the retransmission: same flow
        (flow,) = harness.loop.flows.distinct()
        found = harness.loop.flow_traces(flow.id)
    finally:
        harness.close()
    assert found["flow"]["dropped"] == 2 and found["flow"]["id"] == flow.id
    dataplane = harness.loop.dataplane
    expected = explain(dataplane, trace_packet(dataplane, TraceRequest(
        source=BATCH, destination=BACK, protocol="tcp", port=6379, sport=41000)))
    live = found["first"]["trace"]["assumptions"]
    assert "seen live: conntrack as the running up held it" in live
    assert found["first"]["text"] == render_text(replace(expected, assumptions=tuple(live)))
    assert found["last_drop"]["trace"]["verdict"] == "dropped"
    assert found["last_drop"]["trace"]["deciding"], "the deciding rule is named"


def test_an_allowed_flow_has_its_first_packet_and_no_drop():
    harness = Harness(SCENARIO, fast=True)
    try:
        fip, bip = ip_of(SCENARIO, FRONT), ip_of(SCENARIO, BACK)
        harness.send(FRONT, bytes(IP(src=fip, dst=bip) / TCP(sport=40000, dport=6379,
                                                             flags="S", seq=1)), 0.1)
        (flow,) = harness.loop.flows.distinct()
        found = harness.loop.flow_traces(flow.id)
        assert harness.loop.flow_traces(flow.id + 1) is None
    finally:
        harness.close()
    assert "last_drop" not in found
    assert found["first"]["trace"]["verdict"] == "allowed"
    assert "node-2" in found["first"]["text"]        # both nodes' hops are there
