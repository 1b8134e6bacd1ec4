"""Every scenario's every node, rendered and loaded by the real ``ipset restore`` and
``iptables-restore`` inside a throwaway network namespace (never the host's tables)."""

from __future__ import annotations

import subprocess
from ipaddress import IPv4Address
from pathlib import Path

import bundled
import pytest
from felix_fixtures import DENY_INGRESS, cluster

from tracer.dataplane.ipsets import format_ipsets
from tracer.dataplane.iptables_save import format_ruleset
from tracer.model.cluster import HostEndpoint
from tracer.model.loader import load_cluster
from tracer.policy.felix import SUPPORTED_VERSIONS, render_node

SCENARIOS = bundled.SCENARIOS


def _restore(ns: str, argv: list[str], text: str) -> None:
    done = subprocess.run(["ip", "netns", "exec", ns, *argv], input=text, text=True,
                          capture_output=True)
    assert done.returncode == 0, f"{' '.join(argv)} failed: {done.stderr}\n{text}"


def _flush(ns: str) -> None:
    for table in ("raw", "mangle", "nat", "filter"):
        subprocess.run(["ip", "netns", "exec", ns, "iptables", "-t", table, "-F"], check=False)
        subprocess.run(["ip", "netns", "exec", ns, "iptables", "-t", table, "-X"], check=False)
    subprocess.run(["ip", "netns", "exec", ns, "ipset", "destroy"], check=False)


@pytest.mark.root
@pytest.mark.parametrize("version", SUPPORTED_VERSIONS)
def test_every_scenario_node_loads(netns, version):
    """Every node of every scenario loads, and the kernel then holds exactly our chains and as
    many rules in each as we rendered."""
    for scenario in SCENARIOS:
        cluster = load_cluster([str(scenario)], calico_version=version)
        for node in sorted(cluster.nodes):
            ruleset = render_node(cluster, node, version=version)
            _restore(netns, ["ipset", "restore"], format_ipsets(ruleset.ipsets))
            _restore(netns, ["iptables-restore"], format_ruleset(ruleset))
            held = _rule_counts(netns)
            _flush(netns)
            ours = {(table.value, name): len(chain.rules)
                    for table, chains in ruleset.tables.items() for name, chain in chains.items()}
            assert held == ours, f"{scenario.name} {node}: the kernel holds other chains/rules"


def _rule_counts(ns: str) -> dict[tuple[str, str], int]:
    """(table, chain) -> rules, from the kernel's own iptables-save."""
    counts: dict[tuple[str, str], int] = {}
    for table in ("raw", "mangle", "nat", "filter"):
        dump = subprocess.run(["ip", "netns", "exec", ns, "iptables-save", "-t", table],
                              capture_output=True, text=True, check=True).stdout
        for line in dump.splitlines():
            if line.startswith(":"):
                counts.setdefault((table, line[1:].split()[0]), 0)
            elif line.startswith("-A "):
                key = (table, line.split()[1])
                counts[key] = counts.get(key, 0) + 1
    return counts


@pytest.mark.root
def test_host_endpoint_and_policy_cluster_loads(netns):
    c = cluster([DENY_INGRESS])
    c.host_endpoints.append(HostEndpoint("node1-eth0", "node1", "eth0",
                                         (IPv4Address("10.0.0.1"),), {"role": "node"}))
    for version in SUPPORTED_VERSIONS:
        ruleset = render_node(c, "node1", version=version)
        _restore(netns, ["ipset", "restore"], format_ipsets(ruleset.ipsets))
        _restore(netns, ["iptables-restore"], format_ruleset(ruleset))
        _flush(netns)
