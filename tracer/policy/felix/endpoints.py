"""Endpoint chains (``cali-tw/fw-*`` for workloads, ``cali-th/fh/thfw/fhfw-*`` for host
endpoints), tier/policy ordering and policy-group chains ``cali-gi/go-*``.

Sources: felix/rules/endpoints.go (endpointIptablesChain, PolicyGroupToIptablesChains),
felix/dataplane/linux/endpoint_mgr.go (groupPolicies), felix/calc/policy_sorter.go (TierLess,
PolKVLess), felix/calc/event_sequencer.go (tierInfoToProtoTierInfo).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

from tracer.dataplane.ir import Provenance
from tracer.model.cluster import Policy, Tier
from tracer.policy.felix import builder as b
from tracer.policy.felix.builder import M, FChain, FRule
from tracer.policy.felix.context import Ctx
from tracer.policy.felix.names import (base_name, endpoint_chain_name, legacy_policy_name,
                                       policy_chain_name, policy_group_id, profile_chain_name)
from tracer.selector.selector import parse_selector

SOURCE = "rules/endpoints.go"
DEFAULT_TIER = Tier(name="default", order=1_000_000.0, default_action="Deny")


# ------------------------------------------------------------------------ tiers and groups


@dataclass
class PolicyGroup:
    """Consecutive policies of a tier with the same selector (endpoint_mgr groupPolicies)."""

    direction: str                      # "inbound" / "outbound"
    selector: str
    tier: str
    policies: list[Policy] = field(default_factory=list)

    @property
    def live(self) -> list[Policy]:
        return [p for p in self.policies if not p.staged]

    @property
    def inlined(self) -> bool:
        return len(self.live) <= 1

    def chain_name(self, ctx: Ctx) -> str:
        prefix = "cali-gi-" if self.direction == "inbound" else "cali-go-"
        return prefix + policy_group_id(self.selector, self.direction, self.policies,
                                        self.tier, ctx.knob)


@dataclass
class TierGroups:
    name: str
    default_action: str
    ingress: list[PolicyGroup]
    egress: list[PolicyGroup]


def _order(value: float | None) -> float:
    return math.inf if value is None else value


def policy_sort_key(ctx: Ctx, policy: Policy):
    """PolKVLess: order (nil = +Inf), then v3.32 "name/namespace/kind", older the key name."""
    if ctx.knob.policy_id_chain_names:
        return (_order(policy.order),
                f"{base_name(policy)}/{policy.namespace or ''}/{policy.kind}")
    return (_order(policy.order), legacy_policy_name(policy, ctx.knob))


def tier_objects(ctx: Ctx) -> dict[str, Tier]:
    tiers = dict(ctx.cluster.tiers)
    tiers.setdefault("default", DEFAULT_TIER)
    return tiers


def _tier_key(tiers: dict[str, Tier], name: str):
    """TierLess: valid tiers first, nil order last, then name."""
    tier = tiers.get(name)
    if tier is None:
        return (1, math.inf, name)
    return (0, _order(tier.order), name)


def group_policies(policies: list[Policy], direction: str, tier: str) -> list[PolicyGroup]:
    groups: list[PolicyGroup] = []
    for pol in policies:
        selector = parse_selector(pol.selector).canonical   # selector.Normalise
        if not groups or groups[-1].selector != selector:
            groups.append(PolicyGroup(direction, selector, tier))
        groups[-1].policies.append(pol)
    return groups


def tiers_for(ctx: Ctx, labels: dict[str, str], *, kinds: Callable[[Policy], bool],
              ingress: bool = True, egress: bool = True,
              pass_default: bool = False) -> list[TierGroups]:
    """The endpoint's TierInfo list: tiers holding a policy that selects it, in order."""
    by_tier: dict[str, list[Policy]] = {}
    for pol in ctx.facts.policies_selecting(labels):
        if pol.staged and ctx.knob.version == "3.29":
            continue                     # staged policies reach the dataplane from v3.30
        if kinds(pol):
            by_tier.setdefault(pol.tier, []).append(pol)
    tiers = tier_objects(ctx)
    out = []
    for name in sorted(by_tier, key=lambda n: _tier_key(tiers, n)):
        pols = sorted(by_tier[name], key=lambda p: policy_sort_key(ctx, p))
        ins = [p for p in pols if ingress and _governs(p, "ingress")]
        outs = [p for p in pols if egress and _governs(p, "egress")]
        if not ins and not outs:
            continue
        tier = tiers.get(name)
        action = "Pass" if pass_default else (tier.default_action if tier else "Deny")
        out.append(TierGroups(name, action, group_policies(ins, "inbound", name),
                              group_policies(outs, "outbound", name)))
    return out


def _governs(pol: Policy, direction: str) -> bool:
    return not pol.types or direction in pol.types


def normal_policy(pol: Policy) -> bool:
    return not pol.do_not_track and not pol.pre_dnat


# ------------------------------------------------------------------------ chains


def group_chain(ctx: Ctx, group: PolicyGroup) -> FChain:
    """PolicyGroupToIptablesChains: a RETURN-on-verdict every 5 jumps."""
    m, rules, count = ctx.marks, [], -1
    prefix = "cali-pi-" if group.direction == "inbound" else "cali-po-"
    for pol in group.live:
        count += 1
        prov = Provenance(role="tier-policy-jump", policy=pol.key, policy_kind=pol.kind,
                          tier=group.tier, source=SOURCE)
        if count and count % 5 == 0:
            rules.append(FRule(M().mark_not_clear(m.pass_ | m.accept), b.RETURN,
                               ("Return on verdict",), prov))
        match = M() if count % 5 == 0 else M().mark_clear(m.pass_ | m.accept)
        rules.append(FRule(match, b.jump(policy_chain_name(prefix, pol, ctx.knob)), (), prov))
    return FChain(group.chain_name(ctx), tuple(rules))


@dataclass(frozen=True)
class EndpointSpec:
    """Arguments of endpointIptablesChain."""

    chain: str
    direction: str                      # "ingress" / "egress" (which policy list)
    tiers: list[TierGroups]
    profiles: tuple[str, ...]
    kind: str = "normal"                # normal / untracked / preDNAT / forward
    failsafe: str = ""
    allow: b.Action | None = None
    drop_encap: bool = False            # from-workload chains drop VXLAN/IPIP
    endpoint: str | None = None


def endpoint_chain(ctx: Ctx, spec: EndpointSpec) -> FChain:
    m, deny, word = ctx.marks, ctx.deny, ctx.deny_word
    policy_prefix = "cali-pi-" if spec.direction == "ingress" else "cali-po-"
    profile_prefix = "cali-pri-" if spec.direction == "ingress" else "cali-pro-"
    rules: list[FRule] = []

    def add(match, action, *comments, role="static", **prov):
        rules.append(FRule(match or M(), action, comments, Provenance(
            role=role, endpoint=spec.endpoint, direction=spec.direction, source=SOURCE,
            **prov)))

    if spec.kind != "untracked":
        allow = spec.allow or ctx.filter_allow
        if allow != b.ACCEPT:
            add(M().ct_state("RELATED,ESTABLISHED"), b.set_mark(m.accept), role="conntrack-accept")
        add(M().ct_state("RELATED,ESTABLISHED"), allow, role="conntrack-accept")
        if not ctx.felix.disable_conntrack_invalid_check:
            add(M().ct_state("INVALID"), deny, role="conntrack-invalid")
    if spec.failsafe:
        add(None, b.jump(spec.failsafe), role="failsafe")
    add(None, b.clear_mark(m.accept | m.pass_))
    if spec.drop_encap and not ctx.felix.allow_vxlan_packets_from_workloads:
        port = ctx.felix.vxlan_port
        add(M().protocol(17).ports("dst", ((port, port),)), deny,
            f"{word} VXLAN encapped packets originating in workloads", role="encap-drop")
    if spec.drop_encap and not ctx.felix.allow_ipip_packets_from_workloads:
        add(M().protocol(4), deny, f"{word} IPinIP encapped packets originating in workloads",
            role="encap-drop")

    for tier in spec.tiers:
        groups = tier.ingress if spec.direction == "ingress" else tier.egress
        if not groups:
            continue
        add(None, b.clear_mark(m.pass_), f"Start of tier {tier.name}", role="tier-start",
            tier=tier.name)
        end_of_tier_drop = False
        for group in groups:
            live = bool(group.live)
            end_of_tier_drop |= live
            targets = ([(policy_chain_name(policy_prefix, p, ctx.knob), p) for p in group.live]
                       if group.inlined else [(group.chain_name(ctx), None)])
            for chain, pol in targets:
                info = dict(tier=tier.name, policy=pol.key if pol else None,
                            policy_kind=pol.kind if pol else None)
                add(M().mark_clear(m.pass_), b.jump(chain), role="tier-policy-jump", **info)
                if not live:
                    continue
                if spec.kind == "untracked":
                    add(M().mark_set(m.accept), b.NOTRACK, role="tier-return", **info)
                add(M().mark_set(m.accept), b.RETURN, "Return if policy accepted",
                    role="tier-return", **info)
        if spec.kind in ("normal", "forward") and end_of_tier_drop \
                and tier.default_action != "Pass":
            text = f"{word} if no policies passed packet"
            if ctx.knob.end_of_tier_names_tier:
                text = f"End of tier {tier.name}. {text}"
            add(M().mark_clear(m.pass_), deny, text, role="tier-end-drop", tier=tier.name)

    if not spec.tiers and spec.kind == "forward":
        add(None, b.set_mark(m.accept), "Allow forwarded traffic by default")
        add(None, b.RETURN, "Return for accepted forward traffic")
    if spec.kind == "normal":
        for profile in spec.profiles:
            add(None, b.jump(profile_chain_name(profile_prefix, profile)), role="profile-jump",
                profile=profile)
            add(M().mark_set(m.accept), b.RETURN, "Return if profile accepted",
                role="profile-return", profile=profile)
        add(None, deny, f"{word} if no profiles matched", role="no-profile-drop")
    return FChain(spec.chain, tuple(rules))


def workload_chains(ctx: Ctx, iface: str, tiers: list[TierGroups], profiles: tuple[str, ...],
                    endpoint: str) -> list[FChain]:
    """WorkloadEndpointToIptablesChains: to-workload (ingress) then from-workload (egress)."""
    return [
        endpoint_chain(ctx, EndpointSpec(endpoint_chain_name("cali-tw-", iface), "ingress",
                                         tiers, profiles, endpoint=endpoint)),
        endpoint_chain(ctx, EndpointSpec(endpoint_chain_name("cali-fw-", iface), "egress",
                                         tiers, profiles, drop_encap=True, endpoint=endpoint)),
    ]


def group_chains(ctx: Ctx, tiers: list[TierGroups]) -> list[FChain]:
    return [group_chain(ctx, g) for t in tiers for g in (*t.ingress, *t.egress)
            if not g.inlined]
