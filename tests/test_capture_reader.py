"""The capture reader against tshark on real captures (tests/data/captures/, made by
tests/make_captures.py from real traffic in network namespaces): every frame, field by field."""

from __future__ import annotations

from ipaddress import IPv4Address
from pathlib import Path

import numpy as np
import pytest

from capture_tshark import assert_agrees_with_tshark
from tracer.capture import Tunnel, read_capture
from tracer.capture.columns import LINKTYPE_LINUX_SLL, LINKTYPE_LINUX_SLL2

CAPTURES = Path(__file__).resolve().parent / "data" / "captures"
BUNDLED = sorted(p.name for p in CAPTURES.iterdir() if p.suffix in (".pcap", ".pcapng"))


def test_every_scenario_of_the_brief_is_bundled():
    assert set(BUNDLED) == {"tcp-handshake.pcap", "denied.pcapng", "icmp-error.pcap",
                            "stray-ack.pcap", "service-dnat-sll2.pcap", "service-dnat-sll.pcap",
                            "vxlan-underlay.pcap", "fragments.pcapng"}


@pytest.mark.parametrize("name", BUNDLED)
def test_reader_agrees_with_tshark_on_every_frame(name):
    assert_agrees_with_tshark(CAPTURES / name)


def test_tcp_flow_has_its_handshake_data_and_teardown():
    cap = read_capture(str(CAPTURES / "tcp-handshake.pcap"))
    flags = [int(f) for f in cap.packets["tcp_flags"]]
    assert flags[:3] == [0x02, 0x12, 0x10]                        # SYN, SYN-ACK, ACK
    assert sum(1 for f in flags if f & 0x01) == 2                  # a FIN each way
    data = cap.packets[cap.packets["payload_len"] > 0]
    assert {int(d["dport"]) for d in data} | {int(d["sport"]) for d in data} >= {80}
    assert cap.skipped_counts() == {"ARP": 2, "IPv6 (not modelled yet)": 6}


def test_icmp_error_quotes_the_udp_datagram_it_answers():
    cap = read_capture(str(CAPTURES / "icmp-error.pcap"))
    udp, icmp = cap.packets
    assert (udp["protocol"], udp["sport"], udp["dport"]) == (17, 40999, 9999)
    assert (icmp["icmp_type"], icmp["icmp_code"], icmp["has_inner"]) == (3, 3, 1)
    assert (icmp["inner_saddr"], icmp["inner_daddr"]) == (udp["saddr"], udp["daddr"])
    assert (icmp["inner_sport"], icmp["inner_dport"]) == (40999, 9999)
    assert cap.interfaces[0].tsresol == (10, 9)                    # nanosecond pcap


def test_service_flow_is_seen_before_and_after_dnat_on_any():
    for name, linktype in (("service-dnat-sll2.pcap", LINKTYPE_LINUX_SLL2),
                           ("service-dnat-sll.pcap", LINKTYPE_LINUX_SLL)):
        cap = read_capture(str(CAPTURES / name))
        assert set(cap.meta["linktype"]) == {linktype}
        dsts = {str(IPv4Address(int(d))) for d in cap.packets["daddr"]}
        assert {"10.96.0.10", "10.65.1.2"} <= dsts
        # -i any shows the forwarded SYN on the pod's veth, the VXLAN device and eth0
        syn = cap.packets["tcp_flags"] == 0x02
        assert syn.sum() == 3 and (cap.meta["tunnel"][syn] == Tunnel.VXLAN).sum() == 1
        assert set(cap.meta["pkttype"][syn]) == {0, 4}              # host (in), outgoing


def test_vxlan_underlay_rows_are_the_inner_packets_with_outer_headers_kept():
    cap = read_capture(str(CAPTURES / "vxlan-underlay.pcap"))
    assert (cap.meta["tunnel"] == Tunnel.VXLAN).all()
    assert set(cap.meta["vni"]) == {4096} and set(cap.meta["outer_dport"]) == {4789}
    nodes = {str(IPv4Address(int(a))) for a in cap.meta["outer_saddr"]}
    pods = {str(IPv4Address(int(a))) for a in cap.packets["saddr"]}
    assert nodes == {"172.18.0.11", "172.18.0.12"} and pods == {"10.65.0.2", "10.65.1.2"}
    assert (cap.packets["protocol"] == 1).sum() == 4                # two pings and replies


def test_a_different_vxlan_port_leaves_the_outer_packets_as_rows():
    cap = read_capture(str(CAPTURES / "vxlan-underlay.pcap"), vxlan_port=8472)
    assert (cap.meta["tunnel"] == Tunnel.NONE).all()
    assert set(cap.packets["dport"]) == {4789}


def test_fragmented_datagram_is_reassembled_on_the_veth_and_inside_vxlan():
    cap = read_capture(str(CAPTURES / "fragments.pcapng"))
    assert len(cap.interfaces) == 2
    veth, underlay = cap.packets
    for row in (veth, underlay):
        assert (row["protocol"], row["sport"], row["dport"]) == (17, 41000, 5000)
        assert row["payload_len"] == 3000 and row["tot_len"] == 3028
    m_veth, m_under = cap.meta
    assert (m_veth["interface"], m_veth["frags"], m_veth["first_frame"]) == (0, 3, 1)
    assert (m_under["interface"], m_under["tunnel"], m_under["frags"]) == (1, Tunnel.VXLAN, 3)
    # the same datagram, one hop later: the node forwarded it (TTL - 1) and refragmented it
    assert cap.datagram(0)[20:] == cap.datagram(1)[20:]
    assert veth["ttl"] == underlay["ttl"] + 1
    payload = cap.datagram(0)[28:]
    assert payload == bytes(range(256)) * 11 + bytes(184)
    assert np.array_equal(cap.skipped["frame"], [1, 2, 4, 5])
