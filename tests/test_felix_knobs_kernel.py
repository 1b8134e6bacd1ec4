"""The kernel reads back what we render for failsafe nets and Log rate limits unchanged: the
node's tables and sets loaded into a throwaway network namespace, saved again, compared line
for line with our iptables-save text."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from conftest import in_netns

from tracer.dataplane.ipsets import format_ipsets
from tracer.dataplane.iptables_save import format_ruleset
from tracer.model.loader import load_cluster
from tracer.trace.assemble import build_dataplane

pytestmark = pytest.mark.root

SCENARIOS = Path(__file__).resolve().parent.parent / "scenarios"

FELIX = """---
apiVersion: projectcalico.org/v3
kind: FelixConfiguration
metadata: {name: node.node-1}
spec:
  logActionRateLimit: 50/minute
  failsafeInboundHostPorts:
  - {net: 10.0.0.7/24, protocol: tcp, port: 22}
  - {net: "::/0", protocol: tcp, port: 2222}
  - {protocol: udp, port: 68}
  failsafeOutboundHostPorts:
  - {net: 192.168.1.1, protocol: udp, port: 53}
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: log-ssh}
spec:
  order: 1
  selector: role == 'k8s-node'
  types: [Ingress]
  ingress:
  - {action: Log, protocol: TCP, destination: {ports: [22]}}
"""


def test_kernel_saves_our_failsafe_and_log_limit_rules_unchanged(tmp_path, netns):
    root = tmp_path / "he"
    shutil.copytree(SCENARIOS / "host-endpoint", root)
    (root / "felix.yaml").write_text(FELIX)
    cluster = load_cluster([root])
    ruleset = build_dataplane(cluster, version="3.32").nodes["node-1"].ruleset
    text = format_ruleset(ruleset)
    assert "-s 10.0.0.0/24 -p tcp" in text and "-d 192.168.1.1/32 -p udp" in text
    assert "-m limit --limit 50/min -m multiport --dports 22 -j LOG" in text
    assert "2222" not in text
    in_netns(netns, "ipset", "restore", stdin=format_ipsets(ruleset.ipsets))
    in_netns(netns, "iptables-restore", stdin=text)
    saved = in_netns(netns, "iptables-save")

    def rules(dump: str) -> list[str]:
        return [line for line in dump.splitlines()
                if line.startswith("-A cali-") and ("failsafe" in line or "LOG" in line)]
    assert rules(saved) == rules(text) and len(rules(text)) >= 6
