"""Reading manifests: files, directories, multi-document YAML, kind: List, JSON, defaults, IPAM."""

from __future__ import annotations

import json
from ipaddress import IPv4Address, IPv4Interface, IPv4Network
from pathlib import Path

import pytest

from tracer.model.cluster import IPPool
from tracer.model.ipam import BlockAllocator, IPAMExhausted
from tracer.model.loader import load_cluster, load_scenario_meta

NODE = """
apiVersion: v1
kind: Node
metadata:
  name: {name}
  labels: {{zone: {zone}}}
  annotations:
    projectcalico.org/IPv4Address: {addr}
"""

POD = """
apiVersion: v1
kind: Pod
metadata: {{name: {name}, namespace: {ns}, labels: {{app: {name}}}}}
spec:
  nodeName: {node}
  containers: [{{name: c, image: nginx, ports: [{{name: http, containerPort: 80}}]}}]
"""


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def two_node_cluster(tmp_path: Path, pool: str = "") -> Path:
    docs = [NODE.format(name="node-b", zone="b", addr="10.0.0.2/24"),
            NODE.format(name="node-a", zone="a", addr="10.0.0.1/24")]
    docs += [POD.format(name=n, ns="shop", node=node) for n, node in
             (("web", "node-a"), ("api", "node-b"), ("db", "node-a"))]
    if pool:
        docs.append(pool)
    write(tmp_path, "cluster.yaml", "---".join(docs))
    return tmp_path


def test_directory_multi_document_and_defaults(tmp_path):
    cluster = load_cluster([two_node_cluster(tmp_path)])
    assert set(cluster.pods) == {"shop/web", "shop/api", "shop/db"}
    # Implicit namespace (warned) with the API server's metadata.name label; default SA.
    assert cluster.namespaces["shop"].labels == {"kubernetes.io/metadata.name": "shop"}
    assert any("namespace 'shop' is not declared" in w for w in cluster.warnings)
    assert "shop/default" in cluster.service_accounts
    # Calico's default pool and default tier.
    pool = cluster.ippools["default-ipv4-ippool"]
    assert (pool.cidr, pool.block_size, pool.ipip_mode, pool.nat_outgoing) == \
        (IPv4Network("192.168.0.0/16"), 26, "Always", True)
    assert cluster.tiers["default"].order == 1_000_000.0
    assert "kube-admin" not in cluster.tiers


def test_ipam_blocks_per_node_tunnel_first(tmp_path):
    cluster = load_cluster([two_node_cluster(tmp_path)])
    # node-a claims 192.168.0.0/26 and its tunl0 gets the block's first address.
    assert cluster.nodes["node-a"].ipip_tunnel_address == IPv4Address("192.168.0.0")
    assert cluster.nodes["node-b"].ipip_tunnel_address == IPv4Address("192.168.0.64")
    # Pods in ns/name order: shop/api (node-b), shop/db (node-a), shop/web (node-a).
    assert cluster.pods["shop/api"].ip == IPv4Address("192.168.0.65")
    assert cluster.pods["shop/db"].ip == IPv4Address("192.168.0.1")
    assert cluster.pods["shop/web"].ip == IPv4Address("192.168.0.2")


def test_ipam_is_deterministic_and_respects_explicit_ips(tmp_path):
    docs = [NODE.format(name="n1", zone="a", addr="10.0.0.1/24"),
            POD.format(name="a", ns="x", node="n1"),
            POD.format(name="b", ns="x", node="n1") + "status: {podIP: 192.168.7.3}\n",
            POD.format(name="c", ns="x", node="n1")]
    write(tmp_path, "c.yaml", "---".join(docs))
    first = load_cluster([tmp_path])
    second = load_cluster([tmp_path])
    assert {k: p.ip for k, p in first.pods.items()} == {k: p.ip for k, p in second.pods.items()}
    # The explicit IP's block becomes n1's: the tunnel and the others fill it around .3.
    assert first.pods["x/b"].ip == IPv4Address("192.168.7.3")
    assert first.nodes["n1"].ipip_tunnel_address == IPv4Address("192.168.7.0")
    assert [first.pods["x/a"].ip, first.pods["x/c"].ip] == \
        [IPv4Address("192.168.7.1"), IPv4Address("192.168.7.2")]


def test_vxlan_pool_node_selector_and_mac(tmp_path):
    pool = """
apiVersion: projectcalico.org/v3
kind: IPPool
metadata: {name: zone-b}
spec: {cidr: 10.50.0.0/16, blockSize: 28, vxlanMode: Always, nodeSelector: "zone == 'b'"}
---
apiVersion: projectcalico.org/v3
kind: IPPool
metadata: {name: zone-a}
spec: {cidr: 10.60.0.0/16, ipipMode: CrossSubnet, nodeSelector: "zone == 'a'"}
"""
    cluster = load_cluster([two_node_cluster(tmp_path, pool)])
    assert cluster.pods["shop/api"].ip in IPv4Network("10.50.0.0/28")
    assert cluster.pods["shop/web"].ip in IPv4Network("10.60.0.0/26")
    node_b = cluster.nodes["node-b"]
    assert node_b.vxlan_tunnel_address == IPv4Address("10.50.0.0")
    assert node_b.ipip_tunnel_address is None
    # felix vtepMACForHost: 0x66 then SHA-1("node-b")[:5].
    import hashlib
    digest = hashlib.sha1(b"node-b").digest()[:5]
    assert node_b.vxlan_tunnel_mac == "66:" + ":".join(f"{b:02x}" for b in digest)
    assert cluster.nodes["node-a"].ipip_tunnel_address == IPv4Address("10.60.0.0")


def test_kind_list_json_and_skipped_kinds(tmp_path):
    items = {"apiVersion": "v1", "kind": "List", "items": [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "a", "labels": {"t": "1"}}},
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cm", "namespace": "a"}},
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cm2", "namespace": "a"}},
        {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "a"},
         "spec": {"nodeName": "n", "hostNetwork": True, "containers": []}},
        {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n"},
         "status": {"addresses": [{"type": "InternalIP", "address": "10.1.1.5"}]}},
    ]}
    write(tmp_path, "dump.json", json.dumps(items))
    cluster = load_cluster([tmp_path / "dump.json"])
    assert cluster.namespaces["a"].labels["t"] == "1"
    skipped = [w for w in cluster.warnings if "ConfigMap" in w]
    assert len(skipped) == 1 and "2 object(s)" in skipped[0]
    # InternalIP fallback with an assumed /24, warned; host-network pods take the node IP.
    assert cluster.nodes["n"].address == IPv4Interface("10.1.1.5/24")
    assert any("assumed /24" in w for w in cluster.warnings)
    assert cluster.pods["a/p"].ip == IPv4Address("10.1.1.5")
    assert cluster.endpoints == {}


def test_calico_node_merges_with_k8s_node(tmp_path):
    write(tmp_path, "n.yaml", NODE.format(name="n1", zone="a", addr="10.0.0.1/24") + """---
apiVersion: projectcalico.org/v3
kind: Node
metadata: {name: n1}
spec:
  bgp: {ipv4Address: 10.0.0.1/24, ipv4IPIPTunnelAddr: 192.168.9.0}
  wireguard: {interfaceIPv4Address: 192.168.9.1}
status: {wireguardPublicKey: abc=}
""")
    cluster = load_cluster([tmp_path])
    node = cluster.nodes["n1"]
    assert node.ipip_tunnel_address == IPv4Address("192.168.9.0")
    assert node.wireguard_interface_address == IPv4Address("192.168.9.1")
    assert node.wireguard_public_key == "abc="
    assert node.labels == {"zone": "a"}


def test_felix_configuration_fields(tmp_path):
    write(tmp_path, "f.yaml", """
apiVersion: crd.projectcalico.org/v1
kind: FelixConfiguration
metadata: {name: default}
spec:
  interfacePrefix: veth
  defaultEndpointToHostAction: ACCEPT
  iptablesFilterDenyAction: Reject
  wireguardEnabled: true
  failsafeInboundHostPorts: [{protocol: tcp, port: 22}]
  bpfLogLevel: ""
""" + "---" + NODE.format(name="n1", zone="a", addr="10.0.0.1/24")
          + "---" + POD.format(name="web", ns="default", node="n1"))
    cluster = load_cluster([tmp_path], calico_version="3.31")
    felix = cluster.felix
    assert (felix.interface_prefix, felix.default_endpoint_to_host_action,
            felix.iptables_filter_deny_action, felix.wireguard_enabled) == \
        ("veth", "Accept", "Reject", True)
    assert felix.failsafe_inbound_host_ports == (("tcp", 22, None),)
    assert felix.calico_version == "3.31"
    assert cluster.endpoints["default/web"].interface.startswith("veth")
    assert any("bpfLogLevel" in w for w in cluster.warnings)


def test_scenario_meta_is_not_a_manifest(tmp_path):
    two_node_cluster(tmp_path)
    write(tmp_path, "scenario.yaml", "title: T\ndescription: D\nexpect: []\n")
    cluster = load_cluster([tmp_path])
    assert cluster.title == "T"
    assert load_scenario_meta(tmp_path)["description"] == "D"
    assert load_scenario_meta(tmp_path / "nothing-here") == {}


def test_same_file_twice_is_read_once(tmp_path):
    path = two_node_cluster(tmp_path) / "cluster.yaml"
    cluster = load_cluster([path, tmp_path])
    assert len(cluster.pods) == 3


def test_block_allocator_borrows_when_pool_is_full():
    pool = IPPool("tiny", IPv4Network("10.9.0.0/30"), block_size=31)
    alloc = BlockAllocator([pool], lambda p, n: True)
    got = [alloc.assign(n) for n in ("a", "a", "a", "b")]
    assert got == [IPv4Address(f"10.9.0.{i}") for i in range(4)]
    assert alloc.affinities("a") == [IPv4Network("10.9.0.0/31"), IPv4Network("10.9.0.2/31")]
    with pytest.raises(IPAMExhausted):
        alloc.assign("b")
