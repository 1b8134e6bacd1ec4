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


def test_rule_side_nets_as_integers_match_like_ipaddress():
    """plan_matches tests a rule side's nets and notNets as integers: the same verdicts as
    the entity's ``ipaddress`` networks, for addresses in, out and on the edges."""
    from tracer.model.cluster import EntityRule
    from tracer.policy.evaluate import PolicyIndex, _EntityPlan

    rng = random.Random(9)
    nets = (IPv4Network("10.244.0.0/16"), IPv4Network("192.168.1.7/32"), IPv6Network("fd00::/8"))
    not_nets = (IPv4Network("10.244.3.0/24"), IPv6Network("::/0"))
    for entity in (EntityRule(nets=nets), EntityRule(not_nets=not_nets),
                   EntityRule(nets=nets, not_nets=not_nets)):
        plan = _EntityPlan.build(entity)
        addresses = [IPv4Address(rng.getrandbits(32)) for _ in range(500)]
        addresses += [IPv4Address(f"10.244.{rng.randrange(256)}.{rng.randrange(256)}")
                      for _ in range(500)]
        addresses += [IPv4Address("192.168.1.7"), IPv4Address("192.168.1.8"),
                      IPv4Address("10.244.3.0"), IPv4Address("10.245.0.0")]
        for ip in addresses:
            want = ((not entity.nets or any(ip in n for n in entity.nets))
                    and not any(ip in n for n in entity.not_nets))
            # the rule side has nets only: plan_matches reads nothing of the index
            got = PolicyIndex.plan_matches(None, plan, ip, 80, 6, None)
            assert got == want, (entity, ip)
