"""Calico policy semantics: what felix's endpoint chains decide for one flow.

This is the reference evaluator. It answers, for a workload endpoint and a direction, the
question the ``cali-tw-<iface>`` (ingress) and ``cali-fw-<iface>`` (egress) chains answer in
the kernel (felix/rules/endpoints.go ``endpointIptablesChain``), without rendering iptables:

1. tiers in order (felix/calc/policy_sorter.go ``TierLess``), only those with at least one
   policy that selects the endpoint and governs the direction;
2. inside a tier, policies by order then ``"<name>/<namespace>/<kind>"`` (``PolKVLess``);
   the first matching Allow/Deny/Pass rule ends a policy, Log does not;
3. a tier that runs out ends in a drop if it has a non-staged policy and its defaultAction is
   not Pass; Pass moves on to the next tier;
4. then the endpoint's profiles in order; a profile that is missing from the datastore acts as
   a deny-all profile (felix/calc/active_rules_calculator.go ``DummyDropRules``); falling off
   the last profile drops ("Drop if no profiles matched").

Rule matching follows felix/calc/rule_scanner.go (selectors become IP sets whose members are
workload IPs, host endpoint expected IPs and network set CIDRs; a NotSelector is folded into a
positive selector; named ports become ``hash:ip,port`` sets filtered by the positive selector)
and felix/rules/policy.go ``CalculateRuleMatch``.

Staged policies are evaluated where they sit and reported, never enforced (felix renders no
chain for them, endpoints.go ``model.KindIsStaged``). doNotTrack and preDNAT policies only
apply to host endpoints (felix/calc/event_sequencer.go ``tierInfoToProtoTierInfo``) and are
ignored here.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from ipaddress import IPv4Address
from typing import Literal

from tracer.errors import InputError
from tracer.protocols import CALICO_PROTOCOLS, display_name
from tracer.model.cluster import (
    Cluster,
    ContainerPort,
    EntityRule,
    IcmpFields,
    NetworkSet,
    Policy,
    PortSpec,
    Rule,
    BUILTIN_TIERS,
    Tier,
    WorkloadEndpoint,
)
from tracer.selector.labelindex import SelectorIndex
from tracer.selector.selector import parse_selector

Direction = Literal["ingress", "egress"]
Labels = Mapping[str, str]

NAMESPACE_LABEL = "projectcalico.org/namespace"
ICMP = 1
# Protocols the multiport match accepts (xt_multiport: tcp, udp, udplite, dccp, sctp).
PORT_PROTOCOLS = frozenset({6, 17, 33, 132, 136})


# felix/types/policy_id.go KindShortName.
_KIND_SHORT = {
    "NetworkPolicy": "np",
    "GlobalNetworkPolicy": "gnp",
    "StagedNetworkPolicy": "snp",
    "StagedGlobalNetworkPolicy": "sgnp",
    "StagedKubernetesNetworkPolicy": "sknp",
    "KubernetesNetworkPolicy": "knp",
    "KubernetesClusterNetworkPolicy": "kcnp",
}


# --------------------------------------------------------------------------------- records


@dataclass(frozen=True)
class Flow:
    """The first packet of a connection, as policy sees it."""

    src_ip: IPv4Address
    dst_ip: IPv4Address
    protocol: int
    src_port: int | None = None
    dst_port: int | None = None
    icmp_type: int | None = None
    icmp_code: int | None = None

    def describe(self) -> str:
        proto = protocol_name(self.protocol)
        if self.protocol == ICMP:
            return (f"{self.src_ip} -> {self.dst_ip} {proto} "
                    f"type {self.icmp_type} code {self.icmp_code}")
        src = f"{self.src_ip}:{self.src_port}" if self.src_port is not None else str(self.src_ip)
        dst = f"{self.dst_ip}:{self.dst_port}" if self.dst_port is not None else str(self.dst_ip)
        return f"{src} -> {dst} {proto}"


@dataclass(frozen=True)
class RuleRef:
    """One rule of a policy or profile (``policy_kind`` is "Profile" for profiles)."""

    policy_key: str
    policy_kind: str
    tier: str
    direction: str
    rule_index: int
    action: str

    def describe(self) -> str:
        where = f"tier {self.tier} " if self.tier else ""
        return (f"{where}{self.policy_kind} {self.policy_key} {self.direction} "
                f"rule {self.rule_index} ({self.action})")


@dataclass(frozen=True)
class StagedOutcome:
    """What a staged policy would have done had it been enforced.

    ``outcome`` is "allow", "deny", "pass" or "no-match"; ``rule_index`` is None for no-match.
    """

    policy_key: str
    policy_kind: str
    tier: str
    direction: str
    outcome: str
    rule_index: int | None = None

    def describe(self) -> str:
        verb = {"allow": "would have allowed", "deny": "would have denied",
                "pass": "would have passed to the next tier"}.get(self.outcome, "matched no rule")
        rule = f" (rule {self.rule_index})" if self.rule_index is not None else ""
        return f"{self.policy_kind} {self.policy_key} {verb}{rule}"


@dataclass(frozen=True)
class DirectionDecision:
    """The verdict of one endpoint chain (cali-tw-* for ingress, cali-fw-* for egress).

    ``reason`` is one of "policy-allow", "policy-deny", "tier-default-deny",
    "profile-allow", "profile-deny" (a profile Deny rule, or a profile missing from the
    datastore), "no-profile" (fell off the last profile) or "encap-from-workload" (felix's
    drop of VXLAN/IPIP packets sent by a workload, egress only).
    """

    endpoint: str
    direction: str
    allowed: bool
    reason: str
    deciding: RuleRef | None
    tier: str | None
    profile: str | None
    applied_policies: tuple[str, ...]
    staged: tuple[StagedOutcome, ...] = ()
    passes: tuple[RuleRef, ...] = ()

    def summary(self) -> str:
        verdict = "allowed" if self.allowed else "denied"
        if self.deciding is not None:
            because = self.deciding.describe()
        elif self.reason == "tier-default-deny":
            because = f"end of tier {self.tier}"
        elif self.reason == "no-profile":
            because = "no profile matched"
        else:
            because = self.reason
        return f"{self.direction} {self.endpoint}: {verdict} by {because}"


@dataclass(frozen=True)
class ConnectionDecision:
    """Egress of the source workload AND ingress of the destination workload.

    A side is None when that address is not a workload (no policy of its own). ``loopback``
    is set when source and destination are the same pod: the packet never leaves the pod's
    network namespace, so no policy sees it.
    """

    allowed: bool
    egress: DirectionDecision | None
    ingress: DirectionDecision | None
    loopback: bool = False


# --------------------------------------------------------------------------------- protocols


def protocol_number(value: str | int) -> int:
    """Protocol name ("TCP", "udp", "UDPLite") or number ("6", 6) to its IP protocol number."""
    if isinstance(value, int):
        return value
    text = str(value).strip().lower()
    if text.isdigit():
        return int(text)
    try:
        return CALICO_PROTOCOLS[text]
    except KeyError:
        raise InputError(f"unknown protocol {value!r}") from None


def protocol_name(number: int) -> str:
    return display_name(number)


def _ipset_port_protocol(value: str | int) -> int:
    """ipsetmember.ProtocolFrom: UDP and SCTP are themselves, anything else counts as TCP."""
    number = protocol_number(value)
    return number if number in (17, 132) else 6


def named_port_protocol(rule_protocol: str | int | None) -> int | None:
    """The protocol a rule's named-port IP set is filtered by; None means any."""
    return None if rule_protocol is None else _ipset_port_protocol(rule_protocol)


def normalise_action(action: str) -> str:
    """Backend actions are lower case and Pass is "next-tier"; report API spelling."""
    lowered = action.lower()
    if lowered in ("pass", "next-tier"):
        return "Pass"
    return lowered.capitalize()


def kind_short_name(kind: str) -> str:
    return _KIND_SHORT.get(kind, kind)


def policy_label(policy: Policy) -> str:
    """``<tier>/<felix policy ID>``, e.g. ``default/knp/prod/deny-all``."""
    return f"{policy.tier}/{kind_short_name(policy.kind)}/{policy.key}"


# --------------------------------------------------------------------------------- ordering


def tier_sort_key(tier: Tier, declared: bool) -> tuple:
    """felix TierLess: declared (valid) tiers first, then order (None last), then name."""
    order = math.inf if tier.order is None else tier.order
    return (0 if declared else 1, order, tier.name)


def policy_sort_key(policy: Policy) -> tuple:
    """felix PolKVLess: order (None is +Inf), ties by "<name>/<namespace>/<kind>"."""
    order = math.inf if policy.order is None else policy.order
    return (order, f"{policy.name}/{policy.namespace or ''}/{policy.kind}")


def policy_types(policy: Policy) -> tuple[str, ...]:
    """A backend policy with no types governs both directions (ExtractPolicyMetadata)."""
    return tuple(t.lower() for t in policy.types) or ("ingress", "egress")


# --------------------------------------------------------------------------------- index


@dataclass(frozen=True)
class TierPolicies:
    """The policies of one tier that apply to one endpoint in one direction, in order."""

    tier: Tier
    policies: tuple[Policy, ...]

    @property
    def has_enforced(self) -> bool:
        return any(not p.staged for p in self.policies)

    @property
    def drops_at_end(self) -> bool:
        """endpoints.go: end-of-tier drop iff a non-staged policy exists and action != Pass."""
        return self.has_enforced and self.tier.default_action != "Pass"


class PolicyIndex:
    """A snapshot of a cluster prepared for fast repeated evaluation.

    Construction only sorts tiers and policies; per-endpoint and per-IP facts are computed on
    first use and cached. Build a new index if the cluster changes.
    """

    def __init__(self, cluster: Cluster):
        self.cluster = cluster
        self.tiers, self._declared = self._collect_tiers(cluster)
        tier_rank = {name: tier_sort_key(t, name in self._declared)
                     for name, t in self.tiers.items()}
        # Only "normal" tiers apply to workloads: doNotTrack/preDNAT policies are HEP-only.
        workload_policies = [p for p in cluster.policies if not (p.do_not_track or p.pre_dnat)]
        self.ordered_policies: tuple[Policy, ...] = tuple(sorted(
            workload_policies, key=lambda p: (tier_rank[p.tier], policy_sort_key(p))))
        self.workloads: dict[str, WorkloadEndpoint] = {
            key: ep for key, ep in cluster.endpoints.items() if not ep.pod.host_network}
        self._by_ip: dict[IPv4Address, list[WorkloadEndpoint]] = {}
        for ep in self.workloads.values():
            self._by_ip.setdefault(ep.pod.ip, []).append(ep)
        # Per direction: the policies governing it, indexed by the labels their selector
        # requires (selectors are compiled only when an endpoint's labels meet them).
        self._candidates = {
            direction: SelectorIndex([(p, p.selector) for p in self.ordered_policies
                                      if direction in policy_types(p)])
            for direction in ("ingress", "egress")}
        self._applicable: dict[tuple[str, str], tuple[TierPolicies, ...]] = {}
        self._label_sets: dict[IPv4Address, tuple[Labels, ...]] = {}
        self._entity_plans: dict[EntityRule, _EntityPlan] = {}

    def __getstate__(self) -> dict:
        # Pickled without the per-endpoint answers (and their compiled selectors).
        state = dict(self.__dict__)
        state.update(_applicable={}, _label_sets={}, _entity_plans={})
        return state

    @staticmethod
    def _collect_tiers(cluster: Cluster) -> tuple[dict[str, Tier], set[str]]:
        tiers = dict(BUILTIN_TIERS)
        tiers.update(cluster.tiers)
        declared = set(tiers)
        for policy in cluster.policies:
            if policy.tier not in tiers:
                # Referenced but undeclared: felix keeps it as an invalid tier sorted last,
                # with an empty defaultAction, which is not Pass and so drops.
                tiers[policy.tier] = Tier(name=policy.tier, order=None, default_action="Deny")
        return tiers, declared

    # -- endpoints and peers

    def endpoint_at(self, ip: IPv4Address) -> WorkloadEndpoint | None:
        """The workload endpoint owning an IP (the first one, as Cluster.endpoint_by_ip)."""
        found = self._by_ip.get(ip)
        return found[0] if found else None

    def endpoints_at(self, ip: IPv4Address) -> tuple[WorkloadEndpoint, ...]:
        return tuple(self._by_ip.get(ip, ()))

    def label_sets(self, ip: IPv4Address) -> tuple[Labels, ...]:
        """Every label set that puts ``ip`` into a selector IP set.

        Selector IP sets (hash:net) hold workload IPs, host endpoints' expected IPs and network
        set CIDRs of every matching object, so an address matches a selector if any object
        covering it matches (felix/labelindex/named_port_index.go).
        """
        cached = self._label_sets.get(ip)
        if cached is None:
            cached = self._compute_label_sets(ip)
            self._label_sets[ip] = cached
        return cached

    def _compute_label_sets(self, ip: IPv4Address) -> tuple[Labels, ...]:
        sets: list[Labels] = [ep.labels for ep in self.endpoints_at(ip)]
        for hep in self.cluster.host_endpoints:
            if ip in hep.expected_ips:
                sets.append(self._inherit(hep.labels, hep.profiles))
        for netset in self.cluster.network_sets:
            if any(ip in net for net in netset.nets):
                sets.append(network_set_labels(self.cluster, netset))
        return tuple(sets)

    def _inherit(self, own: Labels, profiles: tuple[str, ...]) -> Labels:
        """Own labels win over labels inherited from profiles (labelindex parent lookup)."""
        merged: dict[str, str] = {}
        for name in profiles:
            profile = self.cluster.profiles.get(name)
            if profile is not None:
                for key, value in profile.labels_to_apply.items():
                    merged.setdefault(key, value)
        merged.update(own)
        return merged

    # -- policy selection

    def applicable(self, endpoint_key: str, direction: str) -> tuple[TierPolicies, ...]:
        """Tiers with at least one policy selecting the endpoint in this direction."""
        cache_key = (endpoint_key, direction)
        cached = self._applicable.get(cache_key)
        if cached is None:
            cached = self._compute_applicable(self.workloads[endpoint_key], direction)
            self._applicable[cache_key] = cached
        return cached

    def _compute_applicable(self, ep: WorkloadEndpoint, direction: str) -> tuple[TierPolicies, ...]:
        grouped: dict[str, list[Policy]] = {}
        for policy in self._candidates[direction].matching(ep.labels):
            grouped.setdefault(policy.tier, []).append(policy)
        return tuple(TierPolicies(self.tiers[name], tuple(pols)) for name, pols in grouped.items())

    # -- rule matching

    def entity_plan(self, entity: EntityRule) -> _EntityPlan:
        plan = self._entity_plans.get(entity)
        if plan is None:
            plan = _EntityPlan.build(entity)
            self._entity_plans[entity] = plan
        return plan

    def rule_matches(self, rule: Rule, flow: Flow) -> bool:
        """Does ``rule`` match the flow's first packet (CalculateRuleMatch semantics)?"""
        if not rule_matches_packet_fields(rule, flow):
            return False
        named_proto = named_port_protocol(rule.protocol)
        return (self.side_matches(rule.source, flow.src_ip, flow.src_port, flow.protocol,
                                  named_proto)
                and self.side_matches(rule.destination, flow.dst_ip, flow.dst_port,
                                      flow.protocol, named_proto))

    def side_matches(self, entity: EntityRule, ip: IPv4Address, port: int | None,
                     protocol: int, named_proto: int | None) -> bool:
        """Match one side (source or destination) of a rule against an address and port."""
        return self.plan_matches(self.entity_plan(entity), ip, port, protocol, named_proto)

    def plan_matches(self, plan: _EntityPlan, ip: IPv4Address, port: int | None,
                     protocol: int, named_proto: int | None) -> bool:
        """side_matches with the rule side already reduced (hot loop of the matrix)."""
        if plan.is_empty:
            return True
        if plan.nets or plan.not_nets:
            if ip.version == 4:
                address = int(ip)
                if plan.nets and not any(m is not None and address & m[1] == m[0]
                                         for m in plan.nets):
                    return False
                if any(m is not None and address & m[1] == m[0] for m in plan.not_nets):
                    return False
            else:
                entity = plan.entity
                if entity.nets and not any(ip in net for net in entity.nets):
                    return False
                if any(ip in net for net in entity.not_nets):
                    return False
        if plan.positive is not None and not self._any_labels(plan.positive_matcher, ip):
            return False
        if plan.negative is not None and self._any_labels(plan.negative_matcher, ip):
            return False
        if plan.numeric_ports or plan.named_ports:
            if not self._port_list_matches(plan, plan.numeric_ports, plan.named_ports,
                                           ip, port, protocol, named_proto):
                return False
        if plan.not_numeric_ports or plan.not_named_ports:
            if protocol not in PORT_PROTOCOLS or port is None:
                return False
            if self._port_list_matches(plan, plan.not_numeric_ports, plan.not_named_ports,
                                       ip, port, protocol, named_proto):
                return False
        return True

    def selector_matches_ip(self, selector_text: str, ip: IPv4Address) -> bool:
        return self._any_labels(parse_selector(selector_text).matcher, ip)

    def _any_labels(self, matcher, ip: IPv4Address) -> bool:
        return any(matcher(labels) for labels in self.label_sets(ip))

    def _port_list_matches(self, plan: _EntityPlan, numeric: tuple[PortSpec, ...],
                           named: tuple[str, ...], ip: IPv4Address, port: int | None,
                           protocol: int, named_proto: int | None) -> bool:
        """Numeric ports and named ports are alternatives (one port match block)."""
        if protocol not in PORT_PROTOCOLS or port is None:
            return False
        if any(_port_in_range(spec, port) for spec in numeric):
            return True
        return any(self.named_port_matches(plan.positive, name, named_proto, ip, port, protocol)
                   for name in named)

    def named_port_matches(self, selector_text: str | None, name: str, named_proto: int | None,
                           ip: IPv4Address, port: int, protocol: int) -> bool:
        """Is ``ip,proto:port`` in the named-port set for (selector, name, protocol)?

        Members are the named container ports of endpoints matching the positive selector
        (rule_scanner.go namedPortsToIPSets; named_port_index.go LookupNamedPorts).
        """
        selector = parse_selector(selector_text) if selector_text else None
        for ep in self.endpoints_at(ip):
            if selector is not None and not selector.matches(ep.labels):
                continue
            if any(_named_port_member(cp, name, named_proto, port, protocol)
                   for cp in ep.pod.ports):
                return True
        return False


def _port_in_range(spec: PortSpec, port: int) -> bool:
    last = spec.first if spec.last is None else spec.last
    return spec.first is not None and spec.first <= port <= last


def _named_port_member(cp: ContainerPort, name: str, named_proto: int | None,
                       port: int, protocol: int) -> bool:
    if cp.name != name or cp.port != port:
        return False
    member_proto = _ipset_port_protocol(cp.protocol)
    return member_proto == protocol and (named_proto is None or named_proto == member_proto)


def network_set_labels(cluster: Cluster, netset: NetworkSet) -> Labels:
    """A NetworkSet's selector labels: its own, its namespace label, and the namespace
    profile's inherited ``pcns.*`` labels (networksetprocessor.go); global sets: their own."""
    if netset.namespace is None:
        return netset.labels
    merged: dict[str, str] = {}
    profile = cluster.profiles.get(f"kns.{netset.namespace}")
    if profile is not None:
        merged.update(profile.labels_to_apply)
    merged.update(netset.labels)
    merged[NAMESPACE_LABEL] = netset.namespace
    return merged


def rule_matches_packet_fields(rule: Rule, flow: Flow) -> bool:
    """The parts of a rule that look only at the packet: IP version, protocol, ICMP."""
    if rule.ip_version == 6:
        return False
    if rule.protocol is not None and protocol_number(rule.protocol) != flow.protocol:
        return False
    if rule.not_protocol is not None and protocol_number(rule.not_protocol) == flow.protocol:
        return False
    if rule.icmp is not None and not (flow.protocol == ICMP and _icmp_matches(rule.icmp, flow)):
        return False
    if rule.not_icmp is not None and not (flow.protocol == ICMP
                                          and not _icmp_matches(rule.not_icmp, flow)):
        return False
    return True


def _icmp_matches(fields: IcmpFields, flow: Flow) -> bool:
    if fields.type is not None and fields.type != flow.icmp_type:
        return False
    return fields.code is None or fields.code == flow.icmp_code


def _int_nets(nets) -> tuple:
    return tuple((int(n.network_address), int(n.netmask)) if n.version == 4 else None
                 for n in nets)


@dataclass(frozen=True)
class _EntityPlan:
    """One side of a rule as felix's rule scanner reduces it."""

    entity: EntityRule
    positive: str | None          # selector text, NotSelector folded in when possible
    negative: str | None          # only when there is no positive selector
    numeric_ports: tuple[PortSpec, ...]
    named_ports: tuple[str, ...]
    not_numeric_ports: tuple[PortSpec, ...]
    not_named_ports: tuple[str, ...]
    is_empty: bool
    positive_matcher: Callable[[Labels], bool] | None = None
    negative_matcher: Callable[[Labels], bool] | None = None
    # entity.nets / not_nets as IPv4 (network, mask) integers, None for an IPv6 net (which no
    # IPv4 address is in): the matrix tests millions of addresses against them.
    nets: tuple = ()
    not_nets: tuple = ()

    @classmethod
    def build(cls, entity: EntityRule) -> _EntityPlan:
        positive, negative = combine_selectors(entity.selector, entity.not_selector)
        return cls(
            nets=_int_nets(entity.nets),
            not_nets=_int_nets(entity.not_nets),
            entity=entity,
            positive=positive,
            negative=negative,
            numeric_ports=tuple(p for p in entity.ports if not p.is_named),
            named_ports=tuple(p.name for p in entity.ports if p.is_named),
            not_numeric_ports=tuple(p for p in entity.not_ports if not p.is_named),
            not_named_ports=tuple(p.name for p in entity.not_ports if p.is_named),
            is_empty=not (entity.nets or entity.not_nets or positive or negative
                          or entity.ports or entity.not_ports),
            positive_matcher=parse_selector(positive).matcher if positive else None,
            negative_matcher=parse_selector(negative).matcher if negative else None,
        )


def combine_selectors(positive: str | None, negative: str | None) -> tuple[str | None, str | None]:
    """rule_scanner.go combineMatchesIfPossible: fold the NotSelector into the selector."""
    positive = positive.strip() if positive and positive.strip() else None
    negative = negative.strip() if negative and negative.strip() else None
    if positive is not None and negative is not None:
        return f"({positive}) && (!({negative}))", None
    return positive, negative


# --------------------------------------------------------------------------------- caching


_INDEX_CACHE: dict[int, tuple[object, tuple, PolicyIndex]] = {}


def _fingerprint(cluster: Cluster) -> tuple:
    """A constant-time stamp of what the index reads: each collection's identity, length and
    first and last members, and the felix config. It notices appends, removals, replaced
    collections and replaced end members; after replacing a member in the middle of a
    collection, build a new :class:`PolicyIndex` (or a new Cluster)."""
    stamp: list = [id(cluster.felix), id(cluster.felix_overrides),
                   len(cluster.felix_overrides)]
    for collection in (cluster.policies, cluster.network_sets, cluster.host_endpoints,
                       cluster.tiers, cluster.profiles, cluster.endpoints):
        stamp.extend(_ends(collection))
    return tuple(stamp)


def _ends(collection) -> tuple:
    if isinstance(collection, dict):
        if not collection:
            return (id(collection), 0)
        first = next(iter(collection.values()))
        last = collection[next(reversed(collection))]
        return (id(collection), len(collection), id(first), id(last))
    if not collection:
        return (id(collection), 0)
    return (id(collection), len(collection), id(collection[0]), id(collection[-1]))


def index_for(cluster: Cluster) -> PolicyIndex:
    """The cached index of a cluster, rebuilt when its objects change."""
    fingerprint = _fingerprint(cluster)
    cached = _INDEX_CACHE.get(id(cluster))
    if cached is not None and cached[0] is cluster and cached[1] == fingerprint:
        return cached[2]
    index = PolicyIndex(cluster)
    if len(_INDEX_CACHE) > 8:
        _INDEX_CACHE.clear()
    _INDEX_CACHE[id(cluster)] = (cluster, fingerprint, index)
    return index


# --------------------------------------------------------------------------------- evaluation


def first_matching_rule(index: PolicyIndex, rules: tuple[Rule, ...],
                        flow: Flow) -> tuple[int, str] | None:
    """(index, action) of the first matching terminal rule; Log rules do not end a policy."""
    for position, rule in enumerate(rules):
        action = normalise_action(rule.action)
        if action == "Log":
            continue
        if index.rule_matches(rule, flow):
            return position, action
    return None


def encap_drop(cluster: Cluster, direction: str, flow: Flow, node: str | None) -> bool:
    """cali-fw-* drops VXLAN (UDP to the VXLAN port) and IPIP sent by workloads, as the
    workload's node (``node``) is configured."""
    if direction != "egress":
        return False
    felix = cluster.felix_for(node)
    if flow.protocol == 17 and flow.dst_port == felix.vxlan_port:
        return not felix.allow_vxlan_packets_from_workloads
    return flow.protocol == 4 and not felix.allow_ipip_packets_from_workloads


def evaluate_direction(cluster: Cluster, endpoint_key: str, direction: str,
                       flow: Flow, *, index: PolicyIndex | None = None) -> DirectionDecision:
    """The verdict of one workload endpoint's chain for ``flow`` in ``direction``
    (``index``: the cluster's :class:`PolicyIndex`, if one is at hand)."""
    if direction not in ("ingress", "egress"):
        raise InputError(f"direction must be ingress or egress, not {direction!r}")
    if index is None or index.cluster is not cluster:
        index = index_for(cluster)
    if endpoint_key not in index.workloads:
        raise InputError(f"no workload endpoint {endpoint_key!r}")
    return _Walk(index, endpoint_key, direction, flow).run()


def evaluate_connection(cluster: Cluster, flow: Flow) -> ConnectionDecision:
    """Allowed iff the source workload's egress and the destination workload's ingress allow."""
    index = index_for(cluster)
    src = index.endpoint_at(flow.src_ip)
    dst = index.endpoint_at(flow.dst_ip)
    if src is not None and src is dst:
        return ConnectionDecision(allowed=True, egress=None, ingress=None, loopback=True)
    egress = _Walk(index, src.key, "egress", flow).run() if src is not None else None
    ingress = _Walk(index, dst.key, "ingress", flow).run() if dst is not None else None
    allowed = all(side.allowed for side in (egress, ingress) if side is not None)
    return ConnectionDecision(allowed=allowed, egress=egress, ingress=ingress)


class _Walk:
    """One pass down an endpoint chain, collecting what the decision record reports."""

    def __init__(self, index: PolicyIndex, endpoint_key: str, direction: str, flow: Flow):
        self.index = index
        self.endpoint = index.workloads[endpoint_key]
        self.direction = direction
        self.flow = flow
        self.tiers = index.applicable(endpoint_key, direction)
        self.staged: list[StagedOutcome] = []
        self.passes: list[RuleRef] = []

    def run(self) -> DirectionDecision:
        if encap_drop(self.index.cluster, self.direction, self.flow, self.endpoint.pod.node):
            return self._decide(False, "encap-from-workload")
        for tier_policies in self.tiers:
            decision = self._walk_tier(tier_policies)
            if decision is not None:
                return decision
        return self._walk_profiles()

    def _walk_tier(self, tier_policies: TierPolicies) -> DirectionDecision | None:
        tier = tier_policies.tier.name
        for policy in tier_policies.policies:
            hit = first_matching_rule(self.index, policy.rules(self.direction), self.flow)
            if policy.staged:
                self.staged.append(self._staged_outcome(policy, hit))
                continue
            if hit is None:
                continue
            ref = RuleRef(policy.key, policy.kind, tier, self.direction, hit[0], hit[1])
            if hit[1] == "Pass":
                self.passes.append(ref)
                return None
            return self._decide(hit[1] == "Allow",
                                "policy-allow" if hit[1] == "Allow" else "policy-deny",
                                deciding=ref, tier=tier)
        if tier_policies.drops_at_end:
            return self._decide(False, "tier-default-deny", tier=tier)
        return None

    def _staged_outcome(self, policy: Policy, hit: tuple[int, str] | None) -> StagedOutcome:
        outcome = "no-match" if hit is None else hit[1].lower()
        return StagedOutcome(policy.key, policy.kind, policy.tier, self.direction, outcome,
                             None if hit is None else hit[0])

    def _walk_profiles(self) -> DirectionDecision:
        for name in self.endpoint.profiles:
            profile = self.index.cluster.profiles.get(name)
            if profile is None:
                # active_rules_calculator.go: an unknown profile becomes a deny-all profile.
                ref = RuleRef(name, "Profile", "", self.direction, 0, "Deny")
                return self._decide(False, "profile-deny", deciding=ref, profile=name)
            hit = first_matching_rule(self.index, profile.rules(self.direction), self.flow)
            if hit is None or hit[1] == "Pass":
                continue   # only the accept bit is checked after a profile
            ref = RuleRef(name, "Profile", "", self.direction, hit[0], hit[1])
            allowed = hit[1] == "Allow"
            return self._decide(allowed, "profile-allow" if allowed else "profile-deny",
                                deciding=ref, profile=name)
        return self._decide(False, "no-profile")

    def _decide(self, allowed: bool, reason: str, deciding: RuleRef | None = None,
                tier: str | None = None, profile: str | None = None) -> DirectionDecision:
        applied = tuple(policy_label(p) for tp in self.tiers for p in tp.policies
                        if not p.staged)     # staged policies enforce nothing: listed apart
        return DirectionDecision(
            endpoint=self.endpoint.key, direction=self.direction, allowed=allowed,
            reason=reason, deciding=deciding, tier=tier, profile=profile,
            applied_policies=applied, staged=tuple(self.staged), passes=tuple(self.passes))
