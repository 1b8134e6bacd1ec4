"""ServiceLoopPrevention: the default BGPConfiguration's advertised service CIDRs become
``cali-cidr-block`` rules (felix rules/nat.go ``BlockedCIDRsToIptablesChains``), so a packet
to an address in them that no Service took is dropped, rejected or (Disabled) let through."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from tracer.cli import cli, main
from tracer.dataplane.iptables_save import format_ruleset, parse_ruleset
from tracer.model.loader import load_cluster
from tracer.policy.felix import render_node

SCENARIO = Path(__file__).resolve().parent.parent / "scenarios" / "service-clusterip"

BGP = """
apiVersion: projectcalico.org/v3
kind: BGPConfiguration
metadata: {name: default}
spec:
  nodeToNodeMeshEnabled: true
  serviceClusterIPs: [{cidr: 10.96.0.0/12}]
  serviceExternalIPs: [{cidr: 203.0.113.7/24}, {cidr: "fd00:10::/64"}]
  serviceLoadBalancerIPs: [{cidr: 198.51.100.0/24}]
"""


def cluster_dir(tmp_path: Path, *docs: str) -> Path:
    root = tmp_path / "cluster"
    shutil.copytree(SCENARIO, root)
    (root / "scenario.yaml").unlink()
    for number, doc in enumerate(docs):
        (root / f"extra-{number}.yaml").write_text(doc)
    return root


def felix(node: str | None, prevention: str) -> str:
    name = f"node.{node}" if node else "default"
    return (f"apiVersion: projectcalico.org/v3\nkind: FelixConfiguration\n"
            f"metadata: {{name: {name}}}\nspec: {{serviceLoopPrevention: {prevention}}}\n")


def cidr_block(root: Path, node: str = "node-1") -> list[str]:
    cluster = load_cluster([str(root)])
    text = format_ruleset(render_node(cluster, node))
    return [line for line in text.splitlines() if line.startswith("-A cali-cidr-block")]


def test_advertised_cidrs_are_dropped_in_felix_order(tmp_path):
    rules = cidr_block(cluster_dir(tmp_path, BGP))
    # sorted as text, the address normalised as iptables-save prints it; IPv6 left out
    assert [line.split(" -m comment")[0] for line in rules] == [
        "-A cali-cidr-block -d 10.96.0.0/12", "-A cali-cidr-block -d 198.51.100.0/24",
        "-A cali-cidr-block -d 203.0.113.0/24"]
    assert all(line.endswith("-j DROP") for line in rules)


def test_reject_and_disabled_and_per_node(tmp_path):
    root = cluster_dir(tmp_path, BGP, felix(None, "Reject"), felix("node-2", "Disabled"))
    assert all("-j REJECT" in line for line in cidr_block(root, "node-1"))
    assert cidr_block(root, "node-1") and cidr_block(root, "node-2") == []


def test_nothing_advertised_leaves_the_chain_empty(tmp_path):
    assert cidr_block(cluster_dir(tmp_path)) == []


def _packet(root: Path, destination: str) -> dict:
    done = CliRunner().invoke(cli, ["packet", "-f", str(root), "--from", "demo/client",
                                    "--to", destination, "--protocol", "tcp", "--port", "80",
                                    "--output", "json"])
    assert done.exit_code == 0, done.output
    return json.loads(done.stdout)


def test_an_unclaimed_service_address_is_dropped_a_service_is_not(tmp_path):
    root = cluster_dir(tmp_path, BGP)
    lost = _packet(root, "10.96.0.99")
    assert (lost["verdict"], lost["reason"]) == ("dropped", "service-loop")
    assert "service CIDR" in lost["why"] and "BGPConfiguration" in lost["hint"]
    assert _packet(root, "10.96.0.50")["verdict"] == "allowed"     # kube-proxy DNATs first


def test_other_bgp_configurations_and_ipv6_are_said(tmp_path):
    node_bgp = BGP.replace("name: default", "name: node.node-1")
    root = cluster_dir(tmp_path, node_bgp, BGP.replace("10.96.0.0/12", "10.100.0.0/16"))
    cluster = load_cluster([str(root)])
    assert cluster.service_loop_cidrs == ("10.100.0.0/16", "198.51.100.0/24", "203.0.113.7/24")
    said = "\n".join(cluster.warnings)
    assert "only the default BGPConfiguration" in said and "IPv6 CIDR fd00:10::/64" in said


@pytest.mark.parametrize("spec,problem", [
    ("serviceClusterIP: [{cidr: 10.96.0.0/12}]", "serviceClusterIP"),
    ("serviceClusterIPs: [{cidr: 10.96.0.0/33}]", "10.96.0.0/33"),
    ("serviceLoopPrevention: Sometimes", None)])
def test_bad_input_is_one_line_naming_the_problem(tmp_path, monkeypatch, capsys, spec,
                                                  problem):
    if problem is None:         # a FelixConfiguration value
        doc, problem = felix(None, "Sometimes"), "Sometimes"
    else:
        doc = f"apiVersion: projectcalico.org/v3\nkind: BGPConfiguration\n" \
              f"metadata: {{name: default}}\nspec: {{{spec}}}\n"
    monkeypatch.setattr("sys.argv", ["calico-trace", "render", "-f",
                                     str(cluster_dir(tmp_path, doc)), "--node", "node-1"])
    with pytest.raises(SystemExit) as exit_info:
        main()
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and len(err.strip().splitlines()) == 1
    assert problem in err and "extra-0.yaml" in err


@pytest.mark.root
def test_the_kernel_reads_the_chain_back(tmp_path, netns):
    from conftest import in_netns

    from tracer.dataplane.ipsets import format_ipsets
    cluster = load_cluster([str(cluster_dir(tmp_path, BGP, felix(None, "Reject")))])
    ruleset = render_node(cluster, "node-1")
    in_netns(netns, "ipset", "restore", stdin=format_ipsets(ruleset.ipsets))
    in_netns(netns, "iptables-restore", stdin=format_ruleset(ruleset))
    saved = parse_ruleset(in_netns(netns, "iptables-save", "-t", "filter"),
                          ipsets=ruleset.ipsets)
    from tracer.dataplane.ir import Table
    ours = ruleset.tables[Table.FILTER]["cali-cidr-block"]
    assert ours.rules and saved.tables[Table.FILTER]["cali-cidr-block"] == ours
