"""Connections through the dataplane: conntrack states as felix's rules see them, NAT and
its reversal, with real per-node tables (``tracer.trace.session``)."""

from __future__ import annotations

from dataclasses import replace
from ipaddress import IPv4Address
from pathlib import Path

from tracer.trace.assemble import build_dataplane
from tracer.dataplane.packet import Packet
from tracer.protocols import ACK, ICMP, RST, SYN, UDP
from tracer.dataplane.trace import ConntrackRecord, NatRecord
from tracer.model.loader import load_cluster
from tracer.trace.session import Session
from tracer.trace.tracing import TraceRequest, build_probe, locate

SCENARIOS = Path(__file__).resolve().parent.parent / "scenarios"


def setup(scenario: str, **session_args):
    cluster = load_cluster([SCENARIOS / scenario])
    dataplane = build_dataplane(cluster, version="3.32")
    return cluster, dataplane, Session(dataplane, **session_args)


def ct_states(outcome) -> list[str]:
    return [s.ctstate for hop in outcome.hops for s in hop.stages
            if isinstance(s, ConntrackRecord)]


def delivered(outcome) -> Packet:
    return outcome.hops[-1].stages[-1].packet


def test_handshake_reply_is_established_although_the_reverse_direction_is_denied():
    cluster, dataplane, session = setup("backend-from-frontend")
    # backend -> frontend is allowed (no policy on frontend); frontend -> backend:80 is not.
    probe, _, _ = build_probe(dataplane, TraceRequest("myns/backend", "myns/frontend", port=80))
    exchange, data = session.open(probe, locate=lambda p: locate(cluster, p))
    assert exchange.completed, exchange.summary()
    labels = [label for label, _, _ in exchange.steps]
    assert labels == ["SYN", "SYN-ACK", "ACK"]
    syn_ack = exchange.steps[1][2]
    assert ct_states(syn_ack) == ["ESTABLISHED"]
    # A fresh SYN in the reverse direction is denied by backend's ingress policy.
    reverse, _, _ = build_probe(dataplane, TraceRequest("myns/frontend", "myns/backend", port=80))
    assert session.send(reverse).drop.reason == "default-deny"
    # Data and teardown of the allowed connection flow through.
    assert session.send(data).drop is None
    closing = session.close(data, locate=lambda p: locate(cluster, p))
    assert closing.completed, closing.summary()
    table = session.state.conntrack("node-1")
    states = {e.tcp_state for e in table.entries(session.now)}
    assert states == {"TIME_WAIT"}


def test_denied_syn_leaves_no_conntrack_entry():
    cluster, dataplane, session = setup("backend-from-frontend")
    probe, _, _ = build_probe(dataplane, TraceRequest("myns/other", "myns/backend", port=6379))
    assert session.send(probe).drop.reason == "default-deny"
    assert session.state.conntrack("node-1").entries(session.now) == []


def test_icmp_error_for_a_tracked_flow_is_related_and_passes_ingress_policy():
    cluster, dataplane, session = setup("backend-from-frontend")
    probe, _, _ = build_probe(dataplane, TraceRequest("myns/backend", "myns/frontend",
                                                      protocol="udp", port=53))
    request = session.send(probe)
    assert request.drop is None
    quoted = delivered(request)
    error = Packet(src=quoted.dst, dst=quoted.src, protocol=ICMP, icmp_type=3, icmp_code=3,
                   length=56, inner=quoted)
    outcome = session.send(locate(cluster, error))
    assert outcome.drop is None, outcome.drop
    assert ct_states(outcome) == ["RELATED"]
    # The same ICMP without a tracked flow is INVALID, and felix's rule drops it.
    stray = replace(error, inner=replace(quoted, sport=1234))
    dropped = session.send(locate(cluster, stray))
    assert ct_states(dropped) == ["INVALID"]
    assert dropped.drop.reason == "conntrack-invalid"


def test_stray_ack_is_invalid_without_tcp_loose():
    cluster, dataplane, session = setup("backend-from-frontend", tcp_loose=False)
    probe, _, _ = build_probe(dataplane, TraceRequest("myns/frontend", "myns/backend",
                                                      port=6379))
    stray = replace(probe, packet=probe.packet.with_(tcp_flags=ACK, seq=77, ack_seq=99))
    outcome = session.send(stray)
    assert ct_states(outcome) == ["INVALID"]
    assert outcome.drop.reason == "conntrack-invalid"
    assert "INVALID" in str(outcome.drop.event.rule.matches)


def test_stray_ack_is_picked_up_mid_stream_with_the_kernel_default():
    cluster, dataplane, session = setup("backend-from-frontend")
    probe, _, _ = build_probe(dataplane, TraceRequest("myns/frontend", "myns/backend",
                                                      port=6379))
    stray = replace(probe, packet=probe.packet.with_(tcp_flags=ACK, seq=77, ack_seq=99))
    outcome = session.send(stray)
    assert ct_states(outcome) == ["NEW"]        # nf_conntrack_tcp_loose=1
    assert outcome.drop is None                 # and the policy allows frontend -> 6379


def test_rst_outside_any_connection_is_invalid():
    cluster, dataplane, session = setup("backend-from-frontend")
    probe, _, _ = build_probe(dataplane, TraceRequest("myns/frontend", "myns/backend",
                                                      port=6379))
    outcome = session.send(replace(probe, packet=probe.packet.with_(tcp_flags=RST)))
    assert ct_states(outcome) == ["INVALID"]
    assert outcome.drop.reason == "conntrack-invalid"


def test_nat_outgoing_round_trip_is_reversed_by_conntrack():
    cluster, dataplane, session = setup("multinode-ipip")
    probe, src, _ = build_probe(dataplane, TraceRequest("shop/frontend-7d4b9", "8.8.8.8",
                                                        protocol="udp", port=53))
    out = session.send(probe)
    masq = [s for hop in out.hops for s in hop.stages if isinstance(s, NatRecord)]
    assert [m.kind for m in masq] == ["MASQUERADE"]
    on_wire = delivered(out)
    assert on_wire.src == IPv4Address("10.0.0.1")
    reply = Packet(src=on_wire.dst, dst=on_wire.src, protocol=UDP, sport=on_wire.dport,
                   dport=on_wire.sport, length=80)
    back = session.send(locate(cluster, reply))
    assert back.drop is None, back.drop
    assert back.delivered_to == "pod shop/frontend-7d4b9"
    final = delivered(back)
    assert (final.dst, final.dport) == (src.ip, probe.packet.sport)
    assert any(isinstance(s, NatRecord) and s.kind == "de-NAT"
               for hop in back.hops for s in hop.stages)
    assert ct_states(back)[0] == "ESTABLISHED"


def test_syn_retransmission_after_drop_is_new_again():
    cluster, dataplane, session = setup("backend-from-frontend")
    probe, _, _ = build_probe(dataplane, TraceRequest("myns/frontend", "myns/backend",
                                                      port=6379))
    first = session.send(probe)
    second = session.send(replace(probe, packet=probe.packet.with_(tcp_flags=SYN)))
    assert ct_states(first) == ["NEW"] and ct_states(second) == ["NEW"]


def test_clusterip_round_trip_dnat_then_reply_de_nat():
    from tracer.kubeproxy.probe import resolve_service
    from tracer.trace.forks import backend_pins

    cluster, dataplane, session = setup("service-clusterip")
    target = resolve_service(cluster, "svc/demo/web", port=80)
    probe, src, _ = build_probe(dataplane, TraceRequest("demo/client", "svc/demo/web", port=80))
    session.pins = backend_pins(target, 1)                 # the second backend, on node-2
    exchange, data = session.open(probe, locate=lambda p: locate(cluster, p))
    assert exchange.completed, exchange.summary()
    syn, synack = exchange.steps[0][2], exchange.steps[1][2]
    backend = target.endpoints[1]
    assert delivered(syn).dst == backend.ip
    # The backend's answer is rewritten back to the Service address on the client's node.
    reply = delivered(synack)
    assert (str(reply.src), reply.sport) == ("10.96.0.50", 80)
    assert any(isinstance(s, NatRecord) and s.kind == "de-NAT"
               for hop in synack.hops for s in hop.stages)
    # Later packets are DNATed by the conntrack binding: the nat table does not run again.
    outcome = session.send(data)
    assert delivered(outcome).dst == backend.ip
    nat_tables = [s for hop in outcome.hops for s in hop.stages
                  if type(s).__name__ == "HookRecord" and s.table == "nat"]
    assert nat_tables == []
