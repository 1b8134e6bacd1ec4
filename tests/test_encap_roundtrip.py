"""One template for every encapsulation: round trips, overhead, and the shared drop checks.

Each mode subclass only says how to build its encapsulation and endpoints
(FDio/vpp test/template_bd.py style).
"""

from __future__ import annotations

from ipaddress import IPv4Address

import pytest
from scapy.all import ICMP, IP, TCP, UDP, raw

from tracer.encap import (DecapResult, Encapsulation, IpipEncap, TunnelEndpoint, VxlanEncap,
                          WireGuardEncap, encapsulation)
from tracer.encap.ipv4 import header_checksum_ok, parse_header
from tracer.errors import InputError

NODE_A, NODE_B, STRANGER = (IPv4Address("10.0.0.1"), IPv4Address("10.0.0.2"),
                            IPv4Address("10.0.9.9"))

INNERS = [
    raw(IP(src="192.168.10.5", dst="192.168.20.7", ttl=63, flags="DF")
        / TCP(sport=40000, dport=80, flags="S")),
    raw(IP(src="192.168.10.5", dst="192.168.20.7", ttl=5) / UDP(sport=1, dport=53) / (b"q" * 33)),
    raw(IP(src="192.168.10.5", dst="192.168.20.7") / ICMP() / (b"p" * 64)),
]


class EncapTemplate:
    """Shared checks; subclasses supply ``make`` and ``endpoints``."""

    expected_overhead: int = 0

    def make(self) -> Encapsulation:
        raise NotImplementedError

    def endpoints(self, encap) -> tuple[TunnelEndpoint, TunnelEndpoint, TunnelEndpoint]:
        return (TunnelEndpoint("node-a", NODE_A), TunnelEndpoint("node-b", NODE_B),
                TunnelEndpoint("stranger", STRANGER))

    def overhead_of(self, inner: bytes, outer: bytes) -> int:
        return len(outer) - len(inner)

    def test_satisfies_protocol(self):
        encap = self.make()
        assert isinstance(encap, Encapsulation)
        assert encap.overhead == self.expected_overhead

    @pytest.mark.parametrize("inner", INNERS, ids=["tcp-syn", "udp", "icmp"])
    def test_round_trip(self, inner):
        encap = self.make()
        a, b, _ = self.endpoints(encap)
        outer = encap.encapsulate(inner, a, b)
        hdr = parse_header(outer)
        assert (hdr.src, hdr.dst) == (NODE_A, NODE_B)
        assert header_checksum_ok(outer)
        result = encap.decapsulate(outer, b, [a])
        assert result == DecapResult(inner=inner, peer="node-a", info=result.info)

    def test_overhead_matches_felix(self):
        encap = self.make()
        a, b, _ = self.endpoints(encap)
        inner = raw(IP(src="192.168.10.5", dst="192.168.20.7") / TCP() / (b"x" * 8))
        assert len(inner) % 16 == 0                           # so WireGuard adds no padding
        assert self.overhead_of(inner, encap.encapsulate(inner, a, b)) == self.expected_overhead

    def test_unknown_sender_is_dropped(self):
        encap = self.make()
        a, b, stranger = self.endpoints(encap)
        outer = encap.encapsulate(INNERS[0], stranger, b)
        result = encap.decapsulate(outer, b, [a])
        assert not result.ok and result.inner is None
        assert result.drop_reason in ("unknown tunnel peer", "unknown peer key")

    def test_packet_for_another_node_is_dropped(self):
        encap = self.make()
        a, b, stranger = self.endpoints(encap)
        outer = encap.encapsulate(INNERS[0], a, b)
        assert encap.decapsulate(outer, stranger, [a]).drop_reason == \
            "outer destination is not this node"

    def test_corrupted_outer_checksum_is_dropped(self):
        encap = self.make()
        a, b, _ = self.endpoints(encap)
        outer = bytearray(encap.encapsulate(INNERS[0], a, b))
        outer[8] ^= 0x01                                      # flip a TTL bit
        assert encap.decapsulate(bytes(outer), b, [a]).drop_reason == \
            "bad outer IPv4 header checksum"

    @pytest.mark.parametrize("cut", [0, 7, 19, 27, 40])
    def test_truncated_packet_is_a_verdict_not_a_crash(self, cut):
        encap = self.make()
        a, b, _ = self.endpoints(encap)
        outer = encap.encapsulate(INNERS[0], a, b)
        result = encap.decapsulate(outer[:cut], b, [a])
        assert not result.ok and result.drop_reason

    def test_non_ipv4_inner_is_input_error(self):
        encap = self.make()
        a, b, _ = self.endpoints(encap)
        with pytest.raises(InputError, match="not IPv4"):
            encap.encapsulate(b"\x60" + bytes(39), a, b)


class TestIpip(EncapTemplate):
    expected_overhead = 20

    def make(self):
        return IpipEncap()


class TestVxlan(EncapTemplate):
    expected_overhead = 50

    def make(self):
        return VxlanEncap()


class TestWireGuard(EncapTemplate):
    expected_overhead = 60

    def make(self):
        return WireGuardEncap()

    def endpoints(self, encap):
        return (encap.endpoint("node-a", NODE_A), encap.endpoint("node-b", NODE_B),
                encap.endpoint("stranger", STRANGER))


def test_encapsulation_by_name():
    assert [encapsulation(m).name for m in ("ipip", "vxlan", "wireguard")] == \
        ["ipip", "vxlan", "wireguard"]
    with pytest.raises(InputError, match="unknown encapsulation"):
        encapsulation("gre")
