"""TUN bytes <-> pipeline packets: fields parsed as scapy reads them, rewrites after NAT keep
every checksum right, ICMP errors quote the offending datagram, bad bytes raise."""

from __future__ import annotations

from ipaddress import IPv4Address

import pytest
from scapy.layers.inet import ICMP, IP, TCP, UDP, IPerror, TCPerror

from tracer.encap.ipv4 import MalformedPacket
from tracer.live import frames
from tracer.protocols import ACK, SYN


def _checksums_ok(data: bytes) -> bool:
    """Recompute with scapy: the bytes' checksums equal what scapy would write."""
    pkt = IP(data)
    fresh = pkt.copy()
    del fresh[IP].chksum
    layer = fresh.payload
    if hasattr(layer, "chksum"):
        del layer.chksum
    return bytes(IP(bytes(fresh))) == data


def test_tcp_fields_match_scapy():
    raw = bytes(IP(src="10.0.0.1", dst="10.0.0.2", ttl=61) /
                TCP(sport=40000, dport=6379, flags="SA", seq=7, ack=9, window=1000) / b"hi")
    packet = frames.parse(raw)
    assert (packet.src, packet.dst, packet.ttl) == (IPv4Address("10.0.0.1"),
                                                    IPv4Address("10.0.0.2"), 61)
    assert (packet.sport, packet.dport, packet.seq, packet.ack_seq) == (40000, 6379, 7, 9)
    assert packet.tcp_flags == SYN | ACK and packet.payload_len == 2
    assert packet.length == len(raw)


@pytest.mark.parametrize("l4", [TCP(sport=1234, dport=80) / b"payload",
                                UDP(sport=1234, dport=53) / b"query",
                                ICMP(type=8, id=77) / b"ping"])
def test_rewrite_after_nat_keeps_checksums(l4):
    raw = bytes(IP(src="10.0.0.1", dst="10.96.0.10") / l4)
    before = frames.parse(raw)
    changes = dict(dst=IPv4Address("192.168.0.9"), ttl=before.ttl - 1)
    if before.sport is not None:
        changes.update(dport=8080)
    else:
        changes.update(icmp_id=99)
    after = before.with_(**changes)
    out = frames.rewrite(raw, before, after)
    assert frames.parse(out) == after
    assert _checksums_ok(out)
    assert out[-4:] == raw[-4:]                 # the payload is untouched


def test_ttl_only_rewrite_keeps_transport_bytes():
    raw = bytes(IP(src="10.0.0.1", dst="10.0.0.2") / TCP(sport=1, dport=2) / (b"x" * 100))
    before = frames.parse(raw)
    out = frames.rewrite(raw, before, before.with_(ttl=63))
    assert out[20:] == raw[20:] and out[8] == 63 and _checksums_ok(out)


def test_icmp_error_quotes_the_datagram_and_parses_back():
    raw = bytes(IP(src="10.0.0.1", dst="10.0.0.2") / TCP(sport=5, dport=6) / (b"z" * 2000))
    error = frames.icmp_error(raw, IPv4Address("172.18.0.2"), 3, 4, rest=1450)
    assert len(error) <= 576 and _checksums_ok(error)
    parsed = IP(error)
    assert parsed[ICMP].type == 3 and parsed[ICMP].code == 4
    assert parsed[IPerror].dst == "10.0.0.2" and parsed[TCPerror].dport == 6
    packet = frames.parse(error)
    assert packet.dst == IPv4Address("10.0.0.1") and packet.inner.dport == 6


@pytest.mark.parametrize("data", [b"", b"\x45" * 10, bytes(IP() / TCP())[:22],
                                  b"\x60" + bytes(39)])
def test_bad_bytes_raise_malformed(data):
    with pytest.raises(MalformedPacket):
        frames.parse(data)


@pytest.mark.parametrize("ttl", [64, 2, 255])
def test_decrement_ttl_updates_the_header_checksum(ttl):
    raw = bytes(IP(src="10.0.0.1", dst="10.0.0.2", ttl=ttl) / UDP(sport=1, dport=2) / b"abc")
    out = frames.decrement_ttl(raw, 1)
    assert out[8] == ttl - 1 and out[20:] == raw[20:] and _checksums_ok(out)


def test_partial_checksum_follows_nat_addresses():
    """With checksum offload the field holds the pseudo-header sum only; after DNAT it must be
    the new addresses' sum, so the receiver's completed checksum is right."""
    def partial(pkt: bytes) -> bytes:
        full = IP(pkt)
        segment = bytes(full[IP].payload)
        pseudo = pkt[12:20] + bytes([0, 6]) + len(segment).to_bytes(2, "big")
        words = sum(int.from_bytes(pseudo[i:i + 2], "big") for i in range(0, 12, 2))
        while words >> 16:
            words = (words & 0xFFFF) + (words >> 16)
        return pkt[:36] + words.to_bytes(2, "big") + pkt[38:]

    raw = partial(bytes(IP(src="10.0.0.1", dst="10.96.0.10") / TCP(sport=5, dport=80) / b"d"))
    before = frames.parse(raw)
    after = before.with_(dst=IPv4Address("192.168.0.9"), dport=8080)
    out = frames.rewrite(raw, before, after, partial=True)
    expected = partial(bytes(IP(src="10.0.0.1", dst="192.168.0.9") / TCP(sport=5, dport=8080)
                             / b"d"))
    assert out[36:38] == expected[36:38] and out[22:24] == (8080).to_bytes(2, "big")


def test_vnet_header_and_gso_segment_length():
    raw = bytes(IP(src="10.0.0.1", dst="10.0.0.2") / TCP(sport=1, dport=2) / (b"x" * 30000))
    header = bytes([1, 1]) + (40).to_bytes(2, "little") + (1428).to_bytes(2, "little") + bytes(4)
    vhdr, data, gso, partial = frames.split_vnet(header + raw)
    assert (vhdr, data, gso, partial) == (header, raw, 1428, True)
    assert frames.segment_length(data, gso) == 40 + 1428
    with pytest.raises(MalformedPacket):
        frames.split_vnet(b"\x00" * 5)


def test_tcp_reset_answers_a_syn_as_the_kernel_does():
    """nf_reject_ipv4: no ACK on the segment -> RST|ACK acknowledging SYN and payload."""
    raw = bytes(IP(src="10.0.0.1", dst="10.0.0.2") / TCP(sport=40000, dport=80, flags="S",
                                                         seq=1000) / b"hi")
    reset = frames.tcp_reset(raw)
    assert _checksums_ok(reset)
    parsed = IP(reset)
    assert (parsed.src, parsed.dst, parsed.flags) == ("10.0.0.2", "10.0.0.1", "DF")
    assert (parsed[TCP].sport, parsed[TCP].dport) == (80, 40000)
    assert (parsed[TCP].flags, parsed[TCP].seq, parsed[TCP].ack) == ("RA", 0, 1003)


def test_tcp_reset_to_an_acked_segment_takes_its_ack_as_sequence():
    raw = bytes(IP(src="10.0.0.1", dst="10.0.0.2") / TCP(sport=1, dport=2, flags="PA",
                                                         seq=5, ack=777) / b"data")
    parsed = IP(frames.tcp_reset(raw))
    assert (parsed[TCP].flags, parsed[TCP].seq, parsed[TCP].ack) == ("R", 777, 0)


@pytest.mark.parametrize("segment", [
    IP(src="10.0.0.1", dst="10.0.0.2") / TCP(flags="R"),
    IP(src="10.0.0.1", dst="10.0.0.2", frag=10) / TCP(flags="S"),
    IP(src="10.0.0.1", dst="10.0.0.2") / UDP()])
def test_no_reset_for_a_reset_a_fragment_or_not_tcp(segment):
    assert frames.tcp_reset(bytes(segment)) is None
