"""Pod MTU per encapsulation (felix) and what the kernel does with a packet too big for a path.

``pod_mtu`` follows felix/dataplane/linux/int_dataplane.go ``ConfigureDefaultMTUs``: a zero
knob means host MTU minus the mode's overhead (IPIP 20, VXLAN 50, WireGuard 60).
``check_mtu`` follows ip_forward / ip_fragment: a packet that fits is sent; a bigger one with
DF clear is fragmented like ``ip_do_fragment``; with DF set it is dropped and an ICMP
"fragmentation needed" (type 3 code 4, next-hop MTU) goes back to the sender, built like
net/ipv4/icmp.c ``__icmp_send``.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from ipaddress import IPv4Address
from typing import Literal

from tracer.encap import ipv4
from tracer.errors import InputError

OVERHEADS = {"ipip": 20, "vxlan": 50, "wireguard": 60}
ICMP_DEST_UNREACH = 3
ICMP_FRAG_NEEDED = 4
ICMP_HLEN = 8
ICMP_ERROR_MAX = 576              # icmp.c: the error datagram never exceeds 576 bytes
IPTOS_TOS_MASK = 0x1E
IPTOS_PREC_INTERNETCONTROL = 0xC0
IPOPT_COPY = 0x80
IPOPT_END = 0
IPOPT_NOOP = 1


def pod_mtu(mode: str | None, host_mtu: int = 1500, configured: int = 0) -> int:
    """The MTU felix gives pod interfaces and the tunnel device for ``mode``."""
    if host_mtu <= 0:
        raise InputError(f"host MTU must be positive, got {host_mtu}")
    if mode in (None, "", "none"):
        return configured or host_mtu
    if mode not in OVERHEADS:
        raise InputError(f"unknown encapsulation {mode!r} (expected one of "
                         f"{', '.join(sorted(OVERHEADS))} or none)")
    return configured or host_mtu - OVERHEADS[mode]


@dataclass(frozen=True)
class MtuResult:
    """Verdict of one MTU check, with the bytes the kernel would emit."""

    verdict: Literal["fits", "fragment", "drop"]
    packet_len: int
    path_mtu: int
    reason: str = ""
    fragments: tuple[bytes, ...] = ()
    icmp: bytes | None = None         # the frag-needed error sent back to the sender

    @property
    def fits(self) -> bool:
        return self.verdict == "fits"


def check_mtu(packet_len: int, df: bool, path_mtu: int, *, packet: bytes | None = None,
              router_ip: IPv4Address | None = None, ident: int | None = None) -> MtuResult:
    """Decide fits / fragment / drop. With ``packet`` the fragments are built; with ``packet``
    and ``router_ip`` (the address the error is sent from) the ICMP error is built too."""
    if packet_len <= path_mtu:
        return MtuResult("fits", packet_len, path_mtu)
    if not df:
        frags = tuple(fragment(packet, path_mtu)) if packet is not None else ()
        return MtuResult("fragment", packet_len, path_mtu,
                         reason=f"{packet_len} > MTU {path_mtu}, DF clear: fragmented",
                         fragments=frags)
    icmp = None
    if packet is not None and router_ip is not None:
        icmp = frag_needed(packet, path_mtu, router_ip, ident=ident)
    return MtuResult("drop", packet_len, path_mtu,
                     reason=f"{packet_len} > MTU {path_mtu} with DF set: ICMP frag needed "
                            f"(next-hop MTU {path_mtu})", icmp=icmp)


def frag_needed(packet: bytes, mtu: int, router_ip: IPv4Address, *,
                ident: int | None = None) -> bytes:
    """ICMP type 3 code 4 from ``router_ip`` back to the packet's source.

    icmp.c: TOS = original TOS bits | 0xc0 (internetwork control), TTL 64, DF clear (the
    ICMP socket uses IP_PMTUDISC_DONT), the quote is as much of the original datagram as fits
    in 576 bytes. The IP ID comes from ``__ip_select_ident`` in the kernel (random key), so
    it is derived here unless ``ident`` pins it.
    """
    orig = ipv4.parse_header(packet)
    quote = packet[:orig.total_length][:ICMP_ERROR_MAX - ipv4.IPV4_HLEN - ICMP_HLEN]
    body = struct.pack("!BBHHH", ICMP_DEST_UNREACH, ICMP_FRAG_NEEDED, 0, 0, mtu) + quote
    body = body[:2] + struct.pack("!H", ipv4.internet_checksum(body)) + body[4:]
    tos = (orig.tos & IPTOS_TOS_MASK) | IPTOS_PREC_INTERNETCONTROL
    if ident is None:
        ident = ipv4.flow_ident(router_ip.packed, orig.src.packed, b"\x01")
    return ipv4.build_header(router_ip, orig.src, ipv4.PROTO_ICMP, len(body), tos=tos,
                             ident=ident) + body


def fragment(packet: bytes, mtu: int) -> list[bytes]:
    """ip_do_fragment (slow path): 8-byte aligned pieces sharing the ID; the first keeps all
    options, later ones keep only 'copied' options (the rest become NOOPs, same length, as
    ip_options_fragment does); MF on all but the last unless the original had MF."""
    hdr = ipv4.parse_header(packet)
    if hdr.df:
        raise InputError("cannot fragment a packet with DF set")
    hlen = hdr.header_length
    chunk = (mtu - hlen) & ~7
    if chunk <= 0:
        raise InputError(f"MTU {mtu} leaves no room for data after a {hlen}-byte header")
    payload = packet[hlen:hdr.total_length]
    later_options = _copied_options_only(hdr.options)
    pieces = []
    for start in range(0, len(payload), chunk):
        data = payload[start:start + chunk]
        last = start + chunk >= len(payload)
        more = hdr.mf or not last
        offset = (hdr.frag_offset + start) // 8
        options = hdr.options if start == 0 else later_options
        pieces.append(ipv4.build_header(hdr.src, hdr.dst, hdr.protocol, len(data), ttl=hdr.ttl,
                                        tos=hdr.tos, ident=hdr.ident,
                                        flags_frag=(ipv4.IP_MF if more else 0) | offset,
                                        options=options) + data)
    return pieces


def _copied_options_only(options: bytes) -> bytes:
    out = bytearray(options)
    i = 0
    while i < len(out):
        kind = out[i]
        if kind == IPOPT_END:
            break
        if kind == IPOPT_NOOP:
            i += 1
            continue
        length = out[i + 1] if i + 1 < len(out) else 1
        length = max(length, 2)
        if not kind & IPOPT_COPY:
            out[i:i + length] = bytes([IPOPT_NOOP]) * min(length, len(out) - i)
        i += length
    return bytes(out)
