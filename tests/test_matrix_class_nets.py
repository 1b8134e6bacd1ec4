"""The matrix's pod classes test addresses against the policies' nets as integers: the same
answers as ``ip in net`` (IPv6 nets never hold an IPv4 address)."""

from __future__ import annotations

import random
from ipaddress import IPv4Address, IPv4Network, IPv6Network

from tracer.policy.matrix_classes import _Features


def test_integer_net_test_equals_ipaddress():
    rng = random.Random(5)
    nets = [IPv4Network((rng.getrandbits(32) >> (32 - p) << (32 - p), p))
            for p in (0, 1, 8, 16, 24, 26, 31, 32) for _ in range(3)]
    nets += [IPv4Network("10.244.0.0/16"), IPv6Network("::/0"), IPv6Network("fd00::/8")]
    features = _Features(("app",), frozenset(), tuple(nets), ())
    addresses = [IPv4Address(rng.getrandbits(32)) for _ in range(2000)]
    addresses += [net.network_address for net in nets if net.version == 4]
    addresses += [IPv4Address("10.244.7.217"), IPv4Address("0.0.0.0")]
    for ip in addresses:
        fast = tuple(m is not None and int(ip) & m[1] == m[0] for m in features.net_masks)
        assert fast == tuple(ip in net for net in nets), ip
