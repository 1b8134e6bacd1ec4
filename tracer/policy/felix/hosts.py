"""Host endpoint chains for the HostEndpoints of one node (endpoint_mgr.go resolveHostEndpoints
with rules/endpoints.go HostEndpointTo{Filter,MangleEgress,MangleIngress,Raw}Chains).

Only HEPs with an ``interfaceName`` are rendered (``*`` becomes the default interface of the
dispatch chains); felix matches interface-less HEPs to host interfaces by their expected IPs,
which needs the node's interface list and is not modelled.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from tracer.dataplane.ir import Table
from tracer.model.cluster import HostEndpoint, Policy
from tracer.policy.felix import builder as b
from tracer.policy.felix.builder import FChain
from tracer.policy.felix.context import Ctx
from tracer.policy.felix.dispatch import host_dispatch_chains
from tracer.policy.felix.endpoints import (EndpointSpec, TierGroups, endpoint_chain,
                                           normal_policy, tiers_for)
from tracer.policy.felix.names import endpoint_chain_name

ALL_INTERFACES = "*"


@dataclass
class HostResult:
    chains: dict[Table, list[FChain]] = field(default_factory=lambda: {t: [] for t in Table})
    tiers: list[TierGroups] = field(default_factory=list)      # every tier list used
    profiles: set[str] = field(default_factory=set)


def _hep_labels(ctx: Ctx, hep: HostEndpoint) -> dict[str, str]:
    labels = dict(hep.labels)
    for name in hep.profiles:
        profile = ctx.cluster.profiles.get(name)
        if profile is not None:
            labels = {**profile.labels_to_apply, **labels}
    return labels


def _chains_for(ctx: Ctx, hep: HostEndpoint, iface: str, out: HostResult) -> tuple[bool, bool]:
    labels = _hep_labels(ctx, hep)
    normal = tiers_for(ctx, labels, kinds=normal_policy)
    forward = tiers_for(ctx, labels, kinds=lambda p: normal_policy(p) and p.apply_on_forward)
    untracked = tiers_for(ctx, labels, kinds=lambda p: p.do_not_track, pass_default=True)
    pre_dnat = tiers_for(ctx, labels, kinds=lambda p: p.pre_dnat and not p.do_not_track,
                         egress=False, pass_default=True)
    out.tiers += normal + forward + untracked + pre_dnat
    out.profiles.update(hep.profiles)
    name = f"hostendpoint/{hep.name}"

    def spec(prefix, direction, tiers, **kw):
        return EndpointSpec(endpoint_chain_name(prefix, iface), direction, tiers,
                            tuple(hep.profiles), endpoint=name, **kw)

    out.chains[Table.FILTER] += [
        endpoint_chain(ctx, spec("cali-th-", "egress", normal, failsafe="cali-failsafe-out")),
        endpoint_chain(ctx, spec("cali-fh-", "ingress", normal, failsafe="cali-failsafe-in")),
        endpoint_chain(ctx, spec("cali-thfw-", "egress", forward, kind="forward")),
        endpoint_chain(ctx, spec("cali-fhfw-", "ingress", forward, kind="forward")),
    ]
    out.chains[Table.MANGLE].append(endpoint_chain(ctx, spec(
        "cali-th-", "egress", normal, failsafe="cali-failsafe-out", allow=b.RETURN)))
    if pre_dnat:
        out.chains[Table.MANGLE].append(endpoint_chain(ctx, spec(
            "cali-fh-", "ingress", pre_dnat, kind="preDNAT", failsafe="cali-failsafe-in",
            allow=ctx.mangle_allow)))
    if untracked:
        out.chains[Table.RAW] += [
            endpoint_chain(ctx, spec("cali-th-", "egress", untracked, kind="untracked",
                                     failsafe="cali-failsafe-out", allow=b.ACCEPT)),
            endpoint_chain(ctx, spec("cali-fh-", "ingress", untracked, kind="untracked",
                                     failsafe="cali-failsafe-in", allow=b.ACCEPT)),
        ]
    return bool(pre_dnat), bool(untracked)


def host_endpoint_chains(ctx: Ctx) -> HostResult:
    out = HostResult()
    ifaces: list[str] = []
    pre_dnat_ifaces: list[str] = []
    untracked_ifaces: list[str] = []
    heps = sorted((h for h in ctx.cluster.host_endpoints
                   if h.node == ctx.node.name and h.interface_name),
                  key=lambda h: (h.interface_name, h.name))
    seen: set[str] = set()
    for hep in heps:
        iface = hep.interface_name
        if iface in seen:
            continue            # felix picks one HEP per interface
        seen.add(iface)
        has_pre_dnat, has_untracked = _chains_for(ctx, hep, iface, out)
        ifaces.append(iface)
        if has_pre_dnat:
            pre_dnat_ifaces.append(iface)
        if has_untracked:
            untracked_ifaces.append(iface)
    out.chains[Table.RAW] += host_dispatch_chains(ctx, untracked_ifaces, "", "to+from", False)
    default, named = _split_default(ifaces)
    out.chains[Table.FILTER] += host_dispatch_chains(ctx, named, default, "to+from", True)
    pre_default, pre_named = _split_default(pre_dnat_ifaces)
    out.chains[Table.MANGLE] += host_dispatch_chains(ctx, pre_named, pre_default, "from", False)
    out.chains[Table.MANGLE] += host_dispatch_chains(ctx, named, default, "to", False)
    return out


def _split_default(ifaces: list[str]) -> tuple[str, list[str]]:
    default = ALL_INTERFACES if ALL_INTERFACES in ifaces else ""
    return default, [i for i in ifaces if i != ALL_INTERFACES]


def policies_in(tiers: list[TierGroups]) -> list[Policy]:
    return [p for t in tiers for g in (*t.ingress, *t.egress) for p in g.policies]
