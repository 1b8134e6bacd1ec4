"""Live Services: each new connection draws its backend as kube-proxy's ``statistic random``
rules make the kernel draw, and a connection's answers count on the flow its request opened."""

from __future__ import annotations

import random
from collections import Counter

from scapy.layers.inet import IP, TCP

from pipe_loop import Harness, ip_of

SCENARIO = "service-clusterip"
CLIENT, CLUSTER_IP = "demo/client", "10.96.0.50"
BACKENDS = ("demo/web-1", "demo/web-2", "demo/web-3")


def _syn(cip: str, sport: int) -> bytes:
    return bytes(IP(src=cip, dst=CLUSTER_IP) / TCP(sport=sport, dport=80, flags="S", seq=1))


def test_new_connections_spread_over_the_backends_as_the_rules_weigh_them():
    harness = Harness(SCENARIO, fast=True, draw=random.Random(11).random)
    try:
        cip = ip_of(SCENARIO, CLIENT)
        landed = Counter()
        for sport in range(30000, 30300):
            (where,) = [key for key, _ in harness.send(CLIENT, _syn(cip, sport), 0.001)]
            landed[where] += 1
    finally:
        harness.close()
    assert set(landed) == set(BACKENDS)
    # kube-proxy weighs 1/3, then 1/2 of the rest, then the last: even shares
    assert all(60 <= landed[b] <= 140 for b in BACKENDS), landed


def test_a_draw_of_zero_always_takes_the_first_backend():
    harness = Harness(SCENARIO, fast=True)
    try:
        cip = ip_of(SCENARIO, CLIENT)
        landed = {key for sport in range(31000, 31020)
                  for key, _ in harness.send(CLIENT, _syn(cip, sport), 0.001)}
    finally:
        harness.close()
    assert landed == {"demo/web-1"}


def test_the_backends_answer_counts_on_the_requests_flow():
    harness = Harness(SCENARIO, fast=True)
    try:
        cip, bip = ip_of(SCENARIO, CLIENT), ip_of(SCENARIO, "demo/web-1")
        harness.send(CLIENT, _syn(cip, 40000), 0.01)
        answer = bytes(IP(src=bip, dst=cip) / TCP(sport=8080, dport=40000, flags="SA",
                                                  seq=9, ack=2))
        (delivered,) = harness.send("demo/web-1", answer, 0.01)
        (flow,) = harness.loop.flows.distinct()
    finally:
        harness.close()
    assert delivered[0] == CLIENT and IP(delivered[1]).src == CLUSTER_IP    # de-NATted
    assert flow.packets == 2 and flow.server == f"{CLUSTER_IP}:80"
