"""Hypothesis strategies: small random clusters (as manifest dicts) and probes through them.

A generated cluster has one or two nodes (two nodes share a VXLAN pool so cross-node traffic
can be realised in the kernel lab), one or two namespaces, three to six pods and one to four
policies mixing Kubernetes NetworkPolicy with Calico NetworkPolicy / GlobalNetworkPolicy,
sometimes in an extra tier with a Pass policy. Labels, ports and CIDRs come from small
vocabularies so selectors, named ports and nets actually match the pods and probes.

Every shape here is one the real API server and calicoctl accept: ports only with TCP/UDP,
ipBlock ``except`` inside its ``cidr``, ``endPort`` only with a numeric port, policies in a
non-default tier named ``<tier>.<name>``. Source ports are never matched: the probe's source
port is chosen by the kernel, not by the simulator.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from hypothesis import strategies as st

from tracer.judge.verify import Case

# ---------------------------------------------------------------------------- vocabularies

POD_LABELS = {"app": ("web", "db", "api"), "role": ("frontend", "backend"),
              "tier": ("gold", "silver")}
NAMESPACE_NAMES = ("alpha", "beta")
NAMESPACE_LABELS = {"env": ("prod", "dev"), "team": ("red", "blue")}
NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"

# (name, number, protocol) a container may expose; "http" differs between pods on purpose.
NAMED_PORTS = (("http", 80, "TCP"), ("http", 8080, "TCP"), ("https", 443, "TCP"),
               ("redis", 6379, "TCP"), ("dns", 53, "UDP"))
PROBE_PORTS = (80, 443, 6379, 8080, 53)
PORT_RANGES = ((79, 81), (440, 450), (8000, 8100), (1, 1024), (6000, 7000))
PROBE_PROTOCOLS = ("tcp", "udp", "icmp")

NODE_ADDRESSES = ("10.0.0.1/24", "10.0.0.2/24")
DEFAULT_POOL = "192.168.0"          # the loader's built-in IPIP pool, single-node clusters
VXLAN_POOL = "10.244.0"             # the VXLAN pool of two-node clusters


def pool_nets(prefix: str) -> tuple[str, ...]:
    """CIDRs that cut through the pods' addresses: node-1's block is .0/26, node-2's .64/26."""
    return (f"{prefix[:-2]}.0.0/16", f"{prefix}.0/26", f"{prefix}.64/26", f"{prefix}.1/32",
            f"{prefix}.2/32", f"{prefix}.65/32", "0.0.0.0/0", "10.0.0.0/24", "172.16.0.0/12")


def except_candidates(cidr: str, prefix: str) -> tuple[str, ...]:
    """Holes that lie inside ``cidr`` (the API server rejects others)."""
    inside = {f"{prefix[:-2]}.0.0/16": (f"{prefix}.0/26", f"{prefix}.2/32", f"{prefix}.64/26"),
              "0.0.0.0/0": (f"{prefix[:-2]}.0.0/16", f"{prefix}.1/32", "10.0.0.0/24"),
              f"{prefix}.0/26": (f"{prefix}.1/32", f"{prefix}.2/32", f"{prefix}.3/32")}
    return inside.get(cidr, ())


# ---------------------------------------------------------------------------- the result


@dataclass(frozen=True)
class GeneratedCluster:
    """Manifests of one random cluster and the probes to send through it."""

    documents: tuple[dict, ...]
    cases: tuple[Case, ...]

    def write(self, directory: Path) -> Path:
        """The manifests as one multi-document YAML file in ``directory``."""
        path = directory / "cluster.yaml"
        path.write_text(yaml.safe_dump_all(list(self.documents), sort_keys=False))
        return path


# ---------------------------------------------------------------------------- small pieces


def sometimes(draw, one_in: int) -> bool:
    """True with odds 1 in ``one_in``; False in the simplest example (hypothesis shrinks to 0)."""
    return draw(st.integers(0, one_in - 1)) == one_in - 1


def label_maps(vocabulary: dict[str, tuple[str, ...]], min_size: int = 0):
    keys = sorted(vocabulary)
    return st.lists(st.sampled_from(keys), unique=True, min_size=min_size,
                    max_size=len(keys)).flatmap(
        lambda chosen: st.fixed_dictionaries(
            {key: st.sampled_from(vocabulary[key]) for key in chosen}))


def values_of(vocabulary: dict[str, tuple[str, ...]], key: str):
    return st.lists(st.sampled_from(vocabulary[key]), min_size=1, max_size=2, unique=True)


@st.composite
def k8s_label_selector(draw, vocabulary: dict[str, tuple[str, ...]]) -> dict:
    """A LabelSelector: matchLabels and/or matchExpressions (may be empty = everything)."""
    selector: dict[str, Any] = {}
    labels = draw(label_maps(vocabulary))
    if labels and draw(st.booleans()):
        selector["matchLabels"] = labels
    expressions = []
    for _ in range(draw(st.integers(0, 2))):
        key = draw(st.sampled_from(sorted(vocabulary)))
        operator = draw(st.sampled_from(("In", "NotIn", "Exists", "DoesNotExist")))
        expression = {"key": key, "operator": operator}
        if operator in ("In", "NotIn"):
            expression["values"] = draw(values_of(vocabulary, key))
        expressions.append(expression)
    if expressions:
        selector["matchExpressions"] = expressions
    return selector


def _quoted(values: list[str]) -> str:
    return ", ".join(f"'{v}'" for v in values)


@st.composite
def calico_term(draw, vocabulary: dict[str, tuple[str, ...]]) -> str:
    key = draw(st.sampled_from(sorted(vocabulary)))
    form = draw(st.sampled_from(("==", "!=", "in", "not in", "has", "!has")))
    if form in ("has", "!has"):
        return f"{form}({key})"
    if form in ("in", "not in"):
        return f"{key} {form} {{{_quoted(draw(values_of(vocabulary, key)))}}}"
    return f"{key} {form} '{draw(st.sampled_from(vocabulary[key]))}'"


def equality_term(vocabulary: dict[str, tuple[str, ...]]):
    return st.sampled_from([f"{key} == '{value}'" for key in sorted(vocabulary)
                            for value in vocabulary[key]])


@st.composite
def calico_selector(draw, vocabulary: dict[str, tuple[str, ...]], depth: int = 2) -> str:
    """Felix selector syntax: terms joined by && and ||, parenthesised, or all()."""
    if depth == 0 or not sometimes(draw, 3):
        return draw(st.one_of(calico_term(vocabulary), st.just("all()")))
    left = draw(calico_selector(vocabulary, depth - 1))
    right = draw(calico_selector(vocabulary, depth - 1))
    return f"({left}) {draw(st.sampled_from(('&&', '||')))} ({right})"


def calico_namespace_vocabulary(namespaces: list[str]) -> dict[str, tuple[str, ...]]:
    return {**NAMESPACE_LABELS, "projectcalico.org/name": tuple(namespaces)}


# ---------------------------------------------------------------------------- cluster objects


def node_doc(index: int) -> dict:
    name = f"node-{index + 1}"
    address = NODE_ADDRESSES[index]
    return {"apiVersion": "v1", "kind": "Node",
            "metadata": {"name": name,
                         "labels": {"kubernetes.io/hostname": name, "kubernetes.io/os": "linux"},
                         "annotations": {"projectcalico.org/IPv4Address": address}},
            "status": {"addresses": [{"type": "InternalIP", "address": address.split("/")[0]}]}}


def vxlan_pool_doc() -> dict:
    return {"apiVersion": "projectcalico.org/v3", "kind": "IPPool",
            "metadata": {"name": "vxlan-pool"},
            "spec": {"cidr": f"{VXLAN_POOL[:-2]}.0.0/16", "blockSize": 26, "ipipMode": "Never",
                     "vxlanMode": "Always", "natOutgoing": True, "nodeSelector": "all()"}}


@st.composite
def namespace_doc(draw, name: str) -> dict:
    labels = draw(label_maps(NAMESPACE_LABELS))
    metadata: dict[str, Any] = {"name": name}
    if labels:
        metadata["labels"] = labels
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": metadata}


@st.composite
def pod_doc(draw, name: str, namespaces: list[str], nodes: int) -> dict:
    container: dict[str, Any] = {"name": "main", "image": "alpine:3.20"}
    named = draw(st.lists(st.sampled_from(NAMED_PORTS), max_size=2,
                          unique_by=lambda p: p[0]))
    if named:
        container["ports"] = [{"name": n, "containerPort": number, "protocol": protocol}
                              for n, number, protocol in named]
    labels = draw(label_maps(POD_LABELS))
    metadata: dict[str, Any] = {"name": name, "namespace": draw(st.sampled_from(namespaces))}
    if labels:
        metadata["labels"] = labels
    return {"apiVersion": "v1", "kind": "Pod", "metadata": metadata,
            "spec": {"nodeName": draw(st.sampled_from([f"node-{n}" for n in range(1, nodes + 1)])),
                     "containers": [container]}}


# ---------------------------------------------------------------------------- k8s policy


def policy_pod_selector():
    """Mostly one label, so a policy isolates some pods and leaves others open."""
    one_label = label_maps(POD_LABELS, min_size=1).map(
        lambda labels: {"matchLabels": dict(list(labels.items())[:1])})
    return st.one_of(one_label, one_label, k8s_label_selector(POD_LABELS))


@st.composite
def k8s_port(draw, names: tuple[str, ...]) -> dict:
    port: dict[str, Any] = {}
    if draw(st.booleans()):
        port["protocol"] = draw(st.sampled_from(("TCP", "UDP")))
    shapes = ("range", "number", "number", "none") + (("named",) if names else ())
    shape = draw(st.sampled_from(shapes))
    if shape == "number":
        port["port"] = draw(st.sampled_from(PROBE_PORTS))
    elif shape == "range":
        first, last = draw(st.sampled_from(PORT_RANGES))
        port["port"], port["endPort"] = first, last
    elif shape == "named":
        port["port"] = draw(st.sampled_from(names))
    return port


@st.composite
def k8s_peer(draw, prefix: str) -> dict:
    shape = draw(st.sampled_from(("ipBlock", "pod", "namespace", "both")))
    if shape == "ipBlock":
        cidr = draw(st.sampled_from(pool_nets(prefix)))
        block: dict[str, Any] = {"cidr": cidr}
        holes = except_candidates(cidr, prefix)
        if holes and not sometimes(draw, 3):
            block["except"] = draw(st.lists(st.sampled_from(holes), min_size=1, max_size=2,
                                            unique=True))
        return {"ipBlock": block}
    peer: dict[str, Any] = {}
    if shape in ("pod", "both"):
        peer["podSelector"] = draw(k8s_label_selector(POD_LABELS))
    if shape in ("namespace", "both"):
        vocabulary = {**NAMESPACE_LABELS, NAMESPACE_NAME_LABEL: NAMESPACE_NAMES}
        peer["namespaceSelector"] = draw(k8s_label_selector(vocabulary))
    return peer


@st.composite
def k8s_rule(draw, direction: str, prefix: str, names: tuple[str, ...]) -> dict:
    rule: dict[str, Any] = {}
    peers = draw(st.lists(k8s_peer(prefix), max_size=3))
    if peers:
        rule["from" if direction == "ingress" else "to"] = peers
    ports = draw(st.lists(k8s_port(names), max_size=2))
    if ports:
        rule["ports"] = ports
    return rule


@st.composite
def k8s_policy(draw, name: str, namespaces: list[str], prefix: str,
               names: tuple[str, ...]) -> dict:
    types = draw(st.sampled_from((("Ingress",), ("Ingress",), ("Egress",), ("Ingress", "Egress"),
                                  ())))
    spec: dict[str, Any] = {"podSelector": draw(policy_pod_selector())}
    directions = [t.lower() for t in types] or \
        draw(st.sampled_from((["ingress"], ["egress"], ["ingress", "egress"])))
    for direction in directions:
        rules = draw(st.lists(k8s_rule(direction, prefix, names), max_size=2))
        if rules or types:
            spec[direction] = rules
    if types:
        spec["policyTypes"] = list(types)
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": name, "namespace": draw(st.sampled_from(namespaces))},
            "spec": spec}


# ---------------------------------------------------------------------------- Calico policy


@st.composite
def calico_entity(draw, prefix: str, namespaces: list[str]) -> dict:
    entity: dict[str, Any] = {}
    if sometimes(draw, 3):
        entity["selector"] = draw(calico_selector(POD_LABELS, depth=1))
    if sometimes(draw, 5):
        entity["notSelector"] = draw(calico_term(POD_LABELS))
    if sometimes(draw, 4):
        entity["namespaceSelector"] = draw(
            calico_selector(calico_namespace_vocabulary(namespaces), depth=1))
    for key in ("nets", "notNets"):
        if sometimes(draw, 5):
            entity[key] = draw(st.lists(st.sampled_from(pool_nets(prefix)), min_size=1,
                                        max_size=2, unique=True))
    return entity


@st.composite
def calico_ports(draw, names: tuple[str, ...]) -> list:
    ports: list[Any] = []
    for _ in range(draw(st.integers(1, 2))):
        shape = draw(st.sampled_from(("number", "range") + (("named",) if names else ())))
        if shape == "number":
            ports.append(draw(st.sampled_from(PROBE_PORTS)))
        elif shape == "range":
            first, last = draw(st.sampled_from(PORT_RANGES))
            ports.append(f"{first}:{last}")
        else:
            ports.append(draw(st.sampled_from(names)))
    return ports


@st.composite
def calico_rule(draw, prefix: str, namespaces: list[str], actions: tuple[str, ...],
                names: tuple[str, ...]) -> dict:
    rule: dict[str, Any] = {"action": draw(st.sampled_from(actions))}
    protocol = draw(st.sampled_from((None, "TCP", "UDP", "ICMP")))
    if protocol:
        rule["protocol"] = protocol
    if protocol == "ICMP" and draw(st.booleans()):
        rule["icmp"] = {"type": draw(st.sampled_from((0, 8)))}
    source = draw(calico_entity(prefix, namespaces))
    destination = draw(calico_entity(prefix, namespaces))
    if protocol in ("TCP", "UDP") and draw(st.booleans()):
        key = draw(st.sampled_from(("ports", "ports", "notPorts")))
        destination[key] = draw(calico_ports(names))
    if source:
        rule["source"] = source
    if destination:
        rule["destination"] = destination
    return rule


@st.composite
def calico_policy(draw, name: str, namespaces: list[str], prefix: str, names: tuple[str, ...],
                  *, tier: str | None, must_pass: bool = False) -> dict:
    is_global = draw(st.booleans())
    actions = ("Allow", "Allow", "Deny", "Pass", "Log") if not must_pass else ("Pass",)
    spec: dict[str, Any] = {}
    if tier:
        spec["tier"] = tier
    order = draw(st.sampled_from((None, 10, 100, 500.5, 1000)))
    if order is not None:
        spec["order"] = order
    if draw(st.integers(0, 3)):
        spec["selector"] = draw(st.one_of(equality_term(POD_LABELS), equality_term(POD_LABELS),
                                          calico_selector(POD_LABELS)))
    if is_global and sometimes(draw, 4):
        spec["namespaceSelector"] = draw(
            calico_selector(calico_namespace_vocabulary(namespaces), depth=1))
    types = draw(st.sampled_from((None, ["Ingress"], ["Egress"], ["Ingress", "Egress"])))
    for direction in ("ingress", "egress"):
        if types is None or direction.capitalize() in types:
            rules = draw(st.lists(calico_rule(prefix, namespaces, actions, names),
                                  min_size=1 if must_pass else 0, max_size=3))
            if rules:
                spec[direction] = rules
    if types is not None:
        spec["types"] = types
    metadata: dict[str, Any] = {"name": f"{tier}.{name}" if tier else name}
    if not is_global:
        metadata["namespace"] = draw(st.sampled_from(namespaces))
    kind = "GlobalNetworkPolicy" if is_global else "NetworkPolicy"
    return {"apiVersion": "projectcalico.org/v3", "kind": kind, "metadata": metadata,
            "spec": spec}


def tier_doc(name: str, default_action: str) -> dict:
    return {"apiVersion": "projectcalico.org/v3", "kind": "Tier", "metadata": {"name": name},
            "spec": {"order": 100, "defaultAction": default_action}}


# ---------------------------------------------------------------------------- probes


@st.composite
def probe_cases(draw, pods: list[str], min_size: int = 12, max_size: int = 18) -> tuple:
    pairs = [(a, b) for a in pods for b in pods if a != b]

    def case(pair_protocol_port) -> Case:
        (src, dst), protocol, port = pair_protocol_port
        return Case(src, dst, protocol, None if protocol == "icmp" else port)

    one = st.tuples(st.sampled_from(pairs), st.sampled_from(PROBE_PROTOCOLS),
                    st.sampled_from(PROBE_PORTS)).map(case)
    return tuple(draw(st.lists(one, min_size=min_size, max_size=max_size, unique=True)))


# ---------------------------------------------------------------------------- everything


@st.composite
def generated_clusters(draw) -> GeneratedCluster:
    """A random cluster's manifests and 12-18 probes between its pods."""
    nodes = draw(st.sampled_from((2, 1)))
    prefix = VXLAN_POOL if nodes == 2 else DEFAULT_POOL
    namespaces = list(NAMESPACE_NAMES[:draw(st.integers(1, 2))])
    docs: list[dict] = [node_doc(i) for i in range(nodes)]
    if nodes == 2:
        docs.append(vxlan_pool_doc())
    docs += [draw(namespace_doc(ns)) for ns in namespaces]
    pods = [draw(pod_doc(f"pod-{i}", namespaces, nodes))
            for i in range(draw(st.integers(3, 6)))]
    docs += pods
    # The loader rejects a policy naming a port no pod declares (a likely typo).
    names = tuple(sorted({p["name"] for pod in pods for c in pod["spec"]["containers"]
                          for p in c.get("ports", ())}))
    for index in range(draw(st.sampled_from((1, 1, 2, 2, 3, 4)))):
        name = f"policy-{index}"
        if draw(st.booleans()):
            docs.append(draw(k8s_policy(name, namespaces, prefix, names)))
        else:
            docs.append(draw(calico_policy(name, namespaces, prefix, names, tier=None)))
    if sometimes(draw, 2):
        docs.append(tier_doc("security", draw(st.sampled_from(("Deny", "Pass")))))
        docs.append(draw(calico_policy("pass", namespaces, prefix, names, tier="security",
                                       must_pass=True)))
    keys = [f"{p['metadata']['namespace']}/{p['metadata']['name']}" for p in pods]
    return GeneratedCluster(tuple(docs), draw(probe_cases(keys)))


# ---------------------------------------------------------------------------- coverage

FEATURE_MARKERS = {"ipBlock": '"ipBlock"', "except": '"except"', "endPort": '"endPort"',
                   "matchExpressions": '"matchExpressions"', "Allow": '"Allow"',
                   "Deny": '"Deny"', "Pass": '"Pass"', "Log": '"Log"', "nets": '"nets"',
                   "notNets": '"notNets"', "notPorts": '"notPorts"', "||": " || ",
                   "ICMP rule": '"ICMP"'}


def corpus_features(generated: GeneratedCluster) -> dict[str, int]:
    """What one generated cluster exercises: object kinds, and clusters using each feature."""
    counts: dict[str, int] = {}
    for doc in generated.documents:
        group = "calico " if doc["apiVersion"].startswith("projectcalico") else ""
        key = f"{group}{doc['kind']}"
        if key in ("NetworkPolicy", "calico NetworkPolicy", "calico GlobalNetworkPolicy",
                   "calico Tier"):
            counts[key] = counts.get(key, 0) + 1
    text = json.dumps(generated.documents)
    for feature, marker in FEATURE_MARKERS.items():
        if marker in text:
            counts[f"with {feature}"] = 1
    return counts
