"""The set-based reachability matrix agrees with per-pair evaluate_connection."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tracer.errors import InputError
from tracer.model.cluster import (
    Cluster,
    ContainerPort,
    EntityRule,
    HostEndpoint,
    NetworkSet,
    Pod,
    Policy,
    PortSpec,
    Profile,
    Rule,
    Tier,
    WorkloadEndpoint,
)
from tracer.policy.evaluate import evaluate_connection
from tracer.policy.matrix import Probe, compute_matrix, compute_matrix_naive
from tracer.policy.matrix_render import render_csv, render_text

NS_LABEL = "projectcalico.org/namespace"

SELECTORS = [
    "all()", "app == 'web'", "has(tier)", "tier != 'fe'", "app in {'db', 'api'}",
    f"{NS_LABEL} == 'a'", f"{NS_LABEL} == 'b' && app == 'db'", "pcns.team == 'x'",
    "projectcalico.org/serviceaccount == 's1'", "!has(app)", "role == 'ext'",
    "role == 'ext' || app == 'api'", "has(role)", "!has(role) && has(app)",
]
NETS = [IPv4Network(n) for n in ("10.0.0.0/29", "10.0.0.4/30", "10.0.0.8/31", "0.0.0.0/0",
                                 "10.0.0.12/32")]
# Network set CIDRs differ from rule CIDRs, so only the set's labels tell its pods apart.
SET_NETS = [IPv4Network(n) for n in ("10.0.0.0/30", "10.0.0.8/29", "10.0.0.6/31")]
PORTS = [PortSpec(80, 80), PortSpec(79, 81), PortSpec(8000, 9000), PortSpec(name="http"),
         PortSpec(name="dns"), PortSpec(5353, 5353)]
PROBES = [Probe.make("tcp", 80), Probe.make("tcp", 8080), Probe.make("udp", 5353),
          Probe.make("icmp", None), Probe.make("udp", 4789), Probe.make("sctp", 80)]


def endpoint(ns: str, name: str, addr: str, labels: dict, sa: str = "default",
             ports=(), ns_labels: dict | None = None, profiles=None) -> WorkloadEndpoint:
    pod = Pod(ns, name, "node-1", IPv4Address(addr), dict(labels), sa, tuple(ports))
    full = {f"pcns.{k}": v for k, v in (ns_labels or {}).items()}
    full.update(labels)
    full.update({NS_LABEL: ns, "projectcalico.org/orchestrator": "k8s",
                 "projectcalico.org/serviceaccount": sa})
    if profiles is None:
        profiles = (f"kns.{ns}", f"ksa.{ns}.{sa}")
    return WorkloadEndpoint(pod, "cali0", full, tuple(profiles))


# ----------------------------------------------------------------------------- strategies

@st.composite
def entity_rules(draw) -> EntityRule:
    """A rule side constraining one or two things, so that rules often match."""
    makers = {
        "nets": lambda: {"nets": tuple(draw(st.lists(st.sampled_from(NETS), min_size=1,
                                                     max_size=2, unique=True)))},
        "not_nets": lambda: {"not_nets": (draw(st.sampled_from(NETS[1:])),)},
        "selector": lambda: {"selector": draw(st.sampled_from(SELECTORS))},
        "not_selector": lambda: {"not_selector": draw(st.sampled_from(SELECTORS))},
        "ports": lambda: {"ports": tuple(draw(st.lists(st.sampled_from(PORTS), min_size=1,
                                                       max_size=2)))},
        "not_ports": lambda: {"not_ports": (draw(st.sampled_from(PORTS)),)},
    }
    chosen = draw(st.lists(st.sampled_from(sorted(makers)), min_size=1, max_size=2, unique=True))
    fields: dict = {}
    for name in chosen:
        fields.update(makers[name]())
    return EntityRule(**fields)


rules = st.builds(
    EntityRule,
    nets=st.lists(st.sampled_from(NETS), max_size=2, unique=True).map(tuple),
    not_nets=st.lists(st.sampled_from(NETS[1:]), max_size=1).map(tuple),
    selector=st.none() | st.sampled_from(SELECTORS),
    not_selector=st.none() | st.sampled_from(SELECTORS),
    ports=st.lists(st.sampled_from(PORTS), max_size=2).map(tuple),
    not_ports=st.lists(st.sampled_from(PORTS), max_size=1).map(tuple),
)
rules = st.builds(
    Rule,
    action=st.sampled_from(["Allow", "Deny", "Pass", "Log"]),
    protocol=st.sampled_from([None, None, None, "TCP", "UDP", "ICMP", "17"]),
    not_protocol=st.sampled_from([None, None, None, "SCTP"]),
    source=st.one_of(st.just(EntityRule()), entity_rules()),
    destination=st.one_of(st.just(EntityRule()), entity_rules()),
)
policies = st.builds(
    lambda kind, name, ns, tier, order, sel, types, ingress, egress: Policy(
        kind, name, ns if "Global" not in kind else None, tier, order,
        sel if "Global" in kind else f"({sel}) && {NS_LABEL} == '{ns}'", types,
        tuple(ingress), tuple(egress)),
    kind=st.sampled_from(["KubernetesNetworkPolicy", "NetworkPolicy", "GlobalNetworkPolicy",
                          "StagedNetworkPolicy", "StagedGlobalNetworkPolicy"]),
    name=st.sampled_from(["p1", "p2", "p3", "p4"]),
    ns=st.sampled_from(["a", "b"]),
    tier=st.sampled_from(["default", "sec", "platform"]),
    order=st.none() | st.sampled_from([1.0, 100.0, 1000.0]),
    sel=st.sampled_from(SELECTORS),
    types=st.sampled_from([("ingress",), ("egress",), ("ingress", "egress"), ()]),
    ingress=st.lists(rules, max_size=3),
    egress=st.lists(rules, max_size=3),
)
pod_specs = st.fixed_dictionaries({
    "ns": st.sampled_from(["a", "b"]),
    "app": st.none() | st.sampled_from(["web", "db", "api"]),
    "tier": st.none() | st.sampled_from(["fe", "be"]),
    "sa": st.sampled_from(["default", "s1"]),
    "ports": st.lists(st.sampled_from([ContainerPort(8080, "TCP", "http"),
                                       ContainerPort(80, "TCP", "http"),
                                       ContainerPort(5353, "UDP", "dns")]), max_size=2),
    "host": st.integers(1, 14),
    "profiles": st.sampled_from(["normal", "normal", "normal", "sa-only", "missing"]),
})


@st.composite
def clusters(draw) -> Cluster:
    cluster = Cluster()
    ns_labels = {"a": {"team": "x"}, "b": {"team": draw(st.sampled_from(["x", "y"]))}}
    for ns, labels in ns_labels.items():
        applied = {f"pcns.{k}": v for k, v in labels.items()}
        deny_rules = draw(st.sampled_from([(), (Rule("Deny", protocol="UDP"),)]))
        cluster.profiles[f"kns.{ns}"] = Profile(f"kns.{ns}", applied, deny_rules + (Rule("Allow"),),
                                                (Rule("Allow"),))
        for sa in ("default", "s1"):
            cluster.profiles[f"ksa.{ns}.{sa}"] = Profile(f"ksa.{ns}.{sa}")
    specs = draw(st.lists(pod_specs, min_size=1, max_size=5))
    # Twins that differ only by address make IP-based distinctions (nets, network sets, host
    # endpoints) the only thing telling pods apart.
    for spec in draw(st.lists(st.sampled_from(specs), min_size=1, max_size=3)):
        specs.append(dict(spec, host=draw(st.integers(1, 14))))
    for number, spec in enumerate(specs):
        labels = {k: spec[k] for k in ("app", "tier") if spec[k] is not None}
        profiles = {"normal": None, "sa-only": (f"ksa.{spec['ns']}.{spec['sa']}",),
                    "missing": ("kns.nowhere",)}[spec["profiles"]]
        ep = endpoint(spec["ns"], f"pod{number}", f"10.0.0.{spec['host']}", labels, spec["sa"],
                      spec["ports"], ns_labels[spec["ns"]], profiles)
        cluster.endpoints[ep.key] = ep
    for number, net in enumerate(draw(st.lists(st.sampled_from(SET_NETS), min_size=1, max_size=2))):
        ns = draw(st.none() | st.sampled_from(["a", "b"]))
        cluster.network_sets.append(NetworkSet(f"set{number}", ns, (net,), {"role": "ext"}))
    if draw(st.booleans()):
        host = draw(st.integers(1, 14))
        cluster.host_endpoints.append(HostEndpoint("hep", "node-1", "eth0",
                                                   (IPv4Address(f"10.0.0.{host}"),),
                                                   {"role": "ext"}))
    cluster.tiers["sec"] = Tier("sec", 10.0, draw(st.sampled_from(["Deny", "Pass"])))
    cluster.tiers["platform"] = Tier("platform", None, "Deny")
    cluster.policies.extend(draw(st.lists(policies, max_size=6)))
    return cluster


# ----------------------------------------------------------------------------- properties


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cluster=clusters(), probe=st.sampled_from(PROBES))
def test_set_based_matrix_equals_per_pair_evaluation(cluster, probe):
    fast = compute_matrix(cluster, probe)
    slow = compute_matrix_naive(cluster, probe)
    assert fast.pods == slow.pods
    assert (fast.allowed == slow.allowed).all(), _differences(fast, slow)
    assert fast.classes <= len(fast.pods)


def _differences(fast, slow) -> str:
    rows = []
    for i, src in enumerate(fast.pods):
        for j, dst in enumerate(fast.pods):
            if fast.allowed[i, j] != slow.allowed[i, j]:
                rows.append(f"{src} -> {dst}: set-based {fast.allowed[i, j]}, "
                            f"per-pair {slow.allowed[i, j]}")
    return "\n".join(rows)


# ----------------------------------------------------------------------------- examples


def small_cluster() -> Cluster:
    cluster = Cluster()
    for ns in ("a", "b"):
        cluster.profiles[f"kns.{ns}"] = Profile(f"kns.{ns}", {}, (Rule("Allow"),), (Rule("Allow"),))
        cluster.profiles[f"ksa.{ns}.default"] = Profile(f"ksa.{ns}.default")
    for number, (ns, app) in enumerate([("a", "web"), ("a", "web"), ("a", "client"),
                                        ("b", "web"), ("b", "client")]):
        ep = endpoint(ns, f"{app}-{number}", f"10.0.0.{number + 1}", {"app": app},
                      ports=(ContainerPort(8080, "TCP", "http"),))
        cluster.endpoints[ep.key] = ep
    # Ingress to web pods in "a": only from clients in "a", on the named port.
    cluster.policies.append(Policy(
        "KubernetesNetworkPolicy", "web", "a", "default", 1000.0,
        f"(app == 'web') && {NS_LABEL} == 'a'", ("ingress",),
        ingress=(Rule("Allow", protocol="TCP", source=EntityRule(
            selector=f"({NS_LABEL} == 'a') && (app == 'client')"),
            destination=EntityRule(ports=(PortSpec(name="http"),))),)))
    return cluster


def test_matrix_example_and_classes():
    cluster = small_cluster()
    result = compute_matrix(cluster, Probe.make("tcp", 8080))
    assert result.pods == ("a/client-2", "a/web-0", "a/web-1", "b/client-4", "b/web-3")
    # a/web-0 and a/web-1 are one class; so are the two clients differing only by namespace?
    # No: the rule's selector reads the namespace, so classes are client-a, web-a, client-b, web-b.
    assert result.classes == 4
    assert result.is_allowed("a/client-2", "a/web-0")
    assert not result.is_allowed("b/client-4", "a/web-0")
    assert not result.is_allowed("a/web-1", "a/web-0")        # same class, different pods
    assert result.is_allowed("a/web-0", "a/web-0")            # a pod to itself
    assert result.is_allowed("a/web-0", "b/web-3")            # b has no policy
    on_80 = compute_matrix(cluster, Probe.make("tcp", 80))
    assert not on_80.is_allowed("a/client-2", "a/web-0")
    assert (compute_matrix_naive(cluster, Probe.make("tcp", 8080)).allowed == result.allowed).all()


def test_entries_match_the_grid():
    result = compute_matrix(small_cluster(), Probe.make("tcp", 8080))
    entries = list(result.entries())
    assert len(entries) == 25
    first = entries[0]
    assert first == {"from": "a/client-2", "to": "a/client-2", "protocol": "TCP", "port": 8080,
                     "allowed": True}
    for entry in entries:
        assert entry["allowed"] == result.is_allowed(entry["from"], entry["to"])


def test_pods_sharing_an_address_follow_evaluate_connection():
    cluster = small_cluster()
    twin = endpoint("b", "twin", "10.0.0.1", {"app": "other"})
    cluster.endpoints[twin.key] = twin
    probe = Probe.make("tcp", 8080)
    fast, slow = compute_matrix(cluster, probe), compute_matrix_naive(cluster, probe)
    assert (fast.allowed == slow.allowed).all()
    assert fast.is_allowed("b/twin", "a/web-0")               # same address: loopback


def test_probe_validation():
    assert Probe.make("TCP", 80).protocol == 6
    assert Probe.make("icmp", 80).port is None
    with pytest.raises(InputError):
        Probe.make("udp", None)
    with pytest.raises(InputError):
        Probe.make("gre-ish", 1)


def test_renderers():
    result = compute_matrix(small_cluster(), Probe.make("tcp", 8080))
    text = render_text(result)
    assert "\u2713" in text and "\u2717" in text
    rows = [line for line in text.splitlines() if "/" in line and "pairs" not in line]
    assert len(rows) == 5 and rows[0].split()[1] == "a/client-2"
    ascii_text = render_text(result, ascii_only=True)
    assert ascii_text.isascii()
    csv_text = render_csv(result)
    assert csv_text.splitlines()[0] == "from,to,protocol,port,allowed"
    assert len(csv_text.splitlines()) == 26


def test_matrix_agrees_with_connection_for_external_free_cluster():
    cluster = small_cluster()
    probe = Probe.make("tcp", 8080)
    result = compute_matrix(cluster, probe)
    src, dst = cluster.endpoints["a/client-2"], cluster.endpoints["a/web-1"]
    assert result.is_allowed(src.key, dst.key) == evaluate_connection(
        cluster, probe.flow(src, dst)).allowed


@pytest.mark.parametrize("cover", ["network-set", "host-endpoint", "rule-cidr"])
def test_address_based_peers_split_otherwise_identical_pods(cover):
    cluster = small_cluster()
    twin = endpoint("a", "client-9", "10.0.0.9", {"app": "client"},
                    ports=(ContainerPort(8080, "TCP", "http"),))
    cluster.endpoints[twin.key] = twin
    if cover == "network-set":
        cluster.network_sets.append(NetworkSet("s", None, (IPv4Network("10.0.0.3/32"),),
                                               {"role": "ext"}))
        source = EntityRule(selector="role == 'ext'")
    elif cover == "host-endpoint":
        cluster.host_endpoints.append(HostEndpoint("h", "node-1", "eth0",
                                                   (IPv4Address("10.0.0.3"),), {"role": "ext"}))
        source = EntityRule(selector="role == 'ext'")
    else:
        source = EntityRule(nets=(IPv4Network("10.0.0.0/30"),))
    cluster.policies.append(Policy("GlobalNetworkPolicy", "g", None, "default", 1.0,
                                   "app == 'web'", ("ingress",),
                                   ingress=(Rule("Allow", source=source),)))
    probe = Probe.make("tcp", 80)
    fast = compute_matrix(cluster, probe)
    assert fast.is_allowed("a/client-2", "a/web-0")
    assert not fast.is_allowed("a/client-9", "a/web-0")
    assert fast.classes == 5
    assert (fast.allowed == compute_matrix_naive(cluster, probe).allowed).all()


def test_unread_network_set_labels_do_not_split_classes():
    cluster = small_cluster()
    twin = endpoint("a", "client-9", "10.0.0.9", {"app": "client"},
                    ports=(ContainerPort(8080, "TCP", "http"),))
    cluster.endpoints[twin.key] = twin
    cluster.network_sets.append(NetworkSet("s", None, (IPv4Network("10.0.0.3/32"),),
                                           {"unread": "x"}))
    assert compute_matrix(cluster, Probe.make("tcp", 80)).classes == 4
