"""A refused connection to a Service (found live): the backend's RST kills the conntrack entry,
and the RST itself must still be de-NATed back to the Service address, on either table."""

from __future__ import annotations

import pytest

from tracer.dataplane.packet import Packet
from tracer.model.loader import load_cluster
from tracer.policy.felix.versions import resolve_version
from tracer.protocols import ACK, RST, SYN, TCP
from tracer.trace.assemble import build_dataplane
from tracer.trace.session import Session, delivered_packet
from tracer.trace.tracing import locate

from live_helpers import SCENARIOS


@pytest.mark.parametrize("engine", ["reference", "compiled"])
def test_rst_from_a_service_backend_is_de_natted(engine):
    cluster = load_cluster([str(SCENARIOS / "service-clusterip")])
    dataplane = build_dataplane(cluster, version=resolve_version(cluster, None))
    if engine == "compiled":
        from tracer.engine.runner import compiled
        dataplane, _ = compiled(dataplane)
    service = cluster.services["demo/web"]
    client = cluster.pods["demo/client"].ip
    session = Session(dataplane)
    syn = Packet(client, service.cluster_ip, TCP, sport=40001, dport=service.ports[0].port,
                 tcp_flags=SYN, seq=10, length=40)
    sent = session.send(locate(cluster, syn))
    assert sent.drop is None, sent.drop
    arrived = delivered_packet(sent)                      # at the backend, DNATed
    rst = Packet(arrived.dst, arrived.src, TCP, sport=arrived.dport, dport=arrived.sport,
                 tcp_flags=RST | ACK, seq=0, ack_seq=11, length=40)
    back = session.send(locate(cluster, rst))
    assert back.drop is None, back.drop
    answer = delivered_packet(back)
    assert (answer.src, answer.sport) == (service.cluster_ip, service.ports[0].port)
    assert back.delivered_to == "pod demo/client"
