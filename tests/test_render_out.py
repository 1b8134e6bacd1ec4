"""``render --out DIR``: a node written as a diags bundle's files. The files load as they are
(``ipset restore``, ``iptables-restore``: felix and kube-proxy as one ruleset), and ``--diags``
reads the folder back to the same traces as the manifests."""

from __future__ import annotations

import json
from pathlib import Path

import bundled
import pytest
from click.testing import CliRunner
from conftest import in_netns

from tracer.cli import cli
from tracer.dataplane.iptables_save import parse_ruleset
from tracer.dataplane.ir import Table
from tracer.model.loader import load_cluster, load_scenario_meta

SCENARIOS = bundled.SCENARIOS
FILES = {"hostname", "ipsets", "ipv4_addr", "ipv4_route", "ipv4_tables"}


def render_out(scenario: Path, node: str, out: Path) -> Path:
    res = CliRunner().invoke(cli, ["render", "-f", str(scenario), "--node", node, "--out",
                                   str(out)], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    return out


def trace(args: list[str]) -> dict:
    res = CliRunner().invoke(cli, ["packet", *args, "--output", "json"],
                             catch_exceptions=False)
    assert res.exit_code == 0, res.output
    return json.loads(res.stdout)


def test_files_are_named_as_the_bundle_names_them(tmp_path):
    out = render_out(SCENARIOS[0], sorted(load_cluster([SCENARIOS[0]]).nodes)[0], tmp_path)
    assert {p.name for p in out.iterdir()} == FILES


def test_a_service_node_renders_kube_proxy_beside_felix_in_hook_order(tmp_path):
    scenario = next(p for p in SCENARIOS if p.name == "service-clusterip")
    node = sorted(load_cluster([scenario]).nodes)[0]
    ruleset = parse_ruleset((render_out(scenario, node, tmp_path) / "ipv4_tables").read_text())
    prerouting = [r.target.chain for r in ruleset.tables[Table.NAT]["PREROUTING"].rules]
    assert "KUBE-SERVICES" in prerouting and "cali-PREROUTING" in prerouting
    # felix inserts its jump first (ChainInsertMode Insert): cali before KUBE.
    assert prerouting.index("cali-PREROUTING") < prerouting.index("KUBE-SERVICES")
    assert any(name.startswith("KUBE-SVC-") for name in ruleset.tables[Table.NAT])


# A bundle written from a node carries no WireGuard device or peers (felix keeps those out of
# iptables), so WireGuard scenarios cannot be traced from one alone.
TRACEABLE = [p for p in SCENARIOS if "wireguard" not in p.name]


@pytest.mark.parametrize("scenario", TRACEABLE, ids=lambda p: p.name)
def test_rendered_folders_trace_back_like_the_manifests(scenario, tmp_path):
    cluster = load_cluster([scenario])
    diags = []
    for node in sorted(cluster.nodes):
        diags += ["--diags", f"{node}={render_out(scenario, node, tmp_path / node)}"]
    for case in load_scenario_meta(scenario)["expect"]:
        src, dst = cluster.pods[case["from"]], cluster.pods[case["to"]]
        probe = ["--protocol", case["protocol"].lower(), "--port", str(case["port"])]
        a = trace(["-f", str(scenario), "--from", case["from"], "--to", case["to"], *probe])
        b = trace([*diags, "--from", str(src.ip), "--to", str(dst.ip), *probe])
        assert (a["verdict"], a["reason"]) == (b["verdict"], b["reason"]), case
        rules = lambda d: [(h["node"], h["table"], h["chain"], h["rule"], h["action"])  # noqa: E731
                           for h in d["hops"] if h["stage"] == "netfilter"]
        assert rules(a) == rules(b), case


@pytest.mark.root
@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda p: p.name)
def test_rendered_files_load_as_they_are(scenario, tmp_path, netns):
    for node in sorted(load_cluster([scenario]).nodes):
        out = render_out(scenario, node, tmp_path / node)
        # The previous node's rules hold its sets: flush them before the sets can go.
        for table in ("raw", "mangle", "nat", "filter"):
            in_netns(netns, "iptables", "-t", table, "-F")
            in_netns(netns, "iptables", "-t", table, "-X")
        in_netns(netns, "ipset", "destroy")
        in_netns(netns, "ipset", "restore", stdin=(out / "ipsets").read_text())
        in_netns(netns, "iptables-restore", stdin=(out / "ipv4_tables").read_text())
        saved = parse_ruleset(in_netns(netns, "iptables-save"))
        assert saved.tables == parse_ruleset((out / "ipv4_tables").read_text()).tables
