"""Per-node FelixConfiguration (``node.<name>``) over ``default``, field by field, as felix
merges its DatastorePerHost source over DatastoreGlobal (config/config_params.go)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from click.testing import CliRunner

from tracer.cli import cli
from tracer.dataplane.iptables_save import format_ruleset
from tracer.model.loader import load_cluster
from tracer.policy.felix import render_node

SCENARIO = Path(__file__).resolve().parent.parent / "scenarios" / "multinode-vxlan"

DEFAULT = """
apiVersion: projectcalico.org/v3
kind: FelixConfiguration
metadata: {name: default}
spec:
  logPrefix: cluster-wide
  iptablesFilterDenyAction: Reject
"""

NODE_2 = """
apiVersion: projectcalico.org/v3
kind: FelixConfiguration
metadata: {name: node.node-2}
spec:
  defaultEndpointToHostAction: Accept
  failsafeInboundHostPorts: [{protocol: tcp, port: 2222}]
  failsafeOutboundHostPorts: [{protocol: udp, port: 5353}]
  vxlanPort: 4790
  chainInsertMode: Append
"""

# What felix runs on node-2: the node's fields over default's (the others from default).
MERGED_DEFAULT = """
apiVersion: projectcalico.org/v3
kind: FelixConfiguration
metadata: {name: default}
spec:
  logPrefix: cluster-wide
  iptablesFilterDenyAction: Reject
  defaultEndpointToHostAction: Accept
  failsafeInboundHostPorts: [{protocol: tcp, port: 2222}]
  failsafeOutboundHostPorts: [{protocol: udp, port: 5353}]
  vxlanPort: 4790
  chainInsertMode: Append
"""


def scenario(tmp_path: Path, *felix_docs: str) -> Path:
    root = tmp_path / "cluster"
    shutil.copytree(SCENARIO, root)
    (root / "scenario.yaml").unlink()
    if felix_docs:
        (root / "felix.yaml").write_text("---".join(felix_docs))
    return root


def rendered(root: Path, node: str) -> str:
    return format_ruleset(render_node(load_cluster([root]), node, version="3.32"))


def test_node_config_overrides_default_on_its_node_only(tmp_path):
    per_node = scenario(tmp_path / "a", DEFAULT, NODE_2)
    merged = scenario(tmp_path / "b", MERGED_DEFAULT)
    default_only = scenario(tmp_path / "c", DEFAULT)

    node2 = rendered(per_node, "node-2")
    # node-2 renders exactly as if its effective config were the cluster's default ...
    assert node2 == rendered(merged, "node-2")
    # ... node-1 exactly as without the per-node object.
    assert rendered(per_node, "node-1") == rendered(default_only, "node-1")
    assert node2 != rendered(default_only, "node-2")

    # The fields the node object sets, and default's Reject where it sets nothing.
    assert '"Configured DefaultEndpointToHostAction" -j ACCEPT' in node2
    assert "--dport 4790" in node2 and "--dport 4789" not in node2
    assert "-j REJECT" in node2
    node1 = rendered(per_node, "node-1")
    assert '"Configured DefaultEndpointToHostAction" -j DROP' in node1
    assert "--dport 4789" in node1


def test_effective_config_is_merged_field_by_field(tmp_path):
    cluster = load_cluster([scenario(tmp_path, DEFAULT, NODE_2)])
    one, two = cluster.felix_for("node-1"), cluster.felix_for("node-2")
    assert one is cluster.felix
    assert (two.vxlan_port, two.chain_insert_mode, two.default_endpoint_to_host_action) == \
        (4790, "Append", "Accept")
    assert two.failsafe_inbound_host_ports == (("tcp", 2222, None),)
    # Not set on the node: default's value, and default's own defaults beyond it.
    assert (two.log_prefix, two.iptables_filter_deny_action) == ("cluster-wide", "Reject")
    assert two.vxlan_vni == one.vxlan_vni == 4096
    assert two.failsafe_outbound_host_ports == (("udp", 5353, None),)
    assert one.failsafe_inbound_host_ports[0] == ("tcp", 22, None)
    assert cluster.felix_for("node-2") is two            # one object per node


def test_chain_insert_mode_append_on_one_node(tmp_path):
    """With kube-proxy's chains beside felix's: Insert puts felix's hook before KUBE-*,
    Append after them, each node as its own FelixConfiguration says."""
    root = tmp_path / "svc"
    shutil.copytree(SCENARIO.parent / "service-clusterip", root)
    (root / "felix.yaml").write_text("""
apiVersion: projectcalico.org/v3
kind: FelixConfiguration
metadata: {name: node.node-2}
spec: {chainInsertMode: Append}
""")

    def filter_input(node: str) -> list[str]:
        result = CliRunner().invoke(cli, ["render", "-f", str(root), "--node", node])
        assert result.exit_code == 0, result.output
        table = result.stdout.split("*filter", 1)[1].split("COMMIT", 1)[0]
        return [line.split(" -j ")[-1] for line in table.splitlines()
                if line.startswith("-A INPUT")]
    one, two = filter_input("node-1"), filter_input("node-2")
    assert one[0] == "cali-INPUT" and len(one) > 1
    assert two[-1] == "cali-INPUT" and sorted(one) == sorted(two)


def packet(root: Path, source: str, host: str, port: int = 10250) -> dict:
    result = CliRunner().invoke(cli, ["packet", "--no-cache", "-f", str(root), "--from", source,
                                      "--to", host, "--port", str(port), "--output", "json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_pod_to_own_host_verdict_follows_its_node_config(tmp_path):
    plain = scenario(tmp_path / "plain")
    per_node = scenario(tmp_path / "per-node", NODE_2)
    # backend and batch run on node-2 (10.0.0.2), frontend on node-1 (10.0.0.1).
    assert packet(plain, "shop/backend-5f8c2", "10.0.0.2")["verdict"] == "dropped"
    after = packet(per_node, "shop/backend-5f8c2", "10.0.0.2")
    assert after["verdict"] != "dropped", after["why"]
    # node-1 still drops its pods' traffic to its host.
    assert packet(per_node, "shop/frontend-7d4b9", "10.0.0.1")["verdict"] == "dropped"


def test_vxlan_port_differing_per_node_reaches_the_wire(tmp_path):
    """Each node's vxlan.calico sends to its own configured port (IFLA_VXLAN_PORT) and listens
    on it: node-2 frames to 4790, which node-1's device (4789) does not take, so the frame
    ends in node-1's host stack and the inner packet is lost, as in the kernel
    (tests/test_felix_per_node_kernel.py)."""
    root = scenario(tmp_path, NODE_2)

    def trace(source: str, destination: str, port: int) -> dict:
        result = CliRunner().invoke(cli, ["packet", "--no-cache", "-f", str(root), "--from",
                                          source, "--to", destination, "--port", str(port),
                                          "--output", "json"])
        assert result.exit_code == 0, result.output
        return json.loads(result.stdout)
    there = trace("shop/backend-5f8c2", "shop/frontend-7d4b9", 80)
    assert [hop["outer"]["dport"] for hop in there["hops"] if hop.get("outer")] == [4790]
    assert (there["verdict"], there["reason"]) == ("dropped", "no-tunnel-device")
    assert "node-1" in there["why"]
    # Back from node-1 (default port): framed to 4789, which node-2 no longer takes either.
    back = trace("shop/frontend-7d4b9", "shop/backend-5f8c2", 6379)
    assert [hop["outer"]["dport"] for hop in back["hops"] if hop.get("outer")] == [4789]
    assert (back["verdict"], back["reason"]) == ("dropped", "no-tunnel-device")


def test_per_node_config_naming_an_unknown_node_warns(tmp_path):
    stray = NODE_2.replace("node.node-2", "node.node-9")
    cluster = load_cluster([scenario(tmp_path, stray)])
    assert any("FelixConfiguration node.node-9" in w and "no node 'node-9'" in w
               for w in cluster.warnings), cluster.warnings
    assert cluster.felix_for("node-2") is cluster.felix


def test_other_felix_configuration_names_are_ignored_with_a_warning(tmp_path):
    other = NODE_2.replace("node.node-2", "staging")
    cluster = load_cluster([scenario(tmp_path, other)])
    assert any("FelixConfiguration staging: ignored (felix v3.32 reads only" in w
               for w in cluster.warnings)
    assert cluster.felix_for("node-2") is cluster.felix


HOST_NODE_1 = """
apiVersion: projectcalico.org/v3
kind: FelixConfiguration
metadata: {name: node.node-1}
spec:
  failsafeInboundHostPorts: [{protocol: tcp, port: 2222}]
"""


def test_failsafe_ports_of_the_node_decide_host_endpoint_traffic(tmp_path):
    """node-1's host endpoint admits only 443; its own failsafe list opens 2222 (and no
    longer 22), before any policy, as cali-failsafe-in on node-1 says."""
    plain = tmp_path / "plain"
    shutil.copytree(SCENARIO.parent / "host-endpoint", plain)
    per_node = tmp_path / "per-node"
    shutil.copytree(plain, per_node)
    (per_node / "felix.yaml").write_text(HOST_NODE_1)
    assert packet(plain, "10.0.0.50", "10.0.0.1", 2222)["verdict"] == "dropped"
    assert packet(plain, "10.0.0.50", "10.0.0.1", 22)["verdict"] != "dropped"
    opened = packet(per_node, "10.0.0.50", "10.0.0.1", 2222)
    assert opened["verdict"] != "dropped", opened["why"]
    assert packet(per_node, "10.0.0.50", "10.0.0.1", 22)["verdict"] == "dropped"
    text = rendered(per_node, "node-1")
    failsafe_in = [line for line in text.split("*filter", 1)[1].splitlines()
                   if line.startswith("-A cali-failsafe-in")]
    assert len(failsafe_in) == 1 and "--dports 2222 -j ACCEPT" in failsafe_in[0]


def scoped(name: str, selector: str, created: str, spec: str) -> str:
    return f"""
apiVersion: projectcalico.org/v3
kind: FelixConfiguration
metadata: {{name: {name}, creationTimestamp: {created}}}
spec:
  nodeSelector: "{selector}"
{spec}"""


def test_selector_scoped_config_v332_between_default_and_node(tmp_path):
    """v3.32 ranks DatastorePerHost > DatastorePerSelector > DatastoreGlobal; of several
    selector-scoped objects matching a node, the oldest wins (calc/config_batcher.go)."""
    docs = [DEFAULT,
            scoped("zone-two", "kubernetes.io/hostname == 'node-2'", "2026-01-01T00:00:00Z",
                   "  vxlanPort: 4791\n  logPrefix: scoped\n"),
            scoped("newer", "has(kubernetes.io/hostname)", '"2026-06-01T00:00:00Z"',
                   "  logPrefix: newer\n"),
            """
apiVersion: projectcalico.org/v3
kind: FelixConfiguration
metadata: {name: node.node-2}
spec: {vxlanPort: 4790}
"""]
    cluster = load_cluster([scenario(tmp_path, *docs)], calico_version="3.32")
    one, two = cluster.felix_for("node-1"), cluster.felix_for("node-2")
    assert (one.log_prefix, one.vxlan_port) == ("newer", 4789)
    assert (two.log_prefix, two.vxlan_port, two.iptables_filter_deny_action) == \
        ("scoped", 4790, "Reject")
    assert any("zone-two, newer all select node node-2" in w and "oldest, zone-two" in w
               for w in cluster.warnings), cluster.warnings


def test_selector_scoped_config_before_v332_is_ignored(tmp_path):
    doc = scoped("zone-two", "all()", "2026-01-01T00:00:00Z", "  vxlanPort: 4791\n")
    cluster = load_cluster([scenario(tmp_path, doc)], calico_version="3.31")
    assert cluster.felix_for("node-2").vxlan_port == 4789
    assert any("FelixConfiguration zone-two: ignored (felix v3.31 reads only 'default' and "
               "'node.<nodename>')" in w for w in cluster.warnings), cluster.warnings


def test_matrix_engines_agree_on_a_per_node_encap_setting(tmp_path):
    """allowVXLANPacketsFromWorkloads on node-2 only: its pods may send UDP to 4789, node-1's
    may not; the policy evaluator (pods grouped by what their node lets through) and the
    rendered dataplane agree pair for pair."""
    root = scenario(tmp_path, """
apiVersion: projectcalico.org/v3
kind: FelixConfiguration
metadata: {name: node.node-2}
spec: {allowVXLANPacketsFromWorkloads: true}
""")
    tables = {}
    for engine in ("policy", "compiled"):
        result = CliRunner().invoke(cli, ["matrix", "--no-cache", "-f", str(root), "--protocol",
                                          "udp", "--port", "4789", "--engine", engine,
                                          "-o", "csv"])
        assert result.exit_code == 0, result.output
        tables[engine] = result.stdout
    assert tables["policy"] == tables["compiled"]
    allowed = {tuple(line.split(",")[:2]): line.endswith("true")
               for line in tables["policy"].splitlines()[1:]}
    assert allowed[("shop/batch-2k9xq", "shop/frontend-7d4b9")]          # node-2 -> node-1
    assert not allowed[("shop/frontend-7d4b9", "shop/batch-2k9xq")]      # node-1 -> node-2


def test_unparseable_node_selector_applies_to_no_node(tmp_path):
    doc = scoped("broken", "kubernetes.io/hostname ==", "2026-01-01T00:00:00Z",
                 "  vxlanPort: 4791\n")
    cluster = load_cluster([scenario(tmp_path, doc)], calico_version="3.32")
    assert all(cluster.felix_for(n).vxlan_port == 4789 for n in cluster.nodes)
    assert any("FelixConfiguration broken: spec.nodeSelector" in w
               and "applies the object to no node" in w for w in cluster.warnings)


def test_wireguard_listening_port_per_node(tmp_path):
    """felix gives every WireGuard peer its own listening port (wireguard.go endpointUDPAddr):
    node-2 on 51821 sends there and listens there; node-1 (51820) takes nothing on 51821."""
    root = tmp_path / "wg"
    shutil.copytree(SCENARIO.parent / "multinode-wireguard", root)
    (root / "scenario.yaml").unlink()
    (root / "felix.yaml").write_text("""
apiVersion: projectcalico.org/v3
kind: FelixConfiguration
metadata: {name: node.node-2}
spec: {wireguardListeningPort: 51821}
""")

    def trace(source: str, destination: str, port: int) -> dict:
        result = CliRunner().invoke(cli, ["packet", "--no-cache", "-f", str(root), "--from",
                                          source, "--to", destination, "--port", str(port),
                                          "--output", "json"])
        assert result.exit_code == 0, result.output
        return json.loads(result.stdout)
    there = trace("shop/backend-5f8c2", "shop/frontend-7d4b9", 80)
    outer = [hop["outer"] for hop in there["hops"] if hop.get("outer")]
    assert [o["dport"] for o in outer][-1] == 51821
    assert (there["verdict"], there["reason"]) == ("dropped", "no-tunnel-device")
    back = trace("shop/frontend-7d4b9", "shop/backend-5f8c2", 6379)
    assert [hop["outer"]["dport"] for hop in back["hops"] if hop.get("outer")][-1] == 51820
    assert back["reason"] == "no-tunnel-device"
    # Same pod pair without the per-node port: delivered.
    (root / "felix.yaml").unlink()
    assert trace("shop/backend-5f8c2", "shop/frontend-7d4b9", 80)["verdict"] == "allowed"


NODE_2_VNI = """
apiVersion: projectcalico.org/v3
kind: FelixConfiguration
metadata: {name: node.node-2}
spec: {vxlanVNI: 5000}
"""


def test_vxlan_vni_differing_per_node_finds_no_device(tmp_path):
    """Same port, another VNI: vxlan_rcv finds no device for the frame's VNI and drops it
    (tests/test_felix_per_node_kernel.py has the kernel agree)."""
    root = scenario(tmp_path, NODE_2_VNI)
    result = CliRunner().invoke(cli, ["packet", "--no-cache", "-f", str(root), "--from",
                                      "shop/frontend-7d4b9", "--to", "shop/backend-5f8c2",
                                      "--port", "6379", "--output", "json"])
    assert result.exit_code == 0, result.output
    lost = json.loads(result.stdout)
    assert (lost["verdict"], lost["reason"]) == ("dropped", "no-tunnel-device")
    assert "VNI 4096" in lost["why"] and "VNI 5000" in lost["why"]
