"""Rulesets and packets to measure with: Calico-shaped clusters and flat ClassBench-style ACLs.

A Calico-shaped cluster is written as manifests and goes through the real loader and felix
renderer: one node, two namespaces, a handful of pods, and ``policies`` GlobalNetworkPolicies
in three tiers selecting the destination pod, each with rules on nets, port ranges, named ports
and label selectors, actions Allow / Deny / Pass; the probe (a new TCP connection to a port
no rule names) is denied at the end, so it walks every policy of every tier — the worst case
the issue measured (1,000 policies: ~2,000 rules visited).

A flat ACL is one FORWARD chain of ``rules`` random 5-tuple rules (prefixes of /8 to /32,
port ranges, protocols; ACCEPT or DROP), the shape ClassBench generates, with packets drawn
near the rules so that some match early, some late and some never.
"""

from __future__ import annotations

import random
import tempfile
from dataclasses import dataclass
from ipaddress import IPv4Address
from pathlib import Path

import numpy as np
import yaml

from tracer.dataplane.batch import PACKET_DTYPE
from tracer.dataplane.interfaces import IfaceKind, Interface, InterfaceTable
from tracer.dataplane.ir import (AddressMatch, Chain, Cidr, PortMatch, ProtocolMatch, Rule,
                                 Ruleset, Table, Verdict)
from tracer.dataplane.node import NodeDataplane
from tracer.dataplane.routing import RoutingTable
from tracer.model.loader import load_cluster
from tracer.trace.assemble import build_dataplane

TIERS = (("platform", 100, "Pass"), ("security", 200, "Pass"), ("default", None, None))


@dataclass(frozen=True)
class Workload:
    """A node to measure on, the packets to send, and where they enter and leave."""

    node: NodeDataplane
    packets: np.ndarray        # PACKET_DTYPE, iif left for the engine to fill
    iif: str
    oif: str
    hook: str
    rules: int                 # rules in the node's ruleset (every table)


def calico_manifests(policies: int, seed: int = 1) -> list[dict]:
    rng = random.Random(seed)
    docs: list[dict] = [
        {"apiVersion": "v1", "kind": "Node",
         "metadata": {"name": "node-1", "annotations": {
             "projectcalico.org/IPv4Address": "10.0.0.1/24"}},
         "status": {"addresses": [{"type": "InternalIP", "address": "10.0.0.1"}]}}]
    for ns, env in (("shop", "prod"), ("dev", "dev")):
        docs.append({"apiVersion": "v1", "kind": "Namespace",
                     "metadata": {"name": ns, "labels": {"env": env}}})
    pods = (("shop", "client", "web"), ("shop", "server", "db"), ("dev", "tool", "web"),
            ("dev", "batch", "worker"))
    for ns, name, app in pods:
        docs.append({"apiVersion": "v1", "kind": "Pod",
                     "metadata": {"name": name, "namespace": ns,
                                  "labels": {"app": app, "role": name}},
                     "spec": {"nodeName": "node-1", "containers": [{
                         "name": name, "image": "busybox",
                         "ports": [{"name": "http", "containerPort": 8080,
                                    "protocol": "TCP"}]}]}})
    for tier, order, action in TIERS:
        if tier != "default":
            docs.append({"apiVersion": "projectcalico.org/v3", "kind": "Tier",
                         "metadata": {"name": tier},
                         "spec": {"order": order, "defaultAction": action}})
    for number in range(policies):
        tier = TIERS[number % len(TIERS)][0]
        name = f"p{number:05d}" if tier == "default" else f"{tier}.p{number:05d}"
        docs.append({"apiVersion": "projectcalico.org/v3", "kind": "GlobalNetworkPolicy",
                     "metadata": {"name": name},
                     "spec": {"tier": tier, "order": number, "selector": "app == 'db'",
                              "types": ["Ingress"], "ingress": _ingress_rules(rng, number)}})
    return docs


def _ingress_rules(rng: random.Random, number: int) -> list[dict]:
    """Two rules no probe of the benchmark matches, in the shapes policies use."""
    net = f"172.{16 + number % 16}.{number // 16 % 256}.0/24"
    low = 20000 + number % 20000
    shapes = [
        {"action": "Allow", "protocol": "TCP", "source": {"nets": [net]},
         "destination": {"ports": [f"{low}:{low + 10}"]}},
        {"action": "Deny", "protocol": "UDP",
         "source": {"selector": f"role == 'r{number}'"}},
        {"action": "Pass", "protocol": "TCP", "source": {"nets": [net]},
         "destination": {"ports": ["http"]}},
        {"action": "Allow", "source": {"namespaceSelector": f"env == 'e{number}'"}},
    ]
    return rng.sample(shapes, 2)


def calico_workload(policies: int, seed: int = 1, packets: int = 4096) -> Workload:
    with tempfile.TemporaryDirectory(prefix="ctk-bench-") as tmp:
        path = Path(tmp) / "cluster.yaml"
        path.write_text(yaml.safe_dump_all(calico_manifests(policies, seed), sort_keys=False))
        cluster = load_cluster([path])
    dataplane = build_dataplane(cluster, version="3.32")
    node = dataplane.nodes["node-1"]
    client, server = cluster.endpoints["shop/client"], cluster.endpoints["shop/server"]
    rng = np.random.default_rng(seed)
    batch = np.zeros(packets, dtype=PACKET_DTYPE)
    batch["saddr"] = int(client.pod.ip)
    batch["daddr"] = int(server.pod.ip)
    batch["protocol"] = 6
    batch["sport"] = rng.integers(32768, 61000, packets)
    batch["dport"] = rng.integers(1, 1000, packets)         # no rule names these ports
    batch["tcp_flags"] = 0x02
    batch["ttl"], batch["tot_len"] = 64, 60
    return Workload(node, batch, client.interface, server.interface, "FORWARD",
                    ruleset_size(node.ruleset))


def ruleset_size(ruleset: Ruleset) -> int:
    return sum(len(c.rules) for chains in ruleset.tables.values() for c in chains.values())


# ------------------------------------------------------------------ ClassBench-style ACLs


def _random_prefix(rng: random.Random) -> Cidr:
    length = rng.choice((8, 16, 16, 24, 24, 24, 28, 32, 32))
    base = rng.choice((10 << 24, 172 << 24 | 16 << 16, 192 << 24 | 168 << 16))
    value = (base | rng.getrandbits(32 - 8)) & ((0xFFFFFFFF << (32 - length)) & 0xFFFFFFFF)
    return Cidr(value, length)


def acl_rules(rules: int, seed: int = 1) -> list[Rule]:
    rng = random.Random(seed)
    result = []
    for _ in range(rules):
        matches = [ProtocolMatch(rng.choice((6, 6, 17)))]
        if rng.random() < 0.9:
            matches.append(AddressMatch("src", _random_prefix(rng)))
        if rng.random() < 0.9:
            matches.append(AddressMatch("dst", _random_prefix(rng)))
        if rng.random() < 0.3:
            lo = rng.randrange(1024, 65000)
            matches.append(PortMatch("src", ((lo, lo + rng.randrange(0, 500)),)))
        if rng.random() < 0.8:
            port = rng.choice((22, 53, 80, 443, 8080, rng.randrange(1, 65535)))
            span = 0 if rng.random() < 0.7 else rng.randrange(1, 1000)
            matches.append(PortMatch("dst", ((port, min(65535, port + span)),),
                                     multiport=False))
        result.append(Rule(tuple(matches), Verdict(rng.choice(("ACCEPT", "DROP")))))
    return result


def acl_workload(rules: int, seed: int = 1, packets: int = 4096) -> Workload:
    """One FORWARD chain of ``rules`` rules (policy DROP) on a node with two interfaces."""
    acl = acl_rules(rules, seed)
    ruleset = Ruleset({Table.FILTER: {
        "INPUT": Chain("INPUT", (), "ACCEPT"),
        "FORWARD": Chain("FORWARD", tuple(acl), "DROP"),
        "OUTPUT": Chain("OUTPUT", (), "ACCEPT")}})
    interfaces = InterfaceTable((
        Interface("eth0", IfaceKind.UNDERLAY, 1500, IPv4Address("10.255.0.1")),
        Interface("eth1", IfaceKind.UNDERLAY, 1500, IPv4Address("10.255.1.1"))))
    node = NodeDataplane("acl", ruleset, RoutingTable("acl", (), frozenset()), interfaces,
                         IPv4Address("10.255.0.1"))
    return Workload(node, acl_packets(acl, packets, seed), "eth0", "eth1", "FORWARD", rules)


def acl_packets(acl: list[Rule], packets: int, seed: int) -> np.ndarray:
    """Half the packets aimed at a random rule's fields (they match it or an earlier one),
    half random (most match nothing and walk the whole chain)."""
    rng = random.Random(seed + 1)
    batch = np.zeros(packets, dtype=PACKET_DTYPE)
    for row in batch:
        row["protocol"] = rng.choice((6, 17))
        row["saddr"], row["daddr"] = rng.getrandbits(32), rng.getrandbits(32)
        row["sport"], row["dport"] = rng.randrange(1024, 65535), rng.randrange(1, 65535)
        if rng.random() < 0.5:
            for m in rng.choice(acl).matches:
                if isinstance(m, ProtocolMatch):
                    row["protocol"] = m.protocol
                elif isinstance(m, AddressMatch):
                    host = rng.getrandbits(32 - m.cidr.prefix_len) if m.cidr.prefix_len < 32 else 0
                    row["saddr" if m.direction == "src" else "daddr"] = m.cidr.network | host
                elif isinstance(m, PortMatch):
                    lo, hi = m.ranges[0]
                    row["sport" if m.direction == "src" else "dport"] = rng.randint(lo, hi)
    batch["tcp_flags"] = np.where(batch["protocol"] == 6, 0x02, -1)
    batch["ttl"], batch["tot_len"] = 64, 60
    return batch
