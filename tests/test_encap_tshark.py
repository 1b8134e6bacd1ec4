"""tshark, an independent dissector, judges our framing: IPIP, VXLAN and WireGuard (with
decryption from our key log), all written through tracer.encap.pcap."""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
from ipaddress import IPv4Address

import pytest
from scapy.all import IP, TCP, raw

from tracer.encap import (LINKTYPE_ETHERNET, LINKTYPE_RAW, IpipEncap, TunnelEndpoint,
                          VxlanEncap, WireGuardEncap, read_pcap, vtep_mac, write_pcap)

TSHARK = shutil.which("tshark")
pytestmark = pytest.mark.skipif(TSHARK is None, reason="tshark binary not installed")

A_IP, B_IP = IPv4Address("10.0.0.1"), IPv4Address("10.0.0.2")
INNER = raw(IP(src="192.168.10.5", dst="192.168.20.7", ttl=63, flags="DF")
            / TCP(sport=40000, dport=80, flags="S", seq=1000) / b"calico")
REPLY = raw(IP(src="192.168.20.7", dst="192.168.10.5", ttl=63, flags="DF")
            / TCP(sport=80, dport=40000, flags="SA", seq=5000, ack=1001))
GOOD = "1"                       # PROTO_CHECKSUM_E_GOOD in tshark's checksum.status fields
CHECKS = ["-o", "ip.check_checksum:TRUE", "-o", "udp.check_checksum:TRUE",
          "-o", "tcp.check_checksum:TRUE"]


def tshark_json(path, *prefs: str) -> list[dict]:
    out = subprocess.run([TSHARK, "-r", str(path), "-T", "json", "--no-duplicate-keys", "-n",
                          *CHECKS, *prefs],
                         capture_output=True, text=True, check=True).stdout
    return [pkt["_source"]["layers"] for pkt in json.loads(out)]


def all_values(layer, key: str) -> list:
    """Every value of ``key`` anywhere under ``layer`` (tshark nests trees)."""
    found = []
    if isinstance(layer, dict):
        for k, v in layer.items():
            if k == key:
                found.extend(v if isinstance(v, list) else [v])
            found.extend(all_values(v, key))
    elif isinstance(layer, list):
        for item in layer:
            found.extend(all_values(item, key))
    return found


def as_list(value) -> list:
    return value if isinstance(value, list) else [value]


def test_ipip_frame(tmp_path):
    a, b = TunnelEndpoint("node-a", A_IP), TunnelEndpoint("node-b", B_IP)
    outer = IpipEncap().encapsulate(INNER, a, b)
    path = tmp_path / "ipip.pcap"
    write_pcap(path, [(1.0, outer, LINKTYPE_RAW)])
    (layers,) = tshark_json(path, "-x")
    ips = as_list(layers["ip"])
    assert len(ips) == 2
    assert [ip["ip.src"] for ip in ips] == ["10.0.0.1", "192.168.10.5"]
    assert ips[0]["ip.proto"] == "4"
    assert all_values(ips, "ip.checksum.status") == [GOOD, GOOD]
    assert ips[0]["ip.ttl"] == "63" and ips[0]["ip.flags_tree"]["ip.flags.df"] == "1"
    assert all_values(layers["tcp"], "tcp.checksum.status") == [GOOD]
    assert outer[20:] == INNER


def test_vxlan_frame_in_ethernet_capture(tmp_path):
    a, b = TunnelEndpoint("node-a", A_IP), TunnelEndpoint("node-b", B_IP)
    outer = VxlanEncap().encapsulate(INNER, a, b)
    underlay_l2 = bytes.fromhex("020000000002" "020000000001" "0800")
    path = tmp_path / "vxlan.pcap"
    write_pcap(path, [(1.0, underlay_l2 + outer, LINKTYPE_ETHERNET)])
    (layers,) = tshark_json(path)
    assert layers["frame"]["frame.protocols"] == "eth:ethertype:ip:udp:vxlan:eth:ethertype:ip:tcp"
    assert layers["udp"]["udp.dstport"] == "4789"
    assert layers["udp"]["udp.checksum.status"] == GOOD
    assert layers["vxlan"]["vxlan.vni"] == "4096"
    inner_eth = as_list(layers["eth"])[1]
    assert inner_eth["eth.src"] == vtep_mac("node-a")
    assert inner_eth["eth.dst"] == vtep_mac("node-b")
    ips = as_list(layers["ip"])
    assert [ip["ip.dst"] for ip in ips] == ["10.0.0.2", "192.168.20.7"]
    assert ips[0]["ip.ttl"] == "64" and ips[0]["ip.flags_tree"]["ip.flags.df"] == "0"
    assert all_values(ips, "ip.checksum.status") == [GOOD, GOOD]
    assert all_values(layers["tcp"], "tcp.checksum.status") == [GOOD]
    assert outer[-len(INNER):] == INNER


def test_wireguard_handshake_and_decrypted_transport(tmp_path):
    wg = WireGuardEncap()
    a, b = wg.endpoint("node-a", A_IP), wg.endpoint("node-b", B_IP)
    forward = wg.encapsulate(INNER, a, b)
    assert wg.decapsulate(forward, b, [a]).inner == INNER
    backward = wg.encapsulate(REPLY, b, a)
    packets = [pkt for _, pkt in wg.control_packets] + [forward, backward]
    path = tmp_path / "wg.pcap"
    write_pcap(path, [(float(i), pkt, LINKTYPE_RAW) for i, pkt in enumerate(packets)])
    keylog = tmp_path / "wg.keys"
    keylog.write_text(wg.keylog_lines(a, b))

    frames = tshark_json(path, "-o", f"wg.keylog_file:{keylog}")
    assert [f["wg"]["wg.type"] for f in frames] == ["1", "2", "4", "4"]
    initiation, response, data_ab, data_ba = frames
    sender_a = initiation["wg"]["wg.sender"]
    sender_b = response["wg"]["wg.sender"]
    assert response["wg"]["wg.receiver"] == sender_a
    assert response["wg"]["wg.handshake_ok"] == "1"
    assert initiation["wg"]["wg.static"] == base64.b64encode(wg.public_key("node-a")).decode()
    assert data_ab["wg"]["wg.receiver"] == sender_b and data_ab["wg"]["wg.counter"] == "0"
    assert data_ba["wg"]["wg.receiver"] == sender_a and data_ba["wg"]["wg.counter"] == "0"
    for frame, inner_src in ((data_ab, "192.168.10.5"), (data_ba, "192.168.20.7")):
        assert frame["udp"]["udp.checksum.status"] == GOOD
        ips = as_list(frame["ip"])                          # outer, then the decrypted inner
        assert len(ips) == 2 and ips[1]["ip.src"] == inner_src
        assert "tcp" in frame and all_values(ips, "ip.checksum.status") == [GOOD, GOOD]


def test_wireguard_without_keys_is_framed_but_not_decrypted(tmp_path):
    wg = WireGuardEncap()
    a, b = wg.endpoint("node-a", A_IP), wg.endpoint("node-b", B_IP)
    forward = wg.encapsulate(INNER, a, b)
    path = tmp_path / "wg-nokeys.pcap"
    write_pcap(path, [(0.0, forward, LINKTYPE_RAW)])
    (frame,) = tshark_json(path)
    assert frame["wg"]["wg.type"] == "4" and "tcp" not in frame


def test_pcap_round_trip(tmp_path):
    path = tmp_path / "rt.pcap"
    write_pcap(path, [(1.5, INNER, LINKTYPE_RAW), (2.25, REPLY, LINKTYPE_RAW)])
    records = read_pcap(path)
    assert [(r.timestamp, r.data, r.linktype) for r in records] == [
        (1.5, INNER, LINKTYPE_RAW), (2.25, REPLY, LINKTYPE_RAW)]
