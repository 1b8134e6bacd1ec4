"""The live loop's established-flow fast path against the loop without it: the same bytes
written to the same pods, the same drops, the same conntrack tables, packet by packet."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scapy.layers.inet import ICMP, IP, TCP, UDP

from pipe_loop import Harness, ip_of

def run_both(scenario: str, stream: list[tuple[str, bytes, float]]) -> Harness:
    """Push ``stream`` through the loop with and without the fast path; assert each packet
    had the same effect. Returns the fast harness (closed)."""
    fast, slow = Harness(scenario, fast=True), Harness(scenario, fast=False)
    try:
        for index, (source, data, after) in enumerate(stream):
            got, want = fast.send(source, data, after), slow.send(source, data, after)
            assert got == want, f"packet {index}: {IP(data).summary()}"
            assert fast.conntrack() == slow.conntrack(), f"packet {index}: conntrack differs"
        assert fast.loop.counters == slow.loop.counters
        for got, want in zip(fast.loop.flows.distinct(), slow.loop.flows.distinct(),
                             strict=True):
            changed = {k: (v, want.public()[k]) for k, v in got.public().items()
                       if k not in ("first_seen", "last_seen") and v != want.public()[k]}
            assert not changed, f"flow {want.client} -> {want.server}: {changed}"
        return fast
    finally:
        fast.close()
        slow.close()


def tcp_conversation(client: str, server: str, cip: str, sip: str, dport: int, *,
                     rounds: int, sport: int = 40000) -> list[tuple[str, bytes, float]]:
    """Handshake, ``rounds`` of request/answer, a stray out-of-window ACK, teardown."""
    c_seq, s_seq = 1000, 5000
    out = [(client, bytes(IP(src=cip, dst=sip) / TCP(sport=sport, dport=dport, flags="S",
                                                     seq=c_seq, window=64240)), 0.01),
           (server, bytes(IP(src=sip, dst=cip) / TCP(sport=dport, dport=sport, flags="SA",
                                                     seq=s_seq, ack=c_seq + 1)), 0.01),
           (client, bytes(IP(src=cip, dst=sip) / TCP(sport=sport, dport=dport, flags="A",
                                                     seq=c_seq + 1, ack=s_seq + 1)), 0.01)]
    c_seq, s_seq = c_seq + 1, s_seq + 1
    for turn in range(rounds):
        ask, answer = b"q" * (10 + turn), b"a" * (300 + turn)
        out.append((client, bytes(IP(src=cip, dst=sip) / TCP(
            sport=sport, dport=dport, flags="PA", seq=c_seq, ack=s_seq) / ask), 0.05))
        c_seq += len(ask)
        out.append((server, bytes(IP(src=sip, dst=cip) / TCP(
            sport=dport, dport=sport, flags="PA", seq=s_seq, ack=c_seq) / answer), 0.05))
        s_seq += len(answer)
        if turn == rounds // 2:       # far outside the window: conntrack calls it INVALID
            out.append((client, bytes(IP(src=cip, dst=sip) / TCP(
                sport=sport, dport=dport, flags="A", seq=c_seq + 3_000_000_000, ack=s_seq)),
                0.01))
        if turn == rounds - 2:        # more than REVALIDATE_SECONDS later: walked again
            out[-1] = (out[-1][0], out[-1][1], 1.5)
    out += [(client, bytes(IP(src=cip, dst=sip) / TCP(sport=sport, dport=dport, flags="FA",
                                                      seq=c_seq, ack=s_seq)), 0.01),
            (server, bytes(IP(src=sip, dst=cip) / TCP(sport=dport, dport=sport, flags="FA",
                                                      seq=s_seq, ack=c_seq + 1)), 0.01),
            (client, bytes(IP(src=cip, dst=sip) / TCP(sport=sport, dport=dport, flags="A",
                                                      seq=c_seq + 1, ack=s_seq + 1)), 0.01),
            # after the close: a late segment of the dead connection
            (client, bytes(IP(src=cip, dst=sip) / TCP(sport=sport, dport=dport, flags="PA",
                                                      seq=c_seq + 1, ack=s_seq + 1) / b"late"),
             0.01)]
    return out


def test_cross_node_vxlan_flows_take_the_same_paths():
    scenario = "multinode-vxlan"
    front, back = "shop/frontend-7d4b9", "shop/backend-5f8c2"
    fip, bip = ip_of(scenario, front), ip_of(scenario, back)
    stream = tcp_conversation(front, back, fip, bip, 6379, rounds=12)
    stream += [(front, bytes(IP(src=fip, dst=bip) / UDP(sport=5000, dport=6379) / (b"u" * 200)),
                0.02) for _ in range(6)]                           # denied: port is TCP only
    stream += [(front, bytes(IP(src=fip, dst=bip) / ICMP(type=8, id=7, seq=n)), 0.02)
               for n in range(4)]
    # an allowed flow's segment too big for the VXLAN device: frag-needed, not the shortcut
    stream += tcp_conversation(front, back, fip, bip, 6379, rounds=3, sport=40001)[:4]
    stream.append((front, bytes(IP(src=fip, dst=bip, flags="DF") / TCP(
        sport=40001, dport=6379, flags="PA", seq=1011, ack=5001) / (b"x" * 1460)), 0.01))
    # a segment of the established flow whose TTL ends on the way: the pipeline drops it
    stream.append((front, bytes(IP(src=fip, dst=bip, ttl=1) / TCP(
        sport=40001, dport=6379, flags="PA", seq=1011, ack=5001) / b"late"), 0.01))
    harness = run_both(scenario, stream)
    assert harness.loop.fast.hits >= 15


def test_a_wireguard_crossing_replays_the_outer_flow_too():
    """The tunnel's outer UDP flow is tracked on both nodes; the fast path replays those
    lookups as well (framing is a function of the inner flow), so it may skip the crypto."""
    scenario = "multinode-wireguard"
    front, back = "shop/frontend-7d4b9", "shop/backend-5f8c2"
    fip, bip = ip_of(scenario, front), ip_of(scenario, back)
    stream = tcp_conversation(front, back, fip, bip, 6379, rounds=10)
    harness = run_both(scenario, stream)
    assert harness.loop.fast.hits >= 10
    outer = [form for entry in harness.loop.fast.entries.values()
             for _, form, _ in entry.lookups if not isinstance(form, str)]
    assert outer and all(key.protocol == 17 and key.dport == 51820 for key in outer)


def test_one_way_udp_and_echo_streams_take_the_same_paths():
    scenario = "backend-from-frontend"
    client, server = "myns/backend", "myns/frontend"
    cip, sip = ip_of(scenario, client), ip_of(scenario, server)
    stream = [(client, bytes(IP(src=cip, dst=sip) / UDP(sport=4000, dport=5201) / (b"d" * 1200)),
               0.001) for _ in range(30)]
    stream += [(server, bytes(IP(src=sip, dst=cip) / UDP(sport=5201, dport=4000) / b"r"), 0.5)]
    stream += [(client, bytes(IP(src=cip, dst=sip) / UDP(sport=4000, dport=5201) / b"d"), 1.0)
               for _ in range(5)]                                  # a stream: ASSURED at 2 s
    for n in range(5):
        stream += [(client, bytes(IP(src=cip, dst=sip) / ICMP(type=8, id=9, seq=n)), 0.2),
                   (server, bytes(IP(src=sip, dst=cip) / ICMP(type=0, id=9, seq=n)), 0.001)]
    stream.append((client, bytes(IP(src=cip, dst=sip) / UDP(sport=4000, dport=5201)), 200.0))
    harness = run_both(scenario, stream)
    assert harness.loop.fast.hits >= 30


def test_a_service_flow_is_rewritten_the_same_way():
    scenario = "service-clusterip"
    client = "demo/client"
    cip = ip_of(scenario, client)
    backend = "demo/web-1"            # a draw of 0 picks the first backend
    stream = tcp_conversation(client, backend, cip, "10.96.0.50", 80, rounds=6)
    # the server's half answers from its own address and port; the loop de-NATs it
    bip = ip_of(scenario, backend)
    stream = [(src, data if src == client else bytes(_from(IP(data), bip, 8080)), after)
              for src, data, after in stream]
    harness = run_both(scenario, stream)
    assert harness.loop.fast.hits >= 4


def _from(packet: IP, address: str, port: int) -> IP:
    packet.src, packet[TCP].sport = address, port
    del packet.chksum
    del packet[TCP].chksum
    return packet


flags = st.sampled_from(("A", "PA", "A", "PA", "FA", "R", "S"))


@settings(max_examples=40, deadline=None, suppress_health_check=(HealthCheck.too_slow,))
@given(st.lists(st.tuples(st.booleans(), flags, st.integers(-70_000, 70_000),
                          st.integers(0, 400), st.sampled_from((0.0, 0.01, 0.6, 1.2, 40.0))),
                max_size=25))
def test_random_segments_of_an_open_connection_take_the_same_paths(segments):
    """After a handshake, random segments either way (in and out of window, closing,
    resetting, long pauses): the fast path may only ever answer as the pipeline would."""
    scenario = "backend-from-frontend"
    client, server = "myns/backend", "myns/frontend"
    cip, sip = ip_of(scenario, client), ip_of(scenario, server)
    stream = tcp_conversation(client, server, cip, sip, 80, rounds=2)[:7]
    for from_client, flag, offset, size, after in segments:
        src, dst, sport, dport = ((cip, sip, 40000, 80) if from_client
                                  else (sip, cip, 80, 40000))
        base = 1000 + 1 + 10 + 11 if from_client else 5000 + 1 + 300 + 301
        stream.append((client if from_client else server, bytes(IP(src=src, dst=dst) / TCP(
            sport=sport, dport=dport, flags=flag, seq=(base + offset) % (1 << 32),
            ack=5000) / (b"p" * size)), after))
    run_both(scenario, stream)
