"""IPv4 and UDP headers as the kernel writes them for tunnels: build, parse, checksum, ECN.

Only what the encapsulations need: a 20-byte outer header (tunnels never add IP options),
parsing of any header length (inner packets may carry options), the RFC 1071 checksum, and
the ECN rule of ``INET_ECN_encapsulate`` (include/net/inet_ecn.h) that every tunnel applies
to the outer TOS byte.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass
from ipaddress import IPv4Address

IP_DF = 0x4000
IP_MF = 0x2000
IP_OFFSET_MASK = 0x1FFF
PROTO_ICMP = 1
PROTO_IPIP = 4
PROTO_TCP = 6
PROTO_UDP = 17
DEFAULT_TTL = 64                 # net.ipv4.ip_default_ttl, what ip4_dst_hoplimit() returns
ECN_MASK = 0x03
ECN_CE = 0x03
ECN_ECT_0 = 0x02
IPV4_HLEN = 20
UDP_HLEN = 8


class MalformedPacket(ValueError):
    """Bytes that do not parse as the header they should be; callers turn it into a verdict."""


def internet_checksum(data: bytes) -> int:
    """RFC 1071 ones'-complement sum of 16-bit words, complemented."""
    if len(data) % 2:
        data += b"\x00"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


@dataclass(frozen=True)
class IPv4Header:
    """One parsed IPv4 header; ``options`` holds raw option bytes (empty for ihl 5)."""

    src: IPv4Address
    dst: IPv4Address
    protocol: int
    total_length: int
    ttl: int = DEFAULT_TTL
    tos: int = 0
    ident: int = 0
    flags_frag: int = 0              # the 16-bit flags + fragment offset word
    checksum: int = 0
    options: bytes = b""

    @property
    def header_length(self) -> int:
        return IPV4_HLEN + len(self.options)

    @property
    def df(self) -> bool:
        return bool(self.flags_frag & IP_DF)

    @property
    def mf(self) -> bool:
        return bool(self.flags_frag & IP_MF)

    @property
    def frag_offset(self) -> int:
        """Fragment offset in bytes."""
        return (self.flags_frag & IP_OFFSET_MASK) * 8


def build_header(src: IPv4Address, dst: IPv4Address, protocol: int, payload_len: int, *,
                 ttl: int = DEFAULT_TTL, tos: int = 0, ident: int = 0, df: bool = False,
                 flags_frag: int | None = None, options: bytes = b"") -> bytes:
    """A complete IPv4 header with a correct checksum."""
    if len(options) % 4:
        raise ValueError("IPv4 options must be padded to a multiple of 4 bytes")
    hlen = IPV4_HLEN + len(options)
    frag = flags_frag if flags_frag is not None else (IP_DF if df else 0)
    head = struct.pack("!BBHHHBBH4s4s", 0x40 | hlen // 4, tos, hlen + payload_len,
                       ident & 0xFFFF, frag, ttl, protocol, 0, src.packed, dst.packed) + options
    return head[:10] + struct.pack("!H", internet_checksum(head)) + head[12:]


def parse_header(packet: bytes) -> IPv4Header:
    """Parse the IPv4 header at the start of ``packet``; raise MalformedPacket if it is not one."""
    if len(packet) < IPV4_HLEN:
        raise MalformedPacket(f"truncated IPv4 header ({len(packet)} bytes)")
    ver_ihl, tos, total, ident, frag, ttl, proto, csum, src, dst = struct.unpack(
        "!BBHHHBBH4s4s", packet[:IPV4_HLEN])
    if ver_ihl >> 4 != 4:
        raise MalformedPacket(f"IP version {ver_ihl >> 4}, expected 4")
    hlen = (ver_ihl & 0x0F) * 4
    if hlen < IPV4_HLEN or len(packet) < hlen:
        raise MalformedPacket(f"bad IPv4 header length {hlen}")
    if total < hlen or total > len(packet):
        raise MalformedPacket(f"IPv4 total length {total} does not fit {len(packet)} bytes")
    return IPv4Header(src=IPv4Address(src), dst=IPv4Address(dst), protocol=proto,
                      total_length=total, ttl=ttl, tos=tos, ident=ident, flags_frag=frag,
                      checksum=csum, options=packet[IPV4_HLEN:hlen])


def header_checksum_ok(packet: bytes) -> bool:
    hlen = (packet[0] & 0x0F) * 4
    return internet_checksum(packet[:hlen]) == 0


def ecn_encapsulate(outer_tos: int, inner_tos: int) -> int:
    """INET_ECN_encapsulate: copy the inner ECN bits, but CE becomes ECT(0) on the outside."""
    inner_ecn = inner_tos & ECN_MASK
    return (outer_tos & ~ECN_MASK & 0xFF) | (ECN_ECT_0 if inner_ecn == ECN_CE else inner_ecn)


def inner_tos(inner: bytes) -> int:
    """The inner TOS byte for IPv4, else 0 (ip_tunnel_ecn_encap only looks at IP headers)."""
    return inner[1] if len(inner) >= 2 and inner[0] >> 4 == 4 else 0


def flow_ident(*parts: bytes) -> int:
    """A deterministic 16-bit IP ID for an outer header.

    The kernel's ``__ip_select_ident`` hashes (daddr, saddr, protocol) with a boot-time random
    key into a per-bucket counter, so the real value cannot be predicted; callers that need
    the kernel's exact value pass it in explicitly.
    """
    return int.from_bytes(hashlib.blake2s(b"|".join(parts), digest_size=2).digest(), "big")


def build_udp(src: IPv4Address, dst: IPv4Address, sport: int, dport: int, payload: bytes, *,
              checksum: bool = True) -> bytes:
    """UDP header + payload; the checksum covers the IPv4 pseudo-header (0 when disabled)."""
    length = UDP_HLEN + len(payload)
    head = struct.pack("!HHHH", sport, dport, length, 0)
    if not checksum:
        return head + payload
    csum = udp_checksum(src, dst, head + payload)
    return head[:6] + struct.pack("!H", csum) + payload


def udp_checksum(src: IPv4Address, dst: IPv4Address, segment: bytes) -> int:
    """UDP checksum over pseudo-header + segment (whose checksum field must be 0).

    A computed 0 goes on the wire as 0xffff (RFC 768), which is what the kernel's
    ``csum_tcpudp_magic`` users do via CSUM_MANGLED_0.
    """
    pseudo = src.packed + dst.packed + struct.pack("!BBH", 0, PROTO_UDP, len(segment))
    csum = internet_checksum(pseudo + segment)
    return csum or 0xFFFF


def parse_udp(segment: bytes) -> tuple[int, int, int, int, bytes]:
    """(sport, dport, length, checksum, payload) of a UDP datagram."""
    if len(segment) < UDP_HLEN:
        raise MalformedPacket(f"truncated UDP header ({len(segment)} bytes)")
    sport, dport, length, csum = struct.unpack("!HHHH", segment[:UDP_HLEN])
    if length < UDP_HLEN or length > len(segment):
        raise MalformedPacket(f"UDP length {length} does not fit {len(segment)} bytes")
    return sport, dport, length, csum, segment[UDP_HLEN:length]


def udp_checksum_ok(src: IPv4Address, dst: IPv4Address, segment: bytes) -> bool:
    """True if the checksum is absent (0 over IPv4) or verifies."""
    if segment[6:8] == b"\x00\x00":
        return True
    pseudo = src.packed + dst.packed + struct.pack("!BBH", 0, PROTO_UDP, len(segment))
    return internet_checksum(pseudo + segment) == 0


def ecn_decapsulate(outer_tos: int, inner: bytes) -> bytes | None:
    """INET_ECN_decapsulate for an IPv4 inner packet: returns the inner bytes to deliver, or
    None when the kernel drops it (outer CE over a Not-ECT inner packet).

    An outer CE mark is pushed into an ECN-capable inner header (IP_ECN_set_ce), which changes
    the inner TOS byte and its header checksum; everything else stays untouched.
    """
    if outer_tos & ECN_MASK != ECN_CE or len(inner) < IPV4_HLEN or inner[0] >> 4 != 4:
        return inner
    inner_ecn = inner[1] & ECN_MASK
    if inner_ecn == 0:
        return None
    if inner_ecn == ECN_CE:
        return inner
    hlen = (inner[0] & 0x0F) * 4
    header = bytearray(inner[:hlen])
    header[1] |= ECN_CE
    header[10:12] = b"\x00\x00"
    header[10:12] = struct.pack("!H", internet_checksum(bytes(header)))
    return bytes(header) + inner[hlen:]
