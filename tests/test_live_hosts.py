"""Live mode's hosts: each node's own stack and the external host are live ends too, so
host-network programs and clients outside the cluster talk through the pipeline. Each packet
lands where `packet` says it does (the oracle), checked at pipe level for every pairing."""

from __future__ import annotations

import pytest
from scapy.layers.inet import IP, TCP

from pipe_loop import Harness, dataplane_of
from tracer.live.topology import EXTERNAL, NODE_PREFIX, host_network_pods, live_hosts
from tracer.trace.tracing import TraceRequest, trace_packet

SCENARIOS = ("multinode-vxlan", "host-endpoint")
PORT = 6379


def _expected(scenario: str, src: str, dst: str) -> str | None:
    """Where `packet` delivers a SYN from ``src`` to ``dst`` (addresses), or None."""
    dataplane = dataplane_of(scenario)
    trace = trace_packet(dataplane, TraceRequest(source=src, destination=dst, protocol="tcp",
                                                 port=PORT, sport=41000))
    return trace.delivered_to if trace.verdict == "allowed" else None


def _end_of(delivered_to: str | None) -> str | None:
    if delivered_to is None:
        return None
    kind, _, name = delivered_to.partition(" ")
    return {"pod": name, "host": f"{NODE_PREFIX}{name}"}.get(kind, EXTERNAL)


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_hosts_and_pods_reach_each_other_as_packet_says(scenario):
    cluster = dataplane_of(scenario).cluster
    hosts = {end.key: end for end in live_hosts(cluster)}
    assert set(hosts) == {f"{NODE_PREFIX}{n}" for n in cluster.nodes} | {EXTERNAL}
    harness = Harness(scenario, fast=True)
    checked = set()
    try:
        ends = harness.ends
        for src in ends:
            for dst in ends:
                if src == dst or (src not in hosts and dst not in hosts):
                    continue                             # pod to pod: the other tests
                a, b = str(ends[src].ip), str(ends[dst].ip)
                syn = bytes(IP(src=a, dst=b) / TCP(sport=41000, dport=PORT, flags="S"))
                landed = [key for key, _ in harness.send(src, syn, 0.01)]
                expected = _end_of(_expected(scenario, a, b))
                if expected == EXTERNAL and ends[EXTERNAL].ip != ends[dst].ip:
                    expected = None                      # nobody lives there in live mode
                assert landed == ([expected] if expected else []), f"{src} -> {dst}"
                checked.add(expected is not None)
    finally:
        harness.close()
    assert True in checked, "some host pairing must be delivered"


EXPORTER = """
apiVersion: v1
kind: Pod
metadata: {name: exporter, namespace: shop}
spec: {nodeName: node-2, hostNetwork: true, containers: [{name: c, image: x}]}
"""


def test_host_network_pods_run_in_their_nodes_stack(tmp_path):
    import shutil

    from pipe_loop import SCENARIOS as ROOT
    from tracer.model.loader import load_cluster
    root = shutil.copytree(ROOT / "multinode-vxlan", tmp_path / "cluster")
    (root / "exporter.yaml").write_text(EXPORTER)
    assert host_network_pods(load_cluster([str(root)])) == {"shop/exporter": "node:node-2"}
