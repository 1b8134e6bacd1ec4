"""Tracing through a real node's `iptables-save` / `ipset save` dump instead of the rendered
ruleset (tests/data/felix-node.* is written from felix's structure, with kube-proxy and Docker
chains, counters and felix's comments)."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from tracer.cli import cli

DATA = Path(__file__).resolve().parent / "data"
DUMP = ["--iptables-save", f"node-a={DATA / 'felix-node.iptables-save'}",
        "--ipsets", f"node-a={DATA / 'felix-node.ipset'}"]


def trace(*args):
    res = CliRunner().invoke(cli, ["packet", "-f", str(DATA / "real-node"), *DUMP, *args,
                                   "--output", "json"], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    return json.loads(res.stdout)


def test_dump_drop_is_mapped_back_through_felix_comments():
    data = trace("--from", "default/client", "--to", "default/web", "--port", "80")
    assert data["verdict"] == "dropped" and data["reason"] == "default-deny"
    deciding = data["deciding"][0]
    assert deciding["node"] == "node-a" and deciding["chain"] == "cali-tw-cali68caf03a5f4"
    assert "End of tier default" in deciding["rule_text"]
    assert data["selected_by"]["ingress default/web"] == [
        "KubernetesNetworkPolicy default/default-deny-ingress"]
    assert any("node-a: ruleset from iptables-save dump" in a for a in data["assumptions"])


def test_dump_allow_names_the_policy_rule_from_its_chain_comment():
    data = trace("--from", "default/client", "--to", "default/web-2", "--port", "80")
    assert data["verdict"] == "allowed"
    egress = next(d for d in data["deciding"] if d["chain"].startswith("cali-po-"))
    assert egress["policy"] == "default/client-egress" and egress["direction"] == "egress"
    # The ipset from the dump decided the match: web-2's address is in it.
    assert "--match-set cali40s:Wq3cXb9dVt0LmZs8Ey2fH1k dst" in egress["rule_text"]


def test_unsupported_match_in_a_dump_is_a_one_line_error(tmp_path):
    bad = tmp_path / "bad.iptables-save"
    bad.write_text("*filter\n:FORWARD ACCEPT [0:0]\n-A FORWARD -m physdev --physdev-in x "
                   "-j DROP\nCOMMIT\n")
    res = CliRunner().invoke(cli, ["packet", "-f", str(DATA / "real-node"), "--iptables-save",
                                   f"node-a={bad}", "--from", "default/client", "--to",
                                   "default/web"])
    assert res.exit_code != 0
    assert "line 3" in str(res.exception) and "physdev" in str(res.exception)
