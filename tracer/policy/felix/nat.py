"""``cali-nat-outgoing`` (felix/rules/nat.go NATOutgoingChain, driven by masq_mgr.go).

The tunnel MASQUERADE rules of nat ``cali-POSTROUTING`` live with the other static chains
(static.go StaticNATPostroutingChains) in :mod:`tracer.policy.felix.static`.
"""

from __future__ import annotations

from tracer.policy.felix import builder as b
from tracer.policy.felix.builder import M, FChain, FRule
from tracer.policy.felix.context import MASQ_FULLY_RANDOM, Ctx, static_prov


def nat_outgoing_chain(ctx: Ctx) -> FChain:
    """The MASQUERADE (or SNAT to natOutgoingAddress) rules when any pool has natOutgoing
    (masq_mgr: masqPools non-empty).

    Sources in ``masq-ipam-pools`` going anywhere outside every pool are translated. With
    natPortRange, TCP and UDP get the port range and RETURN, and everything else the plain
    action; iptablesNATOutgoingInterfaceFilter limits every rule to that egress interface.
    """
    if not any(pool.nat_outgoing for pool in ctx.cluster.ippools.values()):
        return FChain("cali-nat-outgoing")
    felix = ctx.felix
    address, ports = felix.nat_outgoing_address, felix.nat_port_range
    plain = (b.snat(address, MASQ_FULLY_RANDOM) if address
             else b.masquerade(MASQ_FULLY_RANDOM))
    if ports is None:
        actions = [("", plain)]
    else:
        ranged = (b.snat(f"{address}:{ports[0]}-{ports[1]}", MASQ_FULLY_RANDOM) if address
                  else b.masquerade(MASQ_FULLY_RANDOM, ports))
        actions = [("tcp", ranged), ("tcp", b.RETURN), ("udp", ranged), ("udp", b.RETURN),
                   ("", plain)]
    prov = static_prov("nat-outgoing", source="rules/nat.go")
    return FChain("cali-nat-outgoing", tuple(
        FRule(_masq_match(ctx, protocol), action, (), prov) for protocol, action in actions))


def _masq_match(ctx: Ctx, protocol: str) -> M:
    """makeNATOutgoingRuleIPTables: the sets (with natOutgoingExclusions IPPoolsAndHostIPs,
    the nodes' addresses are not translated either), then the protocol, then the interface
    filter."""
    match = (M().ipset(ctx.set_name("masq-ipam-pools"), "src")
             .ipset(ctx.all_pools_set, "dst", negated=True))
    if ctx.felix.nat_outgoing_exclusions == "IPPoolsAndHostIPs":
        match = match.ipset(ctx.set_name("all-hosts-net"), "dst", negated=True)
    if protocol:
        match = match.protocol(protocol)
    interface = ctx.felix.iptables_nat_outgoing_interface_filter
    return match.out_iface(interface) if interface else match
