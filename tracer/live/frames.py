"""Raw IPv4 bytes from a TUN device <-> the pipeline's :class:`Packet` record.

The pipeline reads and rewrites header fields only; the payload never leaves the bytes. So a
packet is parsed once on the way in, and on the way out the original bytes are patched with
whatever the pipeline changed (addresses and ports after NAT, the TTL each routing hop took,
the quoted header of a de-NATed ICMP error), with the checksums those fields cover redone.
"""

from __future__ import annotations

import struct
from ipaddress import IPv4Address

from tracer.dataplane.packet import Packet
from tracer.encap.ipv4 import IP_DF, IP_OFFSET_MASK, MalformedPacket, internet_checksum
from tracer.protocols import ACK, FIN, ICMP, PORTED, RST, SYN, TCP, UDP

ICMP_ERROR_TYPES = frozenset({3, 4, 5, 11, 12})   # errors quote the offending datagram
ICMP_ECHO_TYPES = frozenset({0, 8})
ICMP_UNREACH, ICMP_FRAG_NEEDED = 3, 4
REJECT_CODES = {                                 # iptables REJECT --reject-with -> ICMP code
    "icmp-net-unreachable": 0, "icmp-host-unreachable": 1, "icmp-proto-unreachable": 2,
    "icmp-port-unreachable": 3, "icmp-net-prohibited": 9, "icmp-host-prohibited": 10,
    "icmp-admin-prohibited": 13}
ICMP_ERROR_QUOTE = 576 - 28                        # icmp.c: the error fits in 576 bytes


def parse(data: bytes, *, quoted: bool = False) -> Packet:
    """The header fields of the IPv4 datagram ``data``; raise :class:`MalformedPacket`.

    ``quoted``: ``data`` is the datagram an ICMP error quotes, so it may be cut short after
    the first 8 bytes of its transport header and its total length may exceed what is there.
    """
    if len(data) < 20:
        raise MalformedPacket(f"truncated IPv4 header ({len(data)} bytes)")
    ver_ihl, _tos, total, _ident, frag, ttl, proto = struct.unpack_from("!BBHHHBB", data)
    if ver_ihl >> 4 != 4:
        raise MalformedPacket(f"IP version {ver_ihl >> 4}, expected 4")
    hlen = (ver_ihl & 0x0F) * 4
    if hlen < 20 or len(data) < hlen or total < hlen or (total > len(data) and not quoted):
        raise MalformedPacket(f"bad IPv4 lengths (header {hlen}, total {total}, "
                              f"{len(data)} bytes read)")
    src, dst = IPv4Address(data[12:16]), IPv4Address(data[16:20])
    fields: dict = dict(src=src, dst=dst, protocol=proto, ttl=ttl, length=total,
                        df=bool(frag & IP_DF))
    if frag & IP_OFFSET_MASK:
        return Packet(**fields)                    # a later fragment: no transport header
    l4 = data[hlen:total] if not quoted else data[hlen:]
    if proto in PORTED:
        if len(l4) < 4:
            raise MalformedPacket(f"truncated {proto} header")
        fields["sport"], fields["dport"] = struct.unpack_from("!HH", l4)
        if proto == TCP and len(l4) >= 16:
            seq, ack, off, flags, window = struct.unpack_from("!IIBBH", l4, 4)
            fields.update(seq=seq, ack_seq=ack, tcp_flags=flags & 0x3F, window=window,
                          payload_len=max(len(l4) - (off >> 4) * 4, 0))
            if flags & SYN and not quoted:
                fields["wscale"] = tcp_window_scale(data)
        elif proto == TCP and not quoted:
            raise MalformedPacket("truncated TCP header")
        elif proto == UDP:
            fields["payload_len"] = max(len(l4) - 8, 0)
    elif proto == ICMP:
        if len(l4) < 8:
            raise MalformedPacket("truncated ICMP header")
        icmp_type, code = l4[0], l4[1]
        fields.update(icmp_type=icmp_type, icmp_code=code)
        if icmp_type in ICMP_ECHO_TYPES:
            fields["icmp_id"] = struct.unpack_from("!H", l4, 4)[0]
        elif icmp_type in ICMP_ERROR_TYPES and not quoted:
            fields["inner"] = parse(l4[8:], quoted=True)
    return Packet(**fields)


def rewrite(data: bytes, before: Packet, after: Packet, *, partial: bool = False) -> bytes:
    """``data`` (whose fields are ``before``) with the fields the pipeline changed to ``after``.

    ``partial``: the transport checksum is left to the receiver (a virtio_net_hdr with
    NEEDS_CSUM), so the field holds only the pseudo-header sum: it follows the addresses."""
    buf = bytearray(data)
    hlen = (buf[0] & 0x0F) * 4
    l4_changed = _patch_header(buf, 0, hlen, before, after)
    if before.inner is not None and after.inner is not None and before.inner != after.inner:
        inner_at = hlen + 8
        inner_hlen = (buf[inner_at] & 0x0F) * 4
        _patch_header(buf, inner_at, inner_hlen, before.inner, after.inner)
        l4_changed = True
    if l4_changed and partial:
        _pseudo_sum_follows(buf, hlen, after.protocol, before, after)
    elif l4_changed:
        _transport_checksum(buf, hlen, after.protocol)
    return bytes(buf)


def _pseudo_sum_follows(buf: bytearray, hlen: int, protocol: int, before: Packet,
                        after: Packet) -> None:
    """Move a partial (pseudo-header only, not complemented) TCP/UDP checksum to the new
    addresses (RFC 1624 arithmetic); ports are in the part the receiver sums itself."""
    offset = {TCP: 16, UDP: 6}.get(protocol)
    if offset is None or len(buf) < hlen + offset + 2:
        return
    total = struct.unpack_from("!H", buf, hlen + offset)[0]
    for old, new in ((before.src, after.src), (before.dst, after.dst)):
        o, n = old.packed, new.packed
        for i in (0, 2):
            total += (~((o[i] << 8) | o[i + 1]) & 0xFFFF) + ((n[i] << 8) | n[i + 1])
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    struct.pack_into("!H", buf, hlen + offset, total)


def decrement_ttl(data: bytes, hops: int) -> bytes:
    """``data`` with its TTL lowered by ``hops``: the header checksum is updated in place
    (RFC 1624), the rest is untouched (TTL is not in any transport checksum)."""
    if hops <= 0:
        return data
    buf = bytearray(data)
    old = (buf[8] << 8) | buf[9]
    buf[8] = max(buf[8] - hops, 0)
    new = (buf[8] << 8) | buf[9]
    total = (~((buf[10] << 8) | buf[11]) & 0xFFFF) + (~old & 0xFFFF) + new
    total = (total & 0xFFFF) + (total >> 16)
    total = (total & 0xFFFF) + (total >> 16)
    struct.pack_into("!H", buf, 10, ~total & 0xFFFF)
    return bytes(buf)


def _patch_header(buf: bytearray, at: int, hlen: int, before: Packet, after: Packet) -> bool:
    """Patch one IPv4 header (and its ports or echo id) in place; return whether a field the
    transport checksum covers changed. The IP header checksum is redone here."""
    l4_changed = False
    if before.src != after.src:
        buf[at + 12:at + 16] = after.src.packed
        l4_changed = True
    if before.dst != after.dst:
        buf[at + 16:at + 20] = after.dst.packed
        l4_changed = True
    buf[at + 8] = max(min(after.ttl, 255), 0)
    l4 = at + hlen
    if after.protocol in PORTED and len(buf) >= l4 + 4:
        if (before.sport, before.dport) != (after.sport, after.dport):
            struct.pack_into("!HH", buf, l4, after.sport or 0, after.dport or 0)
            l4_changed = True
    elif (after.protocol == ICMP and after.icmp_type in ICMP_ECHO_TYPES
          and before.icmp_id != after.icmp_id and len(buf) >= l4 + 8):
        struct.pack_into("!H", buf, l4 + 4, after.icmp_id)
        l4_changed = True
    struct.pack_into("!H", buf, at + 10, 0)
    struct.pack_into("!H", buf, at + 10, internet_checksum(bytes(buf[at:at + hlen])))
    return l4_changed


def _transport_checksum(buf: bytearray, hlen: int, protocol: int) -> None:
    """Redo the outer transport checksum over the whole segment (after NAT)."""
    total = struct.unpack_from("!H", buf, 2)[0]
    segment = buf[hlen:total]
    if protocol == TCP and len(segment) >= 20:
        offset = 16
    elif protocol == UDP and len(segment) >= 8:
        if struct.unpack_from("!H", segment, 6)[0] == 0:
            return                                  # UDP without a checksum stays without
        offset = 6
    elif protocol == ICMP and len(segment) >= 4:
        struct.pack_into("!H", segment, 2, 0)
        struct.pack_into("!H", segment, 2, internet_checksum(bytes(segment)))
        buf[hlen:total] = segment
        return
    else:
        return
    struct.pack_into("!H", segment, offset, 0)
    pseudo = buf[12:20] + struct.pack("!BBH", 0, protocol, len(segment))
    csum = internet_checksum(bytes(pseudo) + bytes(segment))
    if protocol == UDP and csum == 0:
        csum = 0xFFFF
    struct.pack_into("!H", segment, offset, csum)
    buf[hlen:total] = segment


def icmp_error(data: bytes, router: IPv4Address, icmp_type: int, code: int,
               rest: int = 0) -> bytes:
    """The ICMP error a router at ``router`` sends back about datagram ``data`` (RFC 792:
    the quote is the datagram's start, as much as fits in 576 bytes)."""
    src = IPv4Address(data[12:16])
    body = struct.pack("!BBHI", icmp_type, code, 0, rest) + data[:ICMP_ERROR_QUOTE]
    body = body[:2] + struct.pack("!H", internet_checksum(body)) + body[4:]
    head = struct.pack("!BBHHHBBH4s4s", 0x45, 0xC0, 20 + len(body), 0, 0, 64, ICMP, 0,
                       router.packed, src.packed)
    head = head[:10] + struct.pack("!H", internet_checksum(head)) + head[12:]
    return head + body


def tcp_reset(data: bytes) -> bytes | None:
    """The RST ``REJECT --reject-with tcp-reset`` answers TCP segment ``data`` with (the
    kernel's nf_reject_ipv4.c), or None where it sends nothing: to a RST, or a fragment.

    It comes from the segment's destination: with the segment's ACK set, RST with that
    acknowledgement as its sequence; otherwise RST|ACK acknowledging all the segment held."""
    hlen = (data[0] & 0x0F) * 4
    if data[9] != TCP or struct.unpack_from("!H", data, 6)[0] & IP_OFFSET_MASK \
            or len(data) < hlen + 20:
        return None
    sport, dport, seq, ack, off, flags = struct.unpack_from("!HHIIBB", data, hlen)
    if flags & RST:
        return None
    if flags & ACK:
        reply_seq, reply_ack, reply_flags = ack, 0, RST
    else:
        length = struct.unpack_from("!H", data, 2)[0] - hlen - (off >> 4) * 4
        consumed = length + bool(flags & SYN) + bool(flags & FIN)
        reply_seq, reply_ack, reply_flags = 0, (seq + consumed) & 0xFFFFFFFF, RST | ACK
    src, dst = data[16:20], data[12:16]
    tcp = bytearray(struct.pack("!HHIIBBHHH", dport, sport, reply_seq, reply_ack, 5 << 4,
                                reply_flags, 0, 0, 0))
    pseudo = src + dst + struct.pack("!BBH", 0, TCP, len(tcp))
    struct.pack_into("!H", tcp, 16, internet_checksum(pseudo + bytes(tcp)))
    head = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp), 0, IP_DF, 64, TCP, 0, src, dst)
    head = head[:10] + struct.pack("!H", internet_checksum(head)) + head[12:]
    return head + bytes(tcp)


def tcp_window_scale(data: bytes) -> int | None:
    """The window-scale shift a TCP SYN announces in its options (RFC 7323), or None."""
    hlen = (data[0] & 0x0F) * 4
    if len(data) < hlen + 20:
        return None
    end = min(hlen + (data[hlen + 12] >> 4) * 4, len(data))
    at = hlen + 20
    while at < end:
        kind = data[at]
        if kind == 0:                                   # end of options
            return None
        if kind == 1:                                   # no-op padding
            at += 1
            continue
        if at + 1 >= end or data[at + 1] < 2:
            return None
        if kind == 3 and data[at + 1] == 3 and at + 2 < end:
            return data[at + 2]
        at += data[at + 1]
    return None


# virtio_net_hdr (linux/virtio_net.h), little-endian on x86: flags, gso_type, hdr_len,
# gso_size, csum_start, csum_offset. With IFF_VNET_HDR every TUN read and write starts with it.
VNET_HDR_LEN = 10
VNET_NEEDS_CSUM = 0x01
PLAIN_VNET_HDR = bytes(VNET_HDR_LEN)            # a whole packet, checksums complete


def split_vnet(data: bytes) -> tuple[bytes, bytes, int, bool]:
    """(header, datagram, GSO segment size or 0, checksum left to the receiver)."""
    if len(data) < VNET_HDR_LEN:
        raise MalformedPacket(f"truncated virtio_net_hdr ({len(data)} bytes)")
    flags, gso_type, _hdr_len, gso_size = struct.unpack_from("<BBHH", data)
    return (data[:VNET_HDR_LEN], data[VNET_HDR_LEN:], gso_size if gso_type else 0,
            bool(flags & VNET_NEEDS_CSUM))


def segment_length(data: bytes, gso_size: int) -> int:
    """The IP length of one segment a GSO packet stands for (what MTU checks see, as the
    kernel's ``skb_gso_validate_network_len`` does)."""
    hlen = (data[0] & 0x0F) * 4
    l4 = hlen + ((data[hlen + 12] >> 4) * 4 if data[9] == TCP and len(data) > hlen + 12 else 8)
    return min(struct.unpack_from("!H", data, 2)[0], l4 + gso_size)
