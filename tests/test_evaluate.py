"""Calico policy evaluation semantics (tracer.policy.evaluate), on clusters built from the
model dataclasses, plus every scenario's ``expect:`` list when the loader is available."""

from __future__ import annotations

from dataclasses import replace
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

import pytest

from tracer.errors import InputError
from tracer.model.cluster import (
    Cluster,
    ContainerPort,
    EntityRule,
    FelixConfig,
    HostEndpoint,
    IcmpFields,
    NetworkSet,
    Pod,
    Policy,
    PortSpec,
    Profile,
    Rule,
    Tier,
    WorkloadEndpoint,
)
from tracer.policy.evaluate import (
    Flow,
    evaluate_connection,
    evaluate_direction,
    policy_sort_key,
)

NS_LABEL = "projectcalico.org/namespace"
K8S = "projectcalico.org/orchestrator == 'k8s'"


# ----------------------------------------------------------------------------- builders


def ip(text: str) -> IPv4Address:
    return IPv4Address(text)


def add_pod(cluster: Cluster, ns: str, name: str, addr: str, labels: dict | None = None,
            sa: str = "default", ports: tuple[ContainerPort, ...] = ()) -> WorkloadEndpoint:
    """A pod as the loader converts it: pod + Calico + inherited pcns./pcsa. labels."""
    labels = dict(labels or {})
    pod = Pod(ns, name, "node-1", ip(addr), labels, sa, ports)
    full = dict(labels)
    for profile_name in (f"kns.{ns}", f"ksa.{ns}.{sa}"):
        ensure_profiles(cluster, ns, sa)
        full.update(cluster.profiles[profile_name].labels_to_apply)
    full.update({NS_LABEL: ns, "projectcalico.org/orchestrator": "k8s",
                 "projectcalico.org/serviceaccount": sa})
    ep = WorkloadEndpoint(pod, "cali0000000000", full, (f"kns.{ns}", f"ksa.{ns}.{sa}"))
    cluster.pods[pod.key] = pod
    cluster.endpoints[pod.key] = ep
    return ep


def ensure_profiles(cluster: Cluster, ns: str, sa: str, ns_labels: dict | None = None) -> None:
    if f"kns.{ns}" not in cluster.profiles or ns_labels is not None:
        applied = {f"pcns.{k}": v for k, v in (ns_labels or {}).items()}
        applied["pcns.projectcalico.org/name"] = ns
        cluster.profiles[f"kns.{ns}"] = Profile(f"kns.{ns}", applied, (Rule("Allow"),),
                                                (Rule("Allow"),))
    if f"ksa.{ns}.{sa}" not in cluster.profiles:
        cluster.profiles[f"ksa.{ns}.{sa}"] = Profile(
            f"ksa.{ns}.{sa}", {"pcsa.projectcalico.org/name": sa})


def knp(name: str, ns: str, pod_selector: str, types=("ingress",), ingress=(), egress=(),
        kind: str = "KubernetesNetworkPolicy") -> Policy:
    """A k8s NetworkPolicy in backend form (order 1000, tier default)."""
    selector = f"({K8S}{' && ' + pod_selector if pod_selector else ''}) && {NS_LABEL} == '{ns}'"
    return Policy(kind, name, ns, "default", 1000.0, selector, tuple(types),
                  tuple(ingress), tuple(egress))


def gnp(name: str, selector: str, tier: str = "default", order: float | None = None,
        types=("ingress",), ingress=(), egress=(), kind: str = "GlobalNetworkPolicy",
        **extra) -> Policy:
    return Policy(kind, name, None, tier, order, selector, tuple(types), tuple(ingress),
                  tuple(egress), **extra)


def peer(ns: str, pod_selector: str = "") -> str:
    """A k8s podSelector peer in the policy's namespace, as the converter writes it."""
    pod_part = f"{K8S}{' && ' + pod_selector if pod_selector else ''}"
    return f"({NS_LABEL} == '{ns}') && ({pod_part})"


def tcp(src: str, dst: str, port: int = 80, sport: int = 40000) -> Flow:
    return Flow(ip(src), ip(dst), 6, sport, port)


def allow_from(selector: str | None = None, **entity) -> Rule:
    return Rule("Allow", source=EntityRule(selector=selector, **entity))


@pytest.fixture
def cluster() -> Cluster:
    """default/client 10.0.0.2 (app=client), default/web 10.0.0.1 (app=web, port http=8080),
    prod/db 10.0.1.1 (app=db, sa=db-sa, namespace team=a)."""
    c = Cluster()
    ensure_profiles(c, "prod", "db-sa", ns_labels={"team": "a"})
    add_pod(c, "default", "web", "10.0.0.1", {"app": "web"},
            ports=(ContainerPort(8080, "TCP", "http"), ContainerPort(5353, "UDP", "dns")))
    add_pod(c, "default", "client", "10.0.0.2", {"app": "client"})
    add_pod(c, "prod", "db", "10.0.1.1", {"app": "db"}, sa="db-sa")
    return c


# ----------------------------------------------------------------------------- basics


def test_no_policy_falls_through_to_namespace_profile(cluster):
    decision = evaluate_direction(cluster, "default/web", "ingress", tcp("10.0.0.2", "10.0.0.1"))
    assert decision.allowed and decision.reason == "profile-allow"
    assert decision.profile == "kns.default" and decision.applied_policies == ()


def test_default_deny_ingress_drops_at_end_of_tier(cluster):
    cluster.policies.append(knp("deny-all", "default", "", types=("ingress",)))
    result = evaluate_connection(cluster, tcp("10.0.0.2", "10.0.0.1"))
    assert not result.allowed
    assert result.egress.allowed and result.egress.reason == "profile-allow"
    assert result.ingress.reason == "tier-default-deny" and result.ingress.tier == "default"
    assert result.ingress.deciding is None
    assert result.ingress.applied_policies == ("default/knp/default/deny-all",)
    # The policy is namespaced: prod/db is not selected.
    assert evaluate_connection(cluster, tcp("10.0.0.2", "10.0.1.1")).allowed


def test_allow_rule_matches_selected_peer_only(cluster):
    cluster.policies.append(knp("allow-client", "default", "app == 'web'",
                                ingress=[allow_from(peer("default", "app == 'client'"))]))
    allowed = evaluate_connection(cluster, tcp("10.0.0.2", "10.0.0.1"))
    assert allowed.allowed and allowed.ingress.reason == "policy-allow"
    assert allowed.ingress.deciding.policy_key == "default/allow-client"
    assert allowed.ingress.deciding.rule_index == 0
    denied = evaluate_connection(cluster, tcp("10.0.1.1", "10.0.0.1"))
    assert not denied.allowed and denied.ingress.reason == "tier-default-deny"


def test_egress_and_ingress_must_both_allow(cluster):
    cluster.policies.append(knp("client-egress", "default", "app == 'client'",
                                types=("egress",),
                                egress=[Rule("Allow", destination=EntityRule(
                                    selector=peer("default", "app == 'web'")))]))
    to_web = evaluate_connection(cluster, tcp("10.0.0.2", "10.0.0.1"))
    assert to_web.allowed and to_web.egress.reason == "policy-allow"
    to_db = evaluate_connection(cluster, tcp("10.0.0.2", "10.0.1.1"))
    assert not to_db.allowed
    assert to_db.egress.reason == "tier-default-deny" and to_db.ingress.allowed
    # Now deny ingress at web: egress allows but the connection fails.
    cluster.policies.append(knp("web-deny", "default", "app == 'web'"))
    result = evaluate_connection(cluster, tcp("10.0.0.2", "10.0.0.1"))
    assert result.egress.allowed and not result.ingress.allowed and not result.allowed


def test_external_source_has_no_egress_side(cluster):
    result = evaluate_connection(cluster, tcp("203.0.113.9", "10.0.0.1"))
    assert result.egress is None and result.ingress is not None and result.allowed
    outbound = evaluate_connection(cluster, tcp("10.0.0.1", "203.0.113.9"))
    assert outbound.ingress is None and outbound.egress.allowed


def test_pod_to_itself_is_loopback(cluster):
    cluster.policies.append(knp("deny-all", "default", "", types=("ingress", "egress")))
    result = evaluate_connection(cluster, tcp("10.0.0.1", "10.0.0.1"))
    assert result.allowed and result.loopback and result.egress is None


def test_unknown_endpoint_and_direction_are_input_errors(cluster):
    with pytest.raises(InputError):
        evaluate_direction(cluster, "default/nope", "ingress", tcp("10.0.0.2", "10.0.0.1"))
    with pytest.raises(InputError):
        evaluate_direction(cluster, "default/web", "sideways", tcp("10.0.0.2", "10.0.0.1"))


# ----------------------------------------------------------------------------- tiers


def add_tier(cluster: Cluster, name: str, order: float | None, default: str = "Deny") -> None:
    cluster.tiers[name] = Tier(name, order, default)


def test_pass_moves_to_next_tier(cluster):
    add_tier(cluster, "security", 100.0)
    cluster.policies.append(gnp("pass-client", "app == 'web'", tier="security", order=1,
                                ingress=[Rule("Pass",
                                              source=EntityRule(selector="app == 'client'")),
                                         Rule("Deny")]))
    cluster.policies.append(knp("web-deny", "default", "app == 'web'"))
    passed = evaluate_direction(cluster, "default/web", "ingress", tcp("10.0.0.2", "10.0.0.1"))
    assert passed.reason == "tier-default-deny" and passed.tier == "default"
    assert [ref.policy_key for ref in passed.passes] == ["pass-client"]
    assert passed.applied_policies == ("security/gnp/pass-client", "default/knp/default/web-deny")
    denied = evaluate_direction(cluster, "default/web", "ingress", tcp("10.0.1.1", "10.0.0.1"))
    assert denied.reason == "policy-deny" and denied.deciding.rule_index == 1
    assert denied.tier == "security" and denied.passes == ()


def test_pass_in_last_tier_reaches_profiles(cluster):
    cluster.policies.append(gnp("pass-all", "app == 'web'", ingress=[Rule("Pass")]))
    decision = evaluate_direction(cluster, "default/web", "ingress", tcp("10.0.0.2", "10.0.0.1"))
    assert decision.allowed and decision.reason == "profile-allow"
    assert decision.passes[0].action == "Pass"


def test_tier_with_pass_default_action_has_no_end_of_tier_drop(cluster):
    add_tier(cluster, "platform", 50.0, default="Pass")
    cluster.policies.append(gnp("nothing-matches", "app == 'web'", tier="platform",
                                ingress=[Rule("Allow", source=EntityRule(nets=(
                                    IPv4Network("192.0.2.0/24"),)))]))
    decision = evaluate_direction(cluster, "default/web", "ingress", tcp("10.0.0.2", "10.0.0.1"))
    assert decision.allowed and decision.reason == "profile-allow"


def test_tier_order_none_sorts_last_and_ties_by_name(cluster):
    add_tier(cluster, "zeta", 10.0)
    add_tier(cluster, "alpha", 10.0)
    add_tier(cluster, "last", None)
    for tier in ("last", "zeta", "alpha"):
        cluster.policies.append(gnp(f"in-{tier}", "app == 'web'", tier=tier,
                                    ingress=[Rule("Pass")]))
    decision = evaluate_direction(cluster, "default/web", "ingress", tcp("10.0.0.2", "10.0.0.1"))
    assert [ref.tier for ref in decision.passes] == ["alpha", "zeta", "last"]
    # "last" (order None) sorts after the built-in default tier (order 1e6).
    cluster.policies.append(knp("web-deny", "default", "app == 'web'"))
    decision = evaluate_direction(cluster, "default/web", "ingress", tcp("10.0.0.2", "10.0.0.1"))
    assert decision.reason == "tier-default-deny" and decision.tier == "default"
    assert [ref.tier for ref in decision.passes] == ["alpha", "zeta"]


def test_policy_order_then_name_namespace_kind_tie_break(cluster):
    deny = gnp("b-deny", "app == 'web'", order=10, ingress=[Rule("Deny")])
    allow = gnp("a-allow", "app == 'web'", order=10, ingress=[Rule("Allow")])
    cluster.policies.extend([deny, allow])
    flow = tcp("10.0.0.2", "10.0.0.1")
    decision = evaluate_direction(cluster, "default/web", "ingress", flow)
    assert decision.deciding.policy_key == "a-allow"
    # A lower order wins over the name.
    cluster.policies[0] = replace(deny, order=5)
    assert not evaluate_direction(cluster, "default/web", "ingress", flow).allowed
    # No order sorts after any order (k8s policies at 1000 come first).
    cluster.policies[0] = replace(deny, order=None)
    assert evaluate_direction(cluster, "default/web", "ingress", flow).allowed
    # The tie-break string is name/namespace/kind.
    keys = sorted([knp("x", "ns", ""), replace(knp("x", "ns", ""), kind="NetworkPolicy")],
                  key=policy_sort_key)
    assert [p.kind for p in keys] == ["KubernetesNetworkPolicy", "NetworkPolicy"]


def test_log_rule_does_not_end_the_policy(cluster):
    cluster.policies.append(gnp("log-then-deny", "app == 'web'", order=1,
                                ingress=[Rule("Log"), Rule("Deny")]))
    decision = evaluate_direction(cluster, "default/web", "ingress", tcp("10.0.0.2", "10.0.0.1"))
    assert decision.reason == "policy-deny" and decision.deciding.rule_index == 1


def test_no_matching_rule_continues_with_next_policy(cluster):
    cluster.policies.append(gnp("first", "app == 'web'", order=1,
                                ingress=[Rule("Deny", source=EntityRule(selector="app == 'db'"))]))
    cluster.policies.append(gnp("second", "app == 'web'", order=2, ingress=[Rule("Allow")]))
    decision = evaluate_direction(cluster, "default/web", "ingress", tcp("10.0.0.2", "10.0.0.1"))
    assert decision.allowed and decision.deciding.policy_key == "second"


def test_policy_types_gate_directions(cluster):
    cluster.policies.append(knp("egress-only", "default", "app == 'web'", types=("egress",)))
    assert evaluate_direction(cluster, "default/web", "ingress",
                              tcp("10.0.0.2", "10.0.0.1")).allowed
    assert not evaluate_direction(cluster, "default/web", "egress",
                                  tcp("10.0.0.1", "10.0.0.2")).allowed
    # A backend policy without types governs both directions.
    cluster.policies[0] = replace(cluster.policies[0], types=())
    assert not evaluate_direction(cluster, "default/web", "ingress",
                                  tcp("10.0.0.2", "10.0.0.1")).allowed


def test_untracked_and_pre_dnat_policies_do_not_apply_to_workloads(cluster):
    cluster.policies.append(gnp("untracked", "all()", order=1, ingress=[Rule("Deny")],
                                do_not_track=True))
    cluster.policies.append(gnp("prednat", "all()", order=1, ingress=[Rule("Deny")],
                                pre_dnat=True))
    decision = evaluate_direction(cluster, "default/web", "ingress", tcp("10.0.0.2", "10.0.0.1"))
    assert decision.allowed and decision.applied_policies == ()


# ----------------------------------------------------------------------------- staged


def test_staged_policy_is_reported_not_enforced(cluster):
    cluster.policies.append(knp("staged-deny", "default", "app == 'web'",
                                kind="StagedKubernetesNetworkPolicy"))
    cluster.policies.append(gnp("staged-block", "app == 'web'", order=1, ingress=[Rule("Deny")],
                                kind="StagedGlobalNetworkPolicy"))
    decision = evaluate_direction(cluster, "default/web", "ingress", tcp("10.0.0.2", "10.0.0.1"))
    # A tier with only staged policies has no end-of-tier drop.
    assert decision.allowed and decision.reason == "profile-allow"
    outcomes = {s.policy_key: (s.outcome, s.rule_index) for s in decision.staged}
    assert outcomes == {"staged-block": ("deny", 0), "default/staged-deny": ("no-match", None)}
    assert "would have denied" in decision.staged[0].describe()
    assert decision.applied_policies == ()      # staged policies select nothing for real


def test_staged_allow_before_enforced_deny(cluster):
    cluster.policies.append(gnp("staged-allow", "app == 'web'", order=1, ingress=[Rule("Allow")],
                                kind="StagedGlobalNetworkPolicy"))
    cluster.policies.append(knp("web-deny", "default", "app == 'web'"))
    decision = evaluate_direction(cluster, "default/web", "ingress", tcp("10.0.0.2", "10.0.0.1"))
    assert not decision.allowed and decision.reason == "tier-default-deny"
    assert [(s.policy_key, s.outcome) for s in decision.staged] == [("staged-allow", "allow")]


# ----------------------------------------------------------------------------- profiles


def test_service_account_profile_alone_drops(cluster):
    ep = cluster.endpoints["default/web"]
    cluster.endpoints["default/web"] = replace(ep, profiles=("ksa.default.default",))
    decision = evaluate_direction(cluster, "default/web", "ingress", tcp("10.0.0.2", "10.0.0.1"))
    assert not decision.allowed and decision.reason == "no-profile"


def test_missing_profile_acts_as_deny_all(cluster):
    ep = cluster.endpoints["default/web"]
    cluster.endpoints["default/web"] = replace(ep, profiles=("kns.gone", "kns.default"))
    decision = evaluate_direction(cluster, "default/web", "ingress", tcp("10.0.0.2", "10.0.0.1"))
    assert not decision.allowed and decision.reason == "profile-deny"
    assert decision.profile == "kns.gone"


# ----------------------------------------------------------------------------- rule matching


def test_named_port_resolves_against_destination_endpoint(cluster):
    rule = Rule("Allow", protocol="TCP", destination=EntityRule(ports=(PortSpec(name="http"),)))
    cluster.policies.append(knp("web-http", "default", "app == 'web'", ingress=[rule]))
    assert evaluate_connection(cluster, tcp("10.0.0.2", "10.0.0.1", port=8080)).allowed
    assert not evaluate_connection(cluster, tcp("10.0.0.2", "10.0.0.1", port=80)).allowed
    # "dns" is a UDP port: a TCP rule's named-port set holds no member for it.
    udp_rule = Rule("Allow", protocol="TCP", destination=EntityRule(ports=(PortSpec(name="dns"),)))
    cluster.policies[0] = knp("web-dns", "default", "app == 'web'", ingress=[udp_rule])
    assert not evaluate_connection(cluster, tcp("10.0.0.2", "10.0.0.1", port=5353)).allowed
    udp_rule = replace(udp_rule, protocol="UDP")
    cluster.policies[0] = knp("web-dns", "default", "app == 'web'", ingress=[udp_rule])
    udp = Flow(ip("10.0.0.2"), ip("10.0.0.1"), 17, 40000, 5353)
    assert evaluate_connection(cluster, udp).allowed


def test_named_and_numeric_ports_are_alternatives(cluster):
    rule = Rule("Allow", protocol="TCP", destination=EntityRule(
        ports=(PortSpec(first=9000, last=9100), PortSpec(name="http"))))
    cluster.policies.append(knp("web-ports", "default", "app == 'web'", ingress=[rule]))
    assert evaluate_connection(cluster, tcp("10.0.0.2", "10.0.0.1", port=9050)).allowed
    assert evaluate_connection(cluster, tcp("10.0.0.2", "10.0.0.1", port=8080)).allowed
    assert not evaluate_connection(cluster, tcp("10.0.0.2", "10.0.0.1", port=9101)).allowed


def test_ports_need_a_protocol_with_ports(cluster):
    rule = Rule("Allow", destination=EntityRule(ports=(PortSpec(first=80, last=80),)))
    cluster.policies.append(knp("web-80", "default", "app == 'web'", ingress=[rule]))
    icmp = Flow(ip("10.0.0.2"), ip("10.0.0.1"), 1, icmp_type=8, icmp_code=0)
    assert not evaluate_connection(cluster, icmp).allowed
    assert evaluate_connection(cluster, tcp("10.0.0.2", "10.0.0.1", port=80)).allowed


def test_not_ports_and_source_ports(cluster):
    rule = Rule("Allow", protocol="TCP", source=EntityRule(ports=(PortSpec(1024, 65535),)),
                destination=EntityRule(not_ports=(PortSpec(22, 22),)))
    cluster.policies.append(knp("web", "default", "app == 'web'", ingress=[rule]))
    assert evaluate_connection(cluster, tcp("10.0.0.2", "10.0.0.1", port=80)).allowed
    assert not evaluate_connection(cluster, tcp("10.0.0.2", "10.0.0.1", port=22)).allowed
    assert not evaluate_connection(cluster, tcp("10.0.0.2", "10.0.0.1", sport=80)).allowed


def test_ipblock_with_except(cluster):
    rule = allow_from(nets=(IPv4Network("192.168.0.0/16"),),
                      not_nets=(IPv4Network("192.168.5.0/24"),))
    cluster.policies.append(knp("web", "default", "app == 'web'", ingress=[rule]))
    assert evaluate_connection(cluster, tcp("192.168.1.1", "10.0.0.1")).allowed
    assert not evaluate_connection(cluster, tcp("192.168.5.7", "10.0.0.1")).allowed
    assert not evaluate_connection(cluster, tcp("10.0.0.2", "10.0.0.1")).allowed


def test_namespace_selector_uses_inherited_namespace_labels(cluster):
    # namespaceSelector team == 'a' -> pcns.team == 'a' (applied by the converter).
    sel = f"(pcns.team == 'a') && ({K8S})"
    cluster.policies.append(knp("from-team-a", "default", "app == 'web'",
                                ingress=[allow_from(sel)]))
    assert evaluate_connection(cluster, tcp("10.0.1.1", "10.0.0.1")).allowed
    assert not evaluate_connection(cluster, tcp("10.0.0.2", "10.0.0.1")).allowed


def test_service_account_selector(cluster):
    sel = f"({NS_LABEL} == 'prod') && (projectcalico.org/serviceaccount in {{ 'db-sa' }})"
    cluster.policies.append(knp("from-db-sa", "default", "app == 'web'",
                                ingress=[allow_from(sel)]))
    assert evaluate_connection(cluster, tcp("10.0.1.1", "10.0.0.1")).allowed
    assert not evaluate_connection(cluster, tcp("10.0.0.2", "10.0.0.1")).allowed
    sa_label = f"({NS_LABEL} == 'prod') && (pcsa.projectcalico.org/name == 'db-sa')"
    cluster.policies[0] = knp("from-db-sa", "default", "app == 'web'",
                              ingress=[allow_from(sa_label)])
    assert evaluate_connection(cluster, tcp("10.0.1.1", "10.0.0.1")).allowed


def test_not_selector_is_folded_into_selector(cluster):
    rule = allow_from(selector="has(app)", not_selector="app == 'client'")
    cluster.policies.append(gnp("not-client", "app == 'web'", ingress=[rule]))
    assert evaluate_connection(cluster, tcp("10.0.1.1", "10.0.0.1")).allowed
    assert not evaluate_connection(cluster, tcp("10.0.0.2", "10.0.0.1")).allowed
    # A NotSelector alone also matches addresses outside every endpoint.
    cluster.policies[0] = gnp("not-client", "app == 'web'",
                              ingress=[allow_from(not_selector="app == 'client'")])
    assert evaluate_connection(cluster, tcp("198.51.100.1", "10.0.0.1")).allowed
    assert not evaluate_connection(cluster, tcp("10.0.0.2", "10.0.0.1")).allowed


def test_global_network_set_peer(cluster):
    cluster.network_sets.append(NetworkSet("blocked", None, (IPv4Network("8.8.8.0/24"),),
                                           {"role": "blocked"}))
    cluster.policies.append(gnp("no-blocked", "all()", order=1, types=("egress",),
                                egress=[Rule("Deny", destination=EntityRule(
                                    selector="role == 'blocked'")), Rule("Allow")]))
    assert not evaluate_connection(cluster, tcp("10.0.0.2", "8.8.8.8", 53)).allowed
    assert evaluate_connection(cluster, tcp("10.0.0.2", "1.1.1.1", 53)).allowed


def test_namespaced_network_set_only_matches_same_namespace_selectors(cluster):
    cluster.network_sets.append(NetworkSet("partners", "default",
                                           (IPv4Network("198.51.100.0/24"),), {"role": "partner"}))
    cluster.policies.append(knp("web", "default", "app == 'web'",
                                ingress=[allow_from(f"({NS_LABEL} == 'default') && "
                                                    "(role == 'partner')")]))
    cluster.policies.append(knp("db", "prod", "app == 'db'",
                                ingress=[allow_from(f"({NS_LABEL} == 'prod') && "
                                                    "(role == 'partner')")]))
    assert evaluate_connection(cluster, tcp("198.51.100.4", "10.0.0.1")).allowed
    assert not evaluate_connection(cluster, tcp("198.51.100.4", "10.0.1.1")).allowed


def test_pod_inside_network_set_cidr_matches_its_labels(cluster):
    # Selector IP sets are hash:net: a pod address inside a matching set's CIDR is a member.
    cluster.network_sets.append(NetworkSet("pods", None, (IPv4Network("10.0.1.0/24"),),
                                           {"zone": "prod"}))
    cluster.policies.append(gnp("from-zone", "app == 'web'",
                                ingress=[allow_from("zone == 'prod'")]))
    assert evaluate_connection(cluster, tcp("10.0.1.1", "10.0.0.1")).allowed
    assert not evaluate_connection(cluster, tcp("10.0.0.2", "10.0.0.1")).allowed


def test_host_endpoint_peer(cluster):
    cluster.host_endpoints.append(HostEndpoint("node-1-eth0", "node-1", "eth0",
                                               (ip("10.10.0.1"),), {"role": "node"}))
    cluster.policies.append(gnp("from-nodes", "app == 'web'",
                                ingress=[allow_from("role == 'node'")]))
    assert evaluate_connection(cluster, tcp("10.10.0.1", "10.0.0.1")).allowed
    assert not evaluate_connection(cluster, tcp("10.10.0.2", "10.0.0.1")).allowed


def test_protocol_not_protocol_and_icmp(cluster):
    cluster.policies.append(gnp("icmp", "app == 'web'", ingress=[
        Rule("Allow", protocol="ICMP", icmp=IcmpFields(type=8, code=0)),
        Rule("Deny", protocol="ICMP"),
        Rule("Allow", not_protocol="UDP"),
    ]))
    echo = Flow(ip("10.0.0.2"), ip("10.0.0.1"), 1, icmp_type=8, icmp_code=0)
    unreachable = Flow(ip("10.0.0.2"), ip("10.0.0.1"), 1, icmp_type=3, icmp_code=1)
    udp = Flow(ip("10.0.0.2"), ip("10.0.0.1"), 17, 40000, 53)
    assert evaluate_connection(cluster, echo).allowed
    assert evaluate_connection(cluster, unreachable).ingress.reason == "policy-deny"
    assert evaluate_connection(cluster, tcp("10.0.0.2", "10.0.0.1")).allowed
    assert evaluate_connection(cluster, udp).ingress.reason == "tier-default-deny"
    # Numeric protocols are the same as names.
    cluster.policies[0] = gnp("num", "app == 'web'", ingress=[Rule("Allow", protocol="17")])
    assert evaluate_connection(cluster, udp).allowed


def test_not_icmp(cluster):
    cluster.policies.append(gnp("not-echo", "app == 'web'", ingress=[
        Rule("Allow", protocol="ICMP", not_icmp=IcmpFields(type=8))]))
    echo = Flow(ip("10.0.0.2"), ip("10.0.0.1"), 1, icmp_type=8, icmp_code=0)
    reply = Flow(ip("10.0.0.2"), ip("10.0.0.1"), 1, icmp_type=0, icmp_code=0)
    assert not evaluate_connection(cluster, echo).allowed
    assert evaluate_connection(cluster, reply).allowed


def test_ipv6_rules_are_skipped(cluster):
    cluster.policies.append(gnp("v6", "app == 'web'", ingress=[Rule("Allow", ip_version=6)]))
    assert not evaluate_connection(cluster, tcp("10.0.0.2", "10.0.0.1")).allowed


def test_workload_vxlan_and_ipip_are_dropped_on_egress(cluster):
    vxlan = Flow(ip("10.0.0.2"), ip("10.0.0.1"), 17, 40000, 4789)
    result = evaluate_connection(cluster, vxlan)
    assert not result.allowed and result.egress.reason == "encap-from-workload"
    ipip = Flow(ip("10.0.0.2"), ip("10.0.0.1"), 4)
    assert not evaluate_connection(cluster, ipip).allowed
    cluster.felix = FelixConfig(allow_vxlan_packets_from_workloads=True)
    assert evaluate_connection(cluster, vxlan).allowed


def test_index_is_rebuilt_when_the_cluster_changes(cluster):
    flow = tcp("10.0.0.2", "10.0.0.1")
    assert evaluate_connection(cluster, flow).allowed
    cluster.policies.append(knp("deny", "default", ""))
    assert not evaluate_connection(cluster, flow).allowed


def test_summary_mentions_the_decision(cluster):
    cluster.policies.append(knp("deny", "default", ""))
    decision = evaluate_direction(cluster, "default/web", "ingress", tcp("10.0.0.2", "10.0.0.1"))
    assert decision.summary() == "ingress default/web: denied by end of tier default"


# ----------------------------------------------------------------------------- scenarios

SCENARIOS = sorted(Path(__file__).resolve().parent.parent.glob("scenarios/*/scenario.yaml"))


def scenario_expectations() -> list:
    return [pytest.param(path.parent, id=path.parent.name) for path in SCENARIOS]


@pytest.mark.parametrize("scenario_dir", scenario_expectations())
def test_scenario_expectations(scenario_dir):
    loader = pytest.importorskip("tracer.model.loader")
    from tracer.policy.matrix import Probe

    meta = loader.load_scenario_meta(scenario_dir)
    expectations = meta.get("expect") or []
    if not expectations:
        pytest.skip(f"{scenario_dir.name} has no expect: entries")
    cluster = loader.load_cluster([scenario_dir])
    failures = []
    for item in expectations:
        src, dst = _address(cluster, item["from"]), _address(cluster, item["to"])
        probe = Probe.make(item.get("protocol", "TCP"), item.get("port"))
        decision = evaluate_connection(cluster, probe.flow_between(src, dst))
        if decision.allowed != bool(item["allowed"]):
            failures.append(f"{item}: got allowed={decision.allowed}")
    assert not failures, "\n".join(failures)


def _address(cluster: Cluster, name: str) -> IPv4Address:
    if name in cluster.endpoints:
        return cluster.endpoints[name].pod.ip
    if name in cluster.pods:
        return cluster.pods[name].ip
    return IPv4Address(name)
