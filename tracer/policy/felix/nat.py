"""``cali-nat-outgoing`` (felix/rules/nat.go NATOutgoingChain, driven by masq_mgr.go).

The tunnel MASQUERADE rules of nat ``cali-POSTROUTING`` live with the other static chains
(static.go StaticNATPostroutingChains) in :mod:`tracer.policy.felix.static`.
"""

from __future__ import annotations

from tracer.policy.felix import builder as b
from tracer.policy.felix.builder import M, FChain, FRule
from tracer.policy.felix.context import MASQ_FULLY_RANDOM, Ctx, static_prov


def nat_outgoing_chain(ctx: Ctx) -> FChain:
    """One MASQUERADE rule when any pool has natOutgoing (masq_mgr: masqPools non-empty).

    Sources in ``masq-ipam-pools`` going anywhere outside every pool get masqueraded. The
    NATPortRange / NATOutgoingAddress / interface-filter variants are not modelled.
    """
    if not any(pool.nat_outgoing for pool in ctx.cluster.ippools.values()):
        return FChain("cali-nat-outgoing")
    match = (M().ipset(ctx.set_name("masq-ipam-pools"), "src")
             .ipset(ctx.all_pools_set, "dst", negated=True))
    rule = FRule(match, b.masquerade(MASQ_FULLY_RANDOM), (),
                 static_prov("nat-outgoing", source="rules/nat.go"))
    return FChain("cali-nat-outgoing", (rule,))
