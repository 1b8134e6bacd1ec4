"""Every shipped scenario loads, and its expectations refer to pods that exist."""

from __future__ import annotations

from pathlib import Path

import bundled
import pytest

from tracer.model.loader import load_cluster, load_scenario_meta
from tracer.model.names import workload_interface_name

SCENARIOS = bundled.SCENARIOS
REQUIRED = {"backend-from-frontend", "frontend-from-bob", "default-deny-ingress",
            "default-deny-all", "allow-all-one-app", "multinode-ipip", "multinode-vxlan",
            "multinode-wireguard", "calico-tiers"} | {
    f"recipe-{n}" for n in ("01-deny-all-to-app", "02-limit-to-app", "02a-allow-all-to-app",
                            "03-deny-all-in-namespace", "04-deny-other-namespaces",
                            "05-allow-all-namespaces", "06-allow-from-namespace",
                            "07-allow-pods-other-namespace", "08-allow-external",
                            "09-allow-only-port", "10-multiple-selectors",
                            "11-deny-egress-from-app", "12-deny-egress-namespace",
                            "14-deny-external-egress")}


def test_all_required_scenarios_ship():
    assert REQUIRED <= {p.name for p in SCENARIOS}


@pytest.mark.parametrize("path", SCENARIOS, ids=lambda p: p.name)
def test_scenario_loads(path):
    cluster = load_cluster([path])
    meta = load_scenario_meta(path)
    assert meta["title"] and meta["description"] and cluster.title == meta["title"]
    assert 2 <= len(cluster.pods) <= 8
    assert not [w for w in cluster.warnings if "not declared" in w]
    for key, pod in cluster.pods.items():
        endpoint = cluster.endpoints[key]
        assert endpoint.interface == workload_interface_name(pod.namespace, pod.name)
        assert any(pod.ip in pool.cidr for pool in cluster.ippools.values()), key
    ips = [p.ip for p in cluster.pods.values()]
    assert len(set(ips)) == len(ips)
    assert meta["expect"]
    for case in meta["expect"]:
        assert case["from"] in cluster.pods and case["to"] in cluster.pods, case
        assert case["protocol"] in ("TCP", "UDP", "SCTP")
        assert 1 <= int(case["port"]) <= 65535
        assert isinstance(case["allowed"], bool) and case["why"]


def test_multinode_encapsulation_addresses():
    ipip = load_cluster([Path(__file__).parent.parent / "scenarios" / "multinode-ipip"])
    assert [str(n.address) for n in ipip.nodes.values()] == ["10.0.0.1/24", "10.0.0.2/24"]
    assert [str(n.ipip_tunnel_address) for n in ipip.nodes.values()] == \
        ["10.244.0.0", "10.244.0.64"]
    vxlan = load_cluster([Path(__file__).parent.parent / "scenarios" / "multinode-vxlan"])
    node1, node2 = vxlan.nodes.values()
    assert node1.vxlan_tunnel_mac == "66:d4:1a:2b:3c:4d"
    assert node2.vxlan_tunnel_mac and node2.vxlan_tunnel_mac.startswith("66:")
    wireguard = load_cluster([Path(__file__).parent.parent / "scenarios" / "multinode-wireguard"])
    assert wireguard.felix.wireguard_enabled
    assert all(n.wireguard_public_key and n.wireguard_interface_address
               for n in wireguard.nodes.values())


def test_tier_scenario_has_pass_deny_and_staged():
    cluster = load_cluster([Path(__file__).parent.parent / "scenarios" / "calico-tiers"])
    actions = {r.action for p in cluster.policies for r in p.ingress}
    assert {"Pass", "Deny", "Allow"} <= actions
    assert any(p.staged for p in cluster.policies)
    assert cluster.tiers["security"].order == 100.0
