"""Pod MTU per mode (felix defaults) and the too-big path: fragments or ICMP frag-needed."""

from __future__ import annotations

from ipaddress import IPv4Address

import pytest
from scapy.all import ICMP, IP, TCP, UDP, raw
from scapy.layers.inet import IPerror

from tracer.encap import check_mtu, pod_mtu
from tracer.encap.ipv4 import header_checksum_ok, internet_checksum, parse_header
from tracer.encap.mtu import fragment
from tracer.errors import InputError

ROUTER = IPv4Address("10.0.0.254")


@pytest.mark.parametrize("mode,expected", [("ipip", 1480), ("vxlan", 1450),
                                           ("wireguard", 1440), (None, 1500)])
def test_pod_mtu_at_host_1500(mode, expected):
    assert pod_mtu(mode) == expected


def test_pod_mtu_follows_host_and_knob():
    assert pod_mtu("vxlan", host_mtu=9001) == 8951
    assert pod_mtu("ipip", host_mtu=9001, configured=1400) == 1400
    with pytest.raises(InputError, match="unknown encapsulation"):
        pod_mtu("geneve")


def test_fits():
    assert check_mtu(1450, df=True, path_mtu=1450).fits


def test_df_set_too_big_builds_frag_needed_byte_exact():
    big = raw(IP(src="192.168.10.5", dst="192.168.20.7", tos=0x2A, flags="DF", ttl=61, id=7)
              / TCP(sport=40000, dport=80, flags="PA") / (b"d" * 1460))
    result = check_mtu(len(big), df=True, path_mtu=1450, packet=big, router_ip=ROUTER, ident=99)
    assert result.verdict == "drop" and "next-hop MTU 1450" in result.reason
    icmp = result.icmp
    assert icmp is not None
    outer = parse_header(icmp)
    assert (outer.src, outer.dst) == (ROUTER, IPv4Address("192.168.10.5"))
    assert outer.tos == 0xC0 | (0x2A & 0x1E) and outer.ttl == 64 and not outer.df
    assert outer.total_length == len(icmp) == 576          # quote capped at 576 bytes total
    assert header_checksum_ok(icmp) and internet_checksum(icmp[20:]) == 0
    assert icmp[20:24] == bytes([3, 4]) + icmp[22:24] and icmp[24:28] == b"\x00\x00\x05\xaa"
    assert icmp[28:] == big[:548]                           # original header + data, untouched
    # scapy agrees on the framing
    parsed = IP(icmp)
    assert parsed[ICMP].type == 3 and parsed[ICMP].code == 4 and parsed[ICMP].nexthopmtu == 1450
    assert parsed[IPerror].dst == "192.168.20.7"


def test_small_packet_quote_is_the_whole_packet():
    pkt = raw(IP(src="1.1.1.1", dst="2.2.2.2", flags="DF") / UDP() / (b"z" * 100))
    icmp = check_mtu(len(pkt), True, 100, packet=pkt, router_ip=ROUTER).icmp
    assert icmp is not None and icmp[28:] == pkt


def test_df_clear_fragments_like_the_kernel():
    pkt = raw(IP(src="192.168.10.5", dst="192.168.20.7", id=0x4242, ttl=30)
              / UDP(sport=5, dport=6) / (bytes(range(256)) * 6))
    result = check_mtu(len(pkt), df=False, path_mtu=600, packet=pkt)
    assert result.verdict == "fragment"
    frags = result.fragments
    assert len(pkt) == 1564                                 # 1544 bytes after the header
    assert [len(f) for f in frags] == [596, 596, 20 + 1544 - 2 * 576]
    for i, frag in enumerate(frags):
        hdr = parse_header(frag)
        assert hdr.ident == 0x4242 and hdr.ttl == 30 and header_checksum_ok(frag)
        assert hdr.frag_offset == i * 576 and hdr.mf == (i < len(frags) - 1)
    assert b"".join(f[20:] for f in frags) == pkt[20:]


def test_fragment_keeps_only_copied_options_after_the_first():
    # option 0x94 (router alert, copied) and 0x07 (record route, not copied)
    options = bytes([0x94, 4, 0, 0, 0x07, 7, 4]) + bytes(4) + bytes([0])
    pkt = raw(IP(src="1.1.1.1", dst="2.2.2.2", options=options) / (b"q" * 200))
    frags = fragment(pkt, 120)
    assert parse_header(frags[0]).options == options
    later = parse_header(frags[1]).options
    assert later[:4] == options[:4] and set(later[4:11]) == {1}


def test_fragmenting_a_df_packet_is_refused():
    pkt = raw(IP(src="1.1.1.1", dst="2.2.2.2", flags="DF") / (b"q" * 200))
    with pytest.raises(InputError):
        fragment(pkt, 100)
