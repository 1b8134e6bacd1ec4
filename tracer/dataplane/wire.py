"""Packet records to wire bytes: IPv4 with a TCP, UDP, SCTP-less or ICMP header, checksums
right, payload zero-filled to the record's length. Used at the edges only (pcap output,
tunnel framing)."""

from __future__ import annotations

import struct

from tracer.dataplane.packet import Packet
from tracer.protocols import ICMP, TCP, UDP
from tracer.encap import ipv4


def to_bytes(packet: Packet, *, ident: int = 0) -> bytes:
    """The IPv4 datagram a host would put on the wire for ``packet``."""
    if packet.protocol == TCP:
        body = _tcp(packet)
    elif packet.protocol == UDP:
        body = _udp(packet)
    elif packet.protocol == ICMP:
        body = _icmp(packet)
    else:
        body = bytes(max(packet.length - 20, 0))
    return ipv4.build_header(packet.src, packet.dst, packet.protocol, len(body), ttl=packet.ttl,
                             ident=ident, df=packet.df) + body


def _payload(packet: Packet, header_len: int) -> bytes:
    return bytes(max(packet.length - 20 - header_len, 0))


def _pseudo(packet: Packet, segment: bytes) -> bytes:
    return packet.src.packed + packet.dst.packed + struct.pack("!BBH", 0, packet.protocol,
                                                               len(segment))


def _tcp(packet: Packet) -> bytes:
    payload = _payload(packet, 20)
    head = struct.pack("!HHIIBBHHH", packet.sport or 0, packet.dport or 0,
                       packet.seq & 0xFFFFFFFF, packet.ack_seq & 0xFFFFFFFF, 5 << 4,
                       packet.tcp_flags or 0, packet.window & 0xFFFF, 0, 0)
    segment = head + payload
    csum = ipv4.internet_checksum(_pseudo(packet, segment) + segment)
    return segment[:16] + struct.pack("!H", csum) + segment[18:]


def _udp(packet: Packet) -> bytes:
    return ipv4.build_udp(packet.src, packet.dst, packet.sport or 0, packet.dport or 0,
                          _payload(packet, 8))


def _icmp(packet: Packet) -> bytes:
    if packet.inner is not None:
        # An error quotes the offending datagram's header and first 8 bytes (RFC 792).
        rest, data = b"\x00" * 4, to_bytes(packet.inner)[:28]
    else:
        rest, data = struct.pack("!HH", packet.icmp_id, 1), _payload(packet, 8)
    head = struct.pack("!BBH", packet.icmp_type or 0, packet.icmp_code or 0, 0) + rest
    csum = ipv4.internet_checksum(head + data)
    return head[:2] + struct.pack("!H", csum) + head[4:] + data
