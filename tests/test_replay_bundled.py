"""Replay of the bundled captures of real traffic (tests/data/captures, made by
tests/make_captures.py with curl, ping and Python sockets in network namespaces, captured by
tcpdump/dumpcap) against the same cluster written as manifests: the verdicts the kernel gave."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from tracer.cli import main

DATA = Path(__file__).resolve().parent / "data"
CAPTURES = DATA / "captures"
LAB = DATA / "replay" / "two-node-lab.yaml"
FILES = ("tcp-handshake.pcap", "denied.pcapng", "vxlan-underlay.pcap", "icmp-error.pcap")


@pytest.fixture(scope="module")
def tables(tmp_path_factory):
    """All four captures in one replay (files one after another, one conntrack), per engine."""
    out = {}
    for engine in ("reference", "compiled"):
        target = tmp_path_factory.mktemp(engine)
        main(["replay", "--no-cache", "--engine", engine, "-f", str(LAB),
              *(str(CAPTURES / f) for f in FILES), "--out", str(target)])
        out[engine] = {t: pd.read_parquet(target / f"{t}.parquet") for t in ("packets", "flows")}
    return out


def _of(packets: pd.DataFrame, name: str) -> pd.DataFrame:
    return packets[packets["capture"].str.endswith(name)]


def test_curl_to_the_allowed_port(tables):
    packets = _of(tables["reference"]["packets"], "tcp-handshake.pcap")
    tcp = packets[packets["protocol"] == "TCP"]
    assert len(tcp) == 10 and set(tcp["verdict"]) == {"allowed"}
    assert tcp.iloc[0]["tcp_flags"] == "SYN" and tcp.iloc[0]["ct_state"] == "NEW"
    assert tcp.iloc[0]["policy"] == "KubernetesNetworkPolicy default/web-http-only"
    assert tcp.iloc[0]["entry"].startswith("node-1/cali") and tcp.iloc[0]["node"] == "node-2"
    assert set(tcp.iloc[1:]["ct_state"]) == {"ESTABLISHED"}
    noise = packets[packets["verdict"] == "not parsed"]          # ARP and IPv6 on the veth
    assert len(noise) == len(packets) - 10
    assert set(noise["detail"]) <= {"not parsed: ARP", "not parsed: IPv6 (not modelled yet)"}


def test_curl_to_a_denied_port(tables):
    syns = _of(tables["reference"]["packets"], "denied.pcapng")
    syns = syns[syns["protocol"] == "TCP"]
    assert list(syns["tcp_flags"]) == ["SYN", "SYN"] and list(syns["dport"]) == [81, 81]
    assert set(syns["reason"]) == {"default-deny"} and set(syns["node"]) == {"node-2"}
    flows = tables["reference"]["flows"]
    denied = flows[flows["dport"] == 81].iloc[0]
    assert (denied["packets"], denied["verdict"]) == (2, "dropped")
    assert "default/web-http-only" in denied["selected_by"]


def test_vxlan_on_node_1s_underlay(tables):
    packets = _of(tables["reference"]["packets"], "vxlan-underlay.pcap")
    assert set(packets["tunnel"]) == {"vxlan"} and set(packets["verdict"]) == {"allowed"}
    pings = packets[packets["protocol"] == "ICMP"]
    assert list(pings["tcp_flags"]) == ["icmp 8/0", "icmp 0/0"] * 2
    assert pings.iloc[0]["ct_state"] == "NEW" and pings.iloc[1]["ct_state"] == "ESTABLISHED"


def test_icmp_port_unreachable_is_related_to_its_udp_flow(tables):
    packets = _of(tables["reference"]["packets"], "icmp-error.pcap")
    udp, icmp = packets.iloc[0], packets.iloc[1]
    assert udp["protocol"] == "UDP" and udp["verdict"] == "allowed"
    assert (icmp["tcp_flags"], icmp["ct_state"], icmp["verdict"]) == (
        "icmp 3/3", "RELATED", "allowed")
    assert icmp["flow"] == udp["flow"]


def test_both_engines_give_the_same_tables_on_real_traffic(tables):
    for table in ("packets", "flows"):
        pd.testing.assert_frame_equal(tables["reference"][table], tables["compiled"][table])


def test_a_lone_ack_without_tcp_loose_is_invalid(tmp_path, capsys):
    main(["replay", "--no-cache", "--engine", "reference", "--no-tcp-loose", "-f", str(LAB),
          str(CAPTURES / "stray-ack.pcap"), "--out", str(tmp_path)])
    capsys.readouterr()
    packets = pd.read_parquet(tmp_path / "packets.parquet")
    assert list(packets["tcp_flags"]) == ["ACK", "RST"]
    assert set(packets["reason"]) == {"conntrack-invalid"}
    assert set(packets["ct_state"]) == {"INVALID"}


def test_the_lone_ack_and_rst_with_tcp_loose(tmp_path, capsys):
    # With pickup on (nf_conntrack_tcp_loose=1, the kernel default) the lone ACK opens an
    # entry; web's RST is its reply and closes it, and its own NAT step still finds the entry.
    main(["replay", "--no-cache", "--engine", "reference", "-f", str(LAB),
          str(CAPTURES / "stray-ack.pcap"), "--out", str(tmp_path)])
    err = capsys.readouterr().err
    packets = pd.read_parquet(tmp_path / "packets.parquet")
    assert list(packets["tcp_flags"]) == ["ACK", "RST"]
    assert list(packets["ct_state"]) == ["NEW", "ESTABLISHED"]
    assert list(packets["verdict"]) == ["allowed", "allowed"]
    assert "internal error" not in err