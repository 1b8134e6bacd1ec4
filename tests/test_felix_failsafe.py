"""Failsafe ports with ``net``: cali-failsafe-in/-out as felix renders them (rules/static.go
failsafeInChain / failsafeOutChain), checked rule for rule against felix's own expectations in
rules/static_test.go of each supported release (excerpts in tests/data/felix_static_test)."""

from __future__ import annotations

import dataclasses
import re
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from tracer.cli import cli, main
from tracer.errors import InputError
from tracer.model.cluster import FelixConfig, ProtoPort
from tracer.model.loader import load_cluster
from tracer.policy.felix.context import make_ctx
from tracer.policy.felix.names import render_for_hash
from tracer.policy.felix.static import failsafe_in, failsafe_out

from felix_fixtures import cluster

DATA = Path(__file__).resolve().parent / "data" / "felix_static_test"
SCENARIOS = Path(__file__).resolve().parent.parent / "scenarios"
RELEASES = {"3.29": "v3.29.7", "3.30": "v3.30.7", "3.31": "v3.31.7", "3.32": "v3.32.1"}

# felix/iptables/match_builder.go: how each Match() call renders.
GO_MATCH = {"Protocol": "-p {}", "SourceNet": "--source {}", "DestNet": "--destination {}",
            "SourcePorts": "-m multiport --source-ports {}",
            "DestPorts": "-m multiport --destination-ports {}"}


def _entries(block: str) -> tuple[ProtoPort, ...]:
    return tuple(ProtoPort(proto, int(port), net) for net, proto, port in re.findall(
        r'\{Net: "([^"]*)", Protocol: "(\w+)", Port: (\d+)\}', block))


def _go_rules(block: str) -> list[str]:
    """felix's expected rules, as felix renders them (``--jump ACCEPT`` for AcceptAction)."""
    rules = []
    for calls in re.findall(r"\{Match: (?:iptables\.)?Match\(\)((?:\.\w+\([^)]*\))*), "
                            r"Action: (?:iptables\.)?AcceptAction\{\}\}", block):
        parts = [GO_MATCH[name].format(arg.strip('"'))
                 for name, arg in re.findall(r"\.(\w+)\(([^)]*)\)", calls)]
        rules.append(" ".join([*parts, "--jump ACCEPT"]))
    return rules


def felix_expectations(tag: str):
    """(inbound, outbound, {chain variable: expected IPv4 rules}) of one release."""
    text = (DATA / f"failsafe-{tag}.go.txt").read_text()
    config, _, expected = text.partition("expRawFailsafeIn := ")
    inbound, _, outbound = config.partition("FailsafeOutboundHostPorts")
    ipv4 = expected.split("if ipVersion == 4 {", 1)[1]
    chains = {}
    for name, body in re.findall(r"(exp\w+) = &generictables\.Chain\{(.*?)\n\t{6}\}", ipv4,
                                 re.S):
        chains[name] = _go_rules(body)
    return _entries(inbound), _entries(outbound), chains


@pytest.mark.parametrize("version", sorted(RELEASES))
def test_failsafe_chains_equal_felix_static_test(version):
    inbound, outbound, expected = felix_expectations(RELEASES[version])
    assert len(inbound) == 3 and inbound[2].net == "::/0" and len(expected) == 4
    felix = dataclasses.replace(FelixConfig(), failsafe_inbound_host_ports=inbound,
                                failsafe_outbound_host_ports=outbound)
    ctx = make_ctx(cluster(felix=felix), "node1", version)

    def ours(chain) -> list[str]:
        return [render_for_hash("x", rule).replace("-A x HASH ", "") for rule in chain.rules]
    assert ours(failsafe_in(ctx, "raw")) == expected["expRawFailsafeIn"]
    assert ours(failsafe_out(ctx, "raw")) == expected["expRawFailsafeOut"]
    for table in ("filter", "mangle"):
        assert ours(failsafe_in(ctx, table)) == expected["expFailsafeIn"]
        assert ours(failsafe_out(ctx, table)) == expected["expFailsafeOut"]
    # The ::/0 entry is felix's IPv6 rule only.
    assert not any("::" in rule for rules in expected.values() for rule in rules)


FELIX = """
apiVersion: projectcalico.org/v3
kind: FelixConfiguration
metadata: {{name: default}}
spec:
  failsafeInboundHostPorts:
{entries}
"""


def host_endpoint(tmp_path: Path, entries: str) -> Path:
    root = tmp_path / "he"
    shutil.copytree(SCENARIOS / "host-endpoint", root)
    (root / "felix.yaml").write_text(FELIX.format(entries=entries))
    return root


def test_net_is_held_canonical_and_rendered_in_save_form(tmp_path):
    root = host_endpoint(tmp_path, "  - {net: 10.0.0.7/24, protocol: TCP, port: 1022}\n"
                                   "  - {net: 192.168.5.9, protocol: udp, port: 0}\n"
                                   "  - {net: '2001:db8::1/64', protocol: tcp, port: 22}\n")
    felix = load_cluster([root]).felix
    assert felix.failsafe_inbound_host_ports == (
        ProtoPort("tcp", 1022, "10.0.0.0/24"), ProtoPort("udp", 0, "192.168.5.9/32"),
        ProtoPort("tcp", 22, "2001:db8::/64"))
    result = CliRunner().invoke(cli, ["render", "-f", str(root), "--node", "node-1"])
    assert result.exit_code == 0, result.output
    filter_table = result.stdout.split("*filter", 1)[1]
    rules = [line for line in filter_table.splitlines()
             if line.startswith("-A cali-failsafe-in")]
    assert len(rules) == 2
    assert rules[0].startswith("-A cali-failsafe-in -s 10.0.0.0/24 -p tcp ")
    assert rules[0].endswith("-m multiport --dports 1022 -j ACCEPT")
    assert rules[1].startswith("-A cali-failsafe-in -s 192.168.5.9/32 -p udp ")
    assert "2001:db8" not in result.stdout


def packet_verdict(root: Path, source: str, port: int) -> str:
    result = CliRunner().invoke(cli, ["packet", "--no-cache", "-f", str(root), "--from", source,
                                      "--to", "10.0.0.1", "--port", str(port), "--output",
                                      "json"])
    assert result.exit_code == 0, result.output
    return __import__("json").loads(result.stdout)["verdict"]


def test_failsafe_net_opens_the_port_only_from_that_net(tmp_path):
    """node-1's host endpoint admits only 443: SSH from 10.0.0.0/24 through failsafe, SSH
    from elsewhere dropped by the host endpoint's policy."""
    root = host_endpoint(tmp_path, "  - {net: 10.0.0.0/24, protocol: tcp, port: 22}\n"
                                   "  - {net: '::/0', protocol: tcp, port: 2222}\n")
    assert packet_verdict(root, "10.0.0.50", 22) != "dropped"
    assert packet_verdict(root, "172.16.0.9", 22) == "dropped"
    assert packet_verdict(root, "10.0.0.50", 2222) == "dropped"      # IPv6-only entry


@pytest.mark.parametrize("entry,message", [
    ("{protocol: SCTP, port: 22}",
     "spec.failsafeInboundHostPorts[0].protocol: 'SCTP': felix accepts only tcp or udp"),
    ("{protocol: tcp, port: 22, net: 10.0.0.0/33}",
     "spec.failsafeInboundHostPorts[0].net: expected a CIDR or an IP address, got '10.0.0.0/33'"),
    ("{protocol: tcp, port: 70000}", "spec.failsafeInboundHostPorts[0].port: 70000 outside"),
    ("{port: 22}", "spec.failsafeInboundHostPorts[0].protocol: missing (tcp or udp)"),
])
def test_bad_failsafe_entries_are_refused(tmp_path, entry, message):
    root = host_endpoint(tmp_path, f"  - {entry}\n")
    with pytest.raises(InputError) as err:
        load_cluster([root])
    assert message in str(err.value)
    assert "\n" not in str(err.value)

def test_bad_failsafe_entry_is_one_line_and_status_2(tmp_path, capsys):
    root = host_endpoint(tmp_path, "  - {protocol: sctp, port: 22}\n")
    with pytest.raises(SystemExit) as exited:
        main(["render", "-f", str(root), "--node", "node-1"])
    assert exited.value.code == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "failsafeInboundHostPorts[0].protocol: 'sctp'" in err
