"""Reading calicoctl node diags bundles (tests/data/realnode/diags-node-a: an EC2-style node)
and tracing through them with and without manifests."""

from __future__ import annotations

import json
import tarfile
from ipaddress import IPv4Address
from pathlib import Path

import pytest
from click.testing import CliRunner

from tracer.cli import cli
from tracer.diags.bundle import read_bundle
from tracer.diags.iproute import parse_addresses, parse_routes
from tracer.diags.nodes import load_node, rebuild
from tracer.errors import InputError

DATA = Path(__file__).resolve().parent / "data"
BUNDLE = DATA / "realnode" / "diags-node-a"


def run(*args):
    return CliRunner().invoke(cli, ["packet", *args, "--output", "json"],
                              catch_exceptions=False)


@pytest.fixture
def tarball(tmp_path) -> Path:
    path = tmp_path / "diags-20261201_143720.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        tar.add(BUNDLE / "diagnostics", arcname="diagnostics")
    return path


def test_bundle_alone_gives_the_node_its_workloads_tunnel_and_pools():
    node = load_node("node-a", read_bundle(str(BUNDLE)))
    rebuilt = rebuild([node])
    cluster = rebuilt.cluster
    assert str(cluster.nodes["node-a"].address) == "10.0.0.10/24"
    assert str(cluster.nodes["node-a"].ipip_tunnel_address) == "192.168.1.0"
    assert sorted((str(ep.pod.ip), ep.interface) for ep in cluster.endpoints.values()) == [
        ("192.168.1.10", "calia7a3e029a7b"), ("192.168.1.20", "cali68caf03a5f4"),
        ("192.168.1.33", "cali0b3a1c2d4e5")]
    pool, = cluster.ippools.values()
    assert (str(pool.cidr), pool.block_size, pool.ipip_mode, pool.nat_outgoing) == (
        "192.168.0.0/16", 24, "Always", True)
    devices = {i.name: i for i in rebuilt.interfaces["node-a"].interfaces}
    assert devices["eth0"].mtu == 9001 and devices["tunl0"].mtu == 8981
    assert devices["calia7a3e029a7b"].mtu == 8981     # the smallest tunnel MTU
    assert any("uplink ens5 is shown as eth0" in w for w in rebuilt.warnings)
    default = rebuilt.routing["node-a"].lookup(IPv4Address("8.8.8.8"))
    assert default.dev == "eth0" and str(default.via) == "10.0.0.1"


def test_trace_without_manifests_decides_by_the_bundles_rules():
    res = run("--diags", str(BUNDLE), "--from", "192.168.1.10", "--to", "192.168.1.20",
              "--port", "80")
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    assert data["verdict"] == "dropped" and data["reason"] == "default-deny"
    assert data["deciding"][0]["chain"] == "cali-tw-cali68caf03a5f4"
    assert (data["from"], data["to"]) == ("node-a/calia7a3e029a7b", "node-a/cali68caf03a5f4")
    # No manifests: the why rests on the dump alone, not on an empty policy model.
    assert "default-deny-ingress" in data["why"] and "No policy selects" not in data["why"]
    assert any("diags bundle" in a for a in data["assumptions"])
    assert "uplink ens5 is shown as eth0" in res.stderr


def test_tarball_traces_like_the_folder(tarball):
    args = ("--from", "192.168.1.10", "--to", "192.168.1.20", "--port", "80")
    a, b = run("--diags", str(tarball), *args), run("--diags", f"node-a={BUNDLE}", *args)
    hops = lambda r: [(h["chain"], h.get("rule")) for h in json.loads(r.stdout)["hops"]  # noqa: E731
                      if h["stage"] == "netfilter"]
    assert hops(a) == hops(b) and hops(a)


def test_manifests_add_names_and_disagreements_are_said():
    res = run("-f", str(DATA / "real-node"), "--diags", f"node-a={BUNDLE}",
              "--from", "default/client", "--to", "default/web-2", "--port", "80")
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    assert data["verdict"] == "allowed" and data["delivered_to"] == "pod default/web-2"
    said = ("workload 192.168.1.33 on cali0b3a1c2d4e5 is in the bundle but no manifest names "
            "it")
    assert said in res.stderr
    assert any(said in a for a in data["assumptions"])


def test_manifest_pod_the_bundle_does_not_route_is_said(tmp_path):
    folder = tmp_path / "diagnostics"
    folder.mkdir()
    for f in (BUNDLE / "diagnostics").iterdir():
        text = f.read_text()
        if f.name == "ipv4_route":
            text = text.replace("192.168.1.20 dev cali68caf03a5f4 scope link \n", "")
        (folder / f.name).write_text(text)
    res = run("-f", str(DATA / "real-node"), "--diags", f"node-a={tmp_path}",
              "--from", "default/client", "--to", "default/web", "--port", "80")
    assert "pod default/web (192.168.1.20) is in the manifests, but the bundle has no route" \
        in res.stderr


def test_route_forms():
    text = ("default via 10.0.0.1 dev eth0 proto dhcp src 10.0.0.4 metric 100\n"
            "unreachable 10.9.0.0/16 proto bird\n"
            "10.8.0.0/16 proto bird\n"
            "\tnexthop via 10.0.0.2 dev eth0 weight 1\n"
            "broadcast 10.0.0.255 dev eth0 table local proto kernel scope link src 10.0.0.4\n"
            "10.7.0.0/16 via 10.0.0.3 dev eth0 table 7\n")
    routes, warnings = parse_routes(text, filename="r")
    assert [str(r) for r in routes] == ["default via 10.0.0.1 dev eth0", "blackhole 10.9.0.0/16",
                                        "10.8.0.0/16"]
    assert any("unreachable route read as a blackhole" in w for w in warnings)
    assert any("multipath next hop not modelled" in w for w in warnings)


def test_address_forms():
    text = (BUNDLE / "diagnostics" / "ipv4_addr").read_text()
    found = {(a.ifname, str(a.address), a.mtu, a.up) for a in parse_addresses(text, filename="a")}
    assert ("tunl0", "192.168.1.0/32", 8981, True) in found
    assert ("ens5", "10.0.0.10/24", 9001, True) in found


@pytest.mark.parametrize("make, problem", [
    (lambda p: p, "no such bundle"),
    (lambda p: (p.mkdir(), p)[1], "not a calicoctl node diags bundle: no ipv4_route"),
    (lambda p: (p.write_bytes(b"not a tarball"), p)[1], "cannot read the bundle"),
])
def test_bad_bundles_are_one_line_errors(tmp_path, make, problem):
    path = make(tmp_path / "bundle")
    with pytest.raises(InputError, match=problem):
        read_bundle(str(path))


def test_packet_needs_manifests_or_a_bundle():
    res = CliRunner().invoke(cli, ["packet", "--from", "1.2.3.4", "--to", "5.6.7.8"])
    assert res.exit_code != 0 and "--diags" in str(res.exception)
