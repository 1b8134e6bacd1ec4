"""k8s and Calico v3 objects -> backend form, checked against the strings libcalico-go builds."""

from __future__ import annotations

from ipaddress import IPv4Network
from pathlib import Path

import pytest

from tracer.errors import InputError
from tracer.model.cluster import PortSpec
from tracer.model.loader import load_cluster
from tracer.model.convert_k8s import simplify_ports

BASE = """
apiVersion: v1
kind: Namespace
metadata: {name: myns, labels: {team: blue}}
---
apiVersion: v1
kind: Node
metadata:
  name: n1
  annotations: {projectcalico.org/IPv4Address: 10.0.0.1/24}
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: robot, namespace: myns, labels: {tier: gold}}
---
apiVersion: v1
kind: Pod
metadata: {name: backend, namespace: myns, labels: {role: backend}}
spec:
  nodeName: n1
  serviceAccountName: robot
  containers:
  - {name: c, image: redis, ports: [{name: redis, containerPort: 6379}, {containerPort: 9}]}
"""

K8S_POLICY = """
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: np, namespace: myns}
spec:
  podSelector:
    matchLabels: {role: backend, app: db}
    matchExpressions:
    - {key: env, operator: NotIn, values: [dev, test]}
    - {key: canary, operator: DoesNotExist}
  policyTypes: [Ingress, Egress]
  ingress:
  - from:
    - podSelector: {matchLabels: {role: frontend}}
    - namespaceSelector: {}
    - namespaceSelector: {matchLabels: {user: bob}}
      podSelector: {matchExpressions: [{key: app, operator: Exists}]}
    - ipBlock: {cidr: 172.17.1.9/16, except: [172.17.1.0/24]}
    ports:
    - {port: 6379}
    - {protocol: UDP, port: 53}
    - {port: 8080, endPort: 8090}
    - {port: 8091}
    - {port: redis}
  egress:
  - {}
"""


def load(tmp_path: Path, *docs: str, version: str | None = None):
    (tmp_path / "m.yaml").write_text("---".join((BASE,) + docs))
    return load_cluster([tmp_path], calico_version=version)


def only_policy(cluster):
    assert len(cluster.policies) == 1
    return cluster.policies[0]


def test_k8s_policy_selector_types_and_name(tmp_path):
    policy = only_policy(load(tmp_path, K8S_POLICY))
    assert policy.kind == "KubernetesNetworkPolicy"
    assert (policy.name, policy.namespace, policy.tier, policy.order) == \
        ("np", "myns", "default", 1000.0)
    assert policy.selector == (
        "(projectcalico.org/orchestrator == 'k8s' && app == 'db' && role == 'backend' && "
        "env not in { 'dev', 'test' } && ! has(canary)) && projectcalico.org/namespace == 'myns'")
    assert policy.types == ("ingress", "egress")


def test_k8s_policy_name_before_3_32(tmp_path):
    assert only_policy(load(tmp_path, K8S_POLICY, version="3.31")).name == "knp.default.np"


def test_k8s_rules_one_per_protocol_and_peer(tmp_path):
    policy = only_policy(load(tmp_path, K8S_POLICY))
    # Protocols sorted (TCP, UDP) x 4 peers.
    assert [r.protocol for r in policy.ingress] == ["TCP"] * 4 + ["UDP"] * 4
    tcp = policy.ingress[0]
    assert tcp.destination.ports == (PortSpec(name="redis"), PortSpec(6379, 6379),
                                     PortSpec(8080, 8091))
    assert policy.ingress[4].destination.ports == (PortSpec(53, 53),)
    selectors = [r.source.selector for r in policy.ingress[:4]]
    assert selectors[0] == ("(projectcalico.org/namespace == 'myns') && "
                            "(projectcalico.org/orchestrator == 'k8s' && role == 'frontend')")
    assert selectors[1] == ("(has(projectcalico.org/namespace)) && "
                            "(projectcalico.org/orchestrator == 'k8s')")
    assert selectors[2] == ("(pcns.user == \"bob\") && "
                            "(projectcalico.org/orchestrator == 'k8s' && has(app))")
    assert selectors[3] is None
    block = policy.ingress[3].source
    assert block.nets == (IPv4Network("172.17.0.0/16"),)
    assert block.not_nets == (IPv4Network("172.17.1.0/24"),)
    assert all(r.action == "Allow" for r in policy.ingress)
    # egress: [{}] is one rule allowing everything.
    assert len(policy.egress) == 1
    assert policy.egress[0].protocol is None and policy.egress[0].destination.selector is None


def test_policy_types_default(tmp_path):
    doc = """
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: e, namespace: myns}
spec:
  podSelector: {}
  egress: [{to: [{podSelector: {}}]}]
"""
    policy = only_policy(load(tmp_path, doc))
    assert policy.types == ("ingress", "egress")
    assert policy.egress[0].destination.selector == (
        "(projectcalico.org/namespace == 'myns') && (projectcalico.org/orchestrator == 'k8s')")


def test_simplify_ports_matches_go():
    ports = [PortSpec(82, 82), PortSpec(name="x"), PortSpec(80, 80), PortSpec(81, 81),
             PortSpec(90, 90)]
    assert simplify_ports(ports) == (PortSpec(name="x"), PortSpec(80, 82), PortSpec(90, 90))
    one = [PortSpec(name="a"), PortSpec(5, 5)]
    assert simplify_ports(one) == tuple(one)


def test_profiles_and_workload_endpoint(tmp_path):
    cluster = load(tmp_path)
    kns = cluster.profiles["kns.myns"]
    assert [r.action for r in kns.ingress] == ["Allow"] and [r.action for r in kns.egress] == \
        ["Allow"]
    assert kns.labels_to_apply == {"pcns.team": "blue", "pcns.projectcalico.org/name": "myns",
                                   "pcns.kubernetes.io/metadata.name": "myns"}
    ksa = cluster.profiles["ksa.myns.robot"]
    assert ksa.ingress == () and ksa.egress == ()
    assert ksa.labels_to_apply == {"pcsa.tier": "gold", "pcsa.projectcalico.org/name": "robot"}
    wep = cluster.endpoints["myns/backend"]
    assert wep.profiles == ("kns.myns", "ksa.myns.robot")
    assert wep.interface == "cali" + __import__("hashlib").sha1(b"myns.backend").hexdigest()[:11]
    assert wep.labels["role"] == "backend"
    assert wep.labels["projectcalico.org/namespace"] == "myns"
    assert wep.labels["projectcalico.org/orchestrator"] == "k8s"
    assert wep.labels["projectcalico.org/serviceaccount"] == "robot"
    assert wep.labels["pcns.team"] == "blue" and wep.labels["pcsa.tier"] == "gold"
    # Only named (or hostPort) container ports are kept, as appendEndpointPorts does.
    assert [(p.name, p.port) for p in wep.pod.ports] == [("redis", 6379)]


CALICO_NP = """
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {name: allow-web, namespace: myns}
spec:
  order: 10
  selector: role == 'backend'
  serviceAccountSelector: tier == 'gold'
  ingress:
  - action: Allow
    protocol: TCP
    source:
      selector: app == 'web'
      serviceAccounts: {names: [a, b]}
    destination: {ports: [80, "8000:8080", http]}
  - action: Deny
    source: {namespaceSelector: global(), notSelector: x == 'y'}
  - action: Log
    source: {nets: [10.1.2.3/8]}
"""


def test_calico_network_policy_backend_form(tmp_path):
    policy = only_policy(load(tmp_path, CALICO_NP + """
---
apiVersion: v1
kind: Pod
metadata: {name: web, namespace: myns}
spec: {nodeName: n1, containers: [{name: c, image: x, ports: [{name: http, containerPort: 80}]}]}
"""))
    assert (policy.kind, policy.name, policy.tier, policy.order) == \
        ("NetworkPolicy", "allow-web", "default", 10.0)
    assert policy.selector == ("((role == 'backend') && projectcalico.org/namespace == 'myns') "
                               "&& pcsa.tier == \"gold\"")
    assert policy.types == ("ingress",)
    first, second, third = policy.ingress
    assert first.source.selector == (
        "(projectcalico.org/namespace == 'myns') && ((projectcalico.org/serviceaccount in "
        "{\"a\", \"b\"}) && (app == 'web'))")
    assert first.destination.ports == (PortSpec(80, 80), PortSpec(8000, 8080),
                                       PortSpec(name="http"))
    assert second.action == "Deny"
    assert second.source.selector == "!has(projectcalico.org/namespace)"
    assert second.source.not_selector == "x == 'y'"
    assert third.source.nets == (IPv4Network("10.0.0.0/8"),)
    assert third.source.selector is None


def test_global_policy_namespace_selector_and_tiers(tmp_path):
    docs = """
apiVersion: projectcalico.org/v3
kind: Tier
metadata: {name: security}
spec: {order: 100}
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: security.gnp}
spec:
  tier: security
  selector: app == 'x'
  namespaceSelector: all()
  types: [Ingress, Egress]
  egress: [{action: Pass}]
  doNotTrack: true
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: base}
spec:
  tier: kube-baseline
  egress: [{action: Allow}]
"""
    cluster = load(tmp_path, docs)
    gnp, base = cluster.policies
    assert gnp.selector == "(app == 'x') && has(projectcalico.org/namespace)"
    assert gnp.name == "security.gnp" and gnp.do_not_track and gnp.namespace is None
    assert gnp.egress[0].action == "Pass"
    assert base.name == "base"
    assert cluster.tiers["security"].order == 100.0
    assert cluster.tiers["kube-baseline"].default_action == "Pass"
    assert base.types == ("egress",)


def test_tier_name_prefix_required_before_3_32(tmp_path):
    docs = """
apiVersion: projectcalico.org/v3
kind: Tier
metadata: {name: security}
spec: {order: 100}
---
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {name: plain, namespace: myns}
spec: {tier: security, selector: all()}
"""
    assert only_policy(load(tmp_path, docs)).name == "plain"
    with pytest.raises(InputError, match="security"):
        load(tmp_path, docs, version="3.31")
    default_tier = docs.replace("tier: security, ", "")
    assert only_policy(load(tmp_path, default_tier, version="v3.30.2")).name == "default.plain"


def test_staged_policies_and_network_sets(tmp_path):
    docs = """
apiVersion: projectcalico.org/v3
kind: StagedKubernetesNetworkPolicy
metadata: {name: skn, namespace: myns}
spec: {podSelector: {}, policyTypes: [Ingress]}
---
apiVersion: projectcalico.org/v3
kind: StagedGlobalNetworkPolicy
metadata: {name: gone}
spec: {stagedAction: Delete, selector: all()}
---
apiVersion: projectcalico.org/v3
kind: NetworkSet
metadata: {name: ext, namespace: myns, labels: {role: ext}}
spec: {nets: [198.51.100.0/24, "2001:db8::/32"]}
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkSet
metadata: {name: g}
spec: {nets: [203.0.113.7]}
---
apiVersion: projectcalico.org/v3
kind: HostEndpoint
metadata: {name: n1-eth0, labels: {host: "yes"}}
spec:
  node: n1
  interfaceName: eth0
  expectedIPs: [10.0.0.1]
  profiles: [projectcalico-default-allow]
---
apiVersion: projectcalico.org/v3
kind: Profile
metadata: {name: projectcalico-default-allow}
spec: {ingress: [{action: Allow}], egress: [{action: Allow}]}
"""
    cluster = load(tmp_path, docs)
    policy = only_policy(cluster)
    assert policy.kind == "StagedKubernetesNetworkPolicy" and policy.staged
    netset, gset = cluster.network_sets
    assert netset.nets == (IPv4Network("198.51.100.0/24"),)
    assert netset.labels["projectcalico.org/namespace"] == "myns"
    assert netset.labels["pcns.team"] == "blue"
    assert gset.namespace is None and gset.nets == (IPv4Network("203.0.113.7/32"),)
    hep = cluster.host_endpoints[0]
    assert hep.node == "n1" and hep.profiles == ("projectcalico-default-allow",)
    assert cluster.profiles["projectcalico-default-allow"].ingress[0].action == "Allow"
