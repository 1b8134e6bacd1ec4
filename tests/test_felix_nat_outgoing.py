"""cali-nat-outgoing as felix renders it for natPortRange, natOutgoingAddress,
natOutgoingExclusions and iptablesNATOutgoingInterfaceFilter (felix/rules/nat.go NATOutgoingChain and its expectations
in nat_test.go: with a port range, TCP and UDP get the ranged action then RETURN, everything
else the plain action), and the connection the trace binds."""
from __future__ import annotations

import re
import shutil

import pytest
import yaml

import bundled
from tracer.cli import main
from tracer.dataplane.ir import Table
from tracer.model.loader import load_cluster
from tracer.policy.felix.versions import resolve_version
from tracer.trace.assemble import build_dataplane

SCENARIO = bundled.SCENARIO_ROOT / "multinode-routed"     # a natOutgoing pool
SETS = ("-m set --match-set cali40masq-ipam-pools src "
        "-m set ! --match-set cali40network-ip-pools dst")


def with_felix(tmp_path, spec: dict):
    target = shutil.copytree(SCENARIO, tmp_path / "scenario")
    (target / "felix.yaml").write_text(yaml.safe_dump({
        "apiVersion": "projectcalico.org/v3", "kind": "FelixConfiguration",
        "metadata": {"name": "default"}, "spec": spec}))
    return target


def nat_outgoing_rules(directory) -> list[str]:
    cluster = load_cluster([directory])
    dataplane = build_dataplane(cluster, version=resolve_version(cluster, None))
    from tracer.dataplane.iptables_save import format_ruleset
    text = format_ruleset(dataplane.nodes["node-1"].ruleset)
    return [re.sub(r' -m comment --comment "cali:[^"]+"', "", line)
            for line in text.splitlines() if line.startswith("-A cali-nat-outgoing ")]


CASES = {
    "default": ({}, [f"-A cali-nat-outgoing {SETS} -j MASQUERADE --random-fully"]),
    "address": ({"natOutgoingAddress": "10.0.0.99"},
                [f"-A cali-nat-outgoing {SETS} -j SNAT --to-source 10.0.0.99 --random-fully"]),
    "ports": ({"natPortRange": "99:100"}, [
        f"-A cali-nat-outgoing -p tcp {SETS} -j MASQUERADE --to-ports 99-100 --random-fully",
        f"-A cali-nat-outgoing -p tcp {SETS} -j RETURN",
        f"-A cali-nat-outgoing -p udp {SETS} -j MASQUERADE --to-ports 99-100 --random-fully",
        f"-A cali-nat-outgoing -p udp {SETS} -j RETURN",
        f"-A cali-nat-outgoing {SETS} -j MASQUERADE --random-fully"]),
    "address and ports": ({"natPortRange": "99:100", "natOutgoingAddress": "10.0.0.99"}, [
        f"-A cali-nat-outgoing -p tcp {SETS} -j SNAT --to-source 10.0.0.99:99-100 "
        "--random-fully",
        f"-A cali-nat-outgoing -p tcp {SETS} -j RETURN",
        f"-A cali-nat-outgoing -p udp {SETS} -j SNAT --to-source 10.0.0.99:99-100 "
        "--random-fully",
        f"-A cali-nat-outgoing -p udp {SETS} -j RETURN",
        f"-A cali-nat-outgoing {SETS} -j SNAT --to-source 10.0.0.99 --random-fully"]),
    "host exclusions": ({"natOutgoingExclusions": "IPPoolsAndHostIPs"}, [
        f"-A cali-nat-outgoing {SETS} -m set ! --match-set cali40all-hosts-net dst "
        "-j MASQUERADE --random-fully"]),
    "interface filter": ({"iptablesNATOutgoingInterfaceFilter": "eth0"},
                         [f"-A cali-nat-outgoing -o eth0 {SETS} -j MASQUERADE --random-fully"]),
}


@pytest.mark.parametrize("case", CASES)
def test_rendered_as_felix_does(tmp_path, case):
    spec, expected = CASES[case]
    assert nat_outgoing_rules(with_felix(tmp_path, spec)) == expected


def run(capsys, *args):
    try:
        main(list(args))
        code = 0
    except SystemExit as done:
        code = done.code
    return code, *capsys.readouterr()


def test_the_trace_binds_the_address_and_a_port_in_range(tmp_path, capsys):
    directory = with_felix(tmp_path, {"natPortRange": "32768:65535",
                                      "natOutgoingAddress": "10.0.0.99"})
    code, out, err = run(capsys, "packet", "-f", str(directory), "--from", "shop/frontend-7d4b9",
                         "--to", "8.8.8.8", "--protocol", "udp", "--port", "53", "--sport", "1000",
                         "--output", "json")
    assert code == 0, err
    import json
    nat = [h for h in json.loads(out)["hops"] if h.get("stage") == "nat"]
    after = nat[0]["after"]
    assert after["src"] == "10.0.0.99" and 32768 <= after["sport"] <= 65535, nat


@pytest.mark.parametrize("spec,said", [
    ({"natOutgoingExclusions": "Everything"}, "natOutgoingExclusions"),
    ({"wireguardHostEncryptionEnabled": True}, "wireguardHostEncryptionEnabled"),
    ({"natPortRange": "70000:80000"}, "natPortRange"),
    ({"natOutgoingAddress": "fd00::1"}, "natOutgoingAddress"),
])
def test_unmodelled_or_bad_values_are_refused(tmp_path, capsys, spec, said):
    code, _, err = run(capsys, "render", "-f", str(with_felix(tmp_path, spec)), "--node",
                       "node-1")
    assert code == 2 and said in err and len(err.strip().splitlines()) == 1


def test_host_exclusions_are_refused_before_v331(tmp_path, capsys):
    directory = with_felix(tmp_path, {"natOutgoingExclusions": "IPPoolsAndHostIPs"})
    code, _, err = run(capsys, "render", "-f", str(directory), "--node", "node-1",
                       "--calico-version", "3.30")
    assert code == 2 and "spec.natOutgoingExclusions: felix v3.30" in err
    assert "added in v3.31.0" in err


@pytest.mark.parametrize("exclusions,masqueraded", [("IPPoolsOnly", True),
                                                    ("IPPoolsAndHostIPs", False)])
def test_a_pod_reaching_another_nodes_address_is_masqueraded_unless_hosts_excluded(
        tmp_path, capsys, exclusions, masqueraded):
    import json
    directory = with_felix(tmp_path, {"natOutgoingExclusions": exclusions})
    node_2 = str(load_cluster([directory]).nodes["node-2"].address.ip)
    code, out, err = run(capsys, "packet", "-f", str(directory), "--from",
                         "shop/frontend-7d4b9", "--to", node_2, "--protocol", "tcp", "--port",
                         "22", "--output", "json")
    assert code == 0, err
    nat = [h for h in json.loads(out)["hops"] if h.get("stage") == "nat"]
    assert bool(nat) == masqueraded, nat


def test_defaults_of_unmodelled_fields_pass_and_log_limits_are_said(tmp_path, capsys):
    directory = with_felix(tmp_path, {"wireguardHostEncryptionEnabled": False,
                                      "logActionRateLimit": "10/second"})
    code, out, err = run(capsys, "render", "-f", str(directory), "--node", "node-1")
    assert code == 0 and "-A cali-nat-outgoing" in out
    assert "logActionRateLimit" not in err           # rendered now (test_felix_log_rate.py)


def test_the_rendered_text_reads_back_to_the_same_targets(tmp_path):
    from tracer.dataplane.iptables_save import format_ruleset, parse_ruleset
    from tracer.dataplane.ir import Masquerade, Snat, Verdict
    cluster = load_cluster([with_felix(tmp_path, {"natPortRange": "99:100"})])
    ruleset = build_dataplane(cluster, version=resolve_version(cluster, None)) \
        .nodes["node-1"].ruleset
    chain = parse_ruleset(format_ruleset(ruleset)).tables[Table.NAT]["cali-nat-outgoing"]
    assert [r.target for r in chain.rules] == [
        Masquerade((99, 100), random_fully=True), Verdict("RETURN"),
        Masquerade((99, 100), random_fully=True), Verdict("RETURN"),
        Masquerade(random_fully=True)]
    assert not any(isinstance(r.target, Snat) for r in chain.rules)


@pytest.mark.root
@pytest.mark.parametrize("case", CASES)
def test_the_kernel_holds_what_we_render(netns, tmp_path, case):
    """iptables-restore takes every variant, and the kernel's iptables-save prints it back."""
    import subprocess

    from tracer.dataplane.ipsets import format_ipsets
    from tracer.dataplane.iptables_save import format_ruleset
    cluster = load_cluster([with_felix(tmp_path, CASES[case][0])])
    ruleset = build_dataplane(cluster, version=resolve_version(cluster, None)) \
        .nodes["node-1"].ruleset
    for argv, text in ((["ipset", "restore"], format_ipsets(ruleset.ipsets)),
                       (["iptables-restore"], format_ruleset(ruleset))):
        done = subprocess.run(["ip", "netns", "exec", netns, *argv], input=text, text=True,
                              capture_output=True)
        assert done.returncode == 0, done.stderr
    held = subprocess.run(["ip", "netns", "exec", netns, "iptables-save", "-t", "nat"],
                          capture_output=True, text=True, check=True).stdout
    ours = [line for line in format_ruleset(ruleset).splitlines()
            if line.startswith("-A cali-nat-outgoing ")]
    assert [line for line in held.splitlines() if line.startswith("-A cali-nat-outgoing ")] \
        == ours
    for table in ("raw", "mangle", "nat", "filter"):
        subprocess.run(["ip", "netns", "exec", netns, "iptables", "-t", table, "-F"])
        subprocess.run(["ip", "netns", "exec", netns, "iptables", "-t", table, "-X"])
    subprocess.run(["ip", "netns", "exec", netns, "ipset", "destroy"])
