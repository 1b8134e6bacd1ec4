"""Packets a node itself sends or receives: what felix's host rules do to them."""

from __future__ import annotations

from pathlib import Path

from tracer.dataplane.state import NO_PINS
from tracer.dataplane.trace import NatRecord
from tracer.model.loader import load_cluster
from tracer.trace.assemble import build_dataplane
from tracer.trace.tracing import TraceRequest, trace_packet

SCENARIOS = Path(__file__).resolve().parents[1] / "scenarios"


def test_host_traffic_into_the_vxlan_tunnel_takes_the_vtep_address():
    """felix's nat cali-POSTROUTING masquerades host-sourced packets leaving by vxlan.calico
    whose source is not the device's own address (addrtype --limit-iface-out): the node's
    eth0 address is LOCAL, but not LOCAL on vxlan.calico."""
    cluster = load_cluster([str(SCENARIOS / "multinode-vxlan")])
    dataplane = build_dataplane(cluster, version="3.32")
    trace = trace_packet(dataplane, TraceRequest("10.0.0.1", "shop/batch-2k9xq", port=80))
    nat, = [s for hop in trace.hops for s in hop.stages if isinstance(s, NatRecord)]
    assert nat.kind == "MASQUERADE"
    assert nat.after.src == cluster.nodes["node-1"].vxlan_tunnel_address
    assert trace.verdict == "allowed"


def test_addrtype_limited_to_an_interface_asks_that_interface():
    cluster = load_cluster([str(SCENARIOS / "multinode-vxlan")])
    node = build_dataplane(cluster, version="3.32").nodes["node-1"]
    env = node.environment(NO_PINS)
    eth0 = int(cluster.nodes["node-1"].address.ip)
    vtep = int(cluster.nodes["node-1"].vxlan_tunnel_address)
    assert env.addr_type(eth0) == "LOCAL" and env.addr_type(vtep) == "LOCAL"
    assert env.addr_type(eth0, "eth0") == "LOCAL"
    assert env.addr_type(eth0, "vxlan.calico") == "UNICAST"
    assert env.addr_type(vtep, "vxlan.calico") == "LOCAL"
