"""IPv4 and L4 headers of many datagrams at once: numpy gathers, one per field.

The checks, in the kernel's order:

- ``ip_rcv_core`` (net/ipv4/ip_input.c): at least 20 bytes (``pskb_may_pull``), version 4
  and ihl >= 5, the whole header present, ``ip_fast_csum`` over it is 0, then
  ``skb->len >= tot_len >= ihl*4``. A failure drops the packet before netfilter: reason
  category *malformed*.
- conntrack's L4 readers (nf_conntrack_proto_{tcp,udp,icmp}.c ``*_error``): a TCP header
  needs 20 bytes and a data offset between 20 and the segment length ("truncated packet"),
  UDP 8 bytes and a length field between 8 and the datagram ("truncated/malformed
  packet"), ICMP 8 bytes ("short packet"). The brief counts these as malformed too.

``cap`` is how many bytes the file holds from the IPv4 header on, ``wire`` how many were on
the wire. A header the wire had but the file lacks (a snap length) is ``SNAPPED``, not
malformed: the kernel saw a good packet, the capture just does not show it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tracer import protocols as p
from tracer.capture.columns import Reason
from tracer.capture.link import be16, be32, gather8, gather16, gather32, rows
from tracer.dataplane.batch import NO_PORT, PACKET_DTYPE

IP_MF, IP_DF, IP_OFFSET = 0x2000, 0x4000, 0x1FFF
# ICMP types whose header carries an identifier (echo, timestamp, info, address mask) and
# those that quote the offending datagram (RFC 792 errors).
ICMP_ID_TYPES = (0, 8, 13, 14, 15, 16, 17, 18)
ICMP_ERROR_TYPES = (3, 4, 5, 11, 12)
L4_MIN_HEADER = {p.TCP: 20, p.UDP: 8, p.UDPLITE: 8, p.ICMP: 8, p.SCTP: 12}


@dataclass
class Parsed:
    """Header fields of each datagram (rows of ``packets`` are PACKET_DTYPE)."""

    packets: np.ndarray
    reason: np.ndarray          # uint8 Reason
    ip_id: np.ndarray           # int64
    frag_off: np.ndarray        # int64, flags + offset word
    tos: np.ndarray             # int64
    hlen: np.ndarray            # int64
    l4: np.ndarray              # int64, absolute offset of the L4 header in the buffer
    l4_cap: np.ndarray          # int64, bytes of the L4 part the buffer holds
    l4_len: np.ndarray          # int64, bytes of the L4 part on the wire (tot_len - hlen)

    @property
    def fragment(self) -> np.ndarray:
        return (self.frag_off & (IP_MF | IP_OFFSET)) != 0


def _checksum_ok(buf: np.ndarray, ip: np.ndarray, l3: np.ndarray, ihl: np.ndarray) -> np.ndarray:
    """ip_fast_csum over the header: the ones' complement sum of its 16-bit words is 0xffff."""
    total = ip.view(">u2").sum(axis=1, dtype=np.int64)
    more = np.flatnonzero(ihl > 5)                # options: the rest of the header, 40 bytes
    if len(more):
        opts = rows(buf, l3[more] + 20, 40)
        owords = opts.view(">u2").astype(np.int64)
        owords[np.arange(20) >= (ihl[more, None] - 5) * 2] = 0
        total[more] += owords.sum(axis=1)
    while True:
        carry = total >> 16
        if not carry.any():
            break
        total = (total & 0xFFFF) + carry
    return total == 0xFFFF


def parse_ipv4(buf: np.ndarray, l3: np.ndarray, cap: np.ndarray, wire: np.ndarray) -> Parsed:
    """Fields of the IPv4 datagrams starting at ``l3`` (absolute offsets into ``buf``)."""
    n = len(l3)
    pk = np.zeros(n, PACKET_DTYPE)
    for name in ("sport", "dport", "tcp_flags", "icmp_type", "icmp_code", "inner_sport",
                 "inner_dport"):
        pk[name] = NO_PORT
    pk["iif"] = -1
    reason = np.zeros(n, np.uint8)

    ip = rows(buf, l3, 20)
    b0 = ip[:, 0].astype(np.int64)
    hlen = (b0 & 0x0F) * 4
    tot_len = be16(ip, 2)
    frag = be16(ip, 6)

    def flag(cond, why):           # the first failing check names the row
        reason[(reason == 0) & cond] = why

    flag(wire < 20, Reason.TRUNCATED_IP_HEADER)
    flag(cap < 20, Reason.SNAPPED)
    flag((b0 >> 4) != 4, Reason.BAD_VERSION)
    flag(hlen < 20, Reason.BAD_IHL)
    flag(hlen > wire, Reason.TRUNCATED_IP_HEADER)
    flag(hlen > cap, Reason.SNAPPED)
    live = np.flatnonzero(reason == 0)
    bad_sum = np.zeros(n, bool)
    bad_sum[live] = ~_checksum_ok(buf, ip[live], l3[live], b0[live] & 0x0F)
    flag(bad_sum, Reason.BAD_IP_CHECKSUM)
    flag((tot_len > wire) | (tot_len < hlen), Reason.BAD_TOTAL_LENGTH)

    pk["saddr"] = be32(ip, 12)
    pk["daddr"] = be32(ip, 16)
    proto = ip[:, 9]
    pk["protocol"] = proto
    pk["ttl"] = ip[:, 8]
    pk["tot_len"] = tot_len
    pk["df"] = (frag & IP_DF) != 0

    l4 = l3 + hlen
    l4_len = tot_len - hlen
    l4_cap = np.minimum(cap, tot_len) - hlen
    parsed = Parsed(pk, reason, be16(ip, 4), frag, ip[:, 1].astype(np.int64), hlen,
                    l4, l4_cap, l4_len)
    # Only the first fragment carries an L4 header; reassembly re-parses the whole datagram.
    first = (reason == 0) & ((frag & IP_OFFSET) == 0)
    whole = first & ((frag & IP_MF) == 0)
    pk["payload_len"] = np.where(reason == 0, np.maximum(l4_len, 0), 0)
    _l4(buf, parsed, first, whole, proto)
    return parsed


def _l4(buf, parsed: Parsed, first, whole, proto) -> None:
    pk, reason = parsed.packets, parsed.reason
    l4_len, l4_cap = parsed.l4_len, parsed.l4_cap
    known = np.flatnonzero(first & np.isin(proto, list(L4_MIN_HEADER)))
    block = rows(buf, parsed.l4[known], 20)             # every L4 header at once
    kinds = proto[known]
    for number, need in L4_MIN_HEADER.items():
        pick = np.flatnonzero(kinds == number)
        if not len(pick):
            continue
        rows_ = known[pick]
        short_wire = whole[rows_] & (l4_len[rows_] < need)
        reason[rows_[short_wire]] = Reason.TRUNCATED_L4_HEADER
        snapped = (l4_cap[rows_] < need) & ~short_wire
        reason[rows_[snapped & whole[rows_]]] = Reason.SNAPPED
        keep = l4_cap[rows_] >= need                      # fields of first fragments too
        rows_, hdr = rows_[keep], block[pick[keep]]
        pk["sport"][rows_] = be16(hdr, 0)
        pk["dport"][rows_] = be16(hdr, 2)
        if number == p.TCP:
            _tcp(parsed, rows_, hdr, whole[rows_])
        elif number in (p.UDP, p.UDPLITE):
            pk["payload_len"][rows_] = np.maximum(l4_len[rows_] - 8, 0)
            if number == p.UDP:
                ulen = be16(hdr, 4)
                bad = whole[rows_] & ((ulen < 8) | (ulen > l4_len[rows_]))
                reason[rows_[bad & (reason[rows_] == 0)]] = Reason.BAD_UDP_LENGTH
                pk["payload_len"][rows_] = np.where(whole[rows_] & ~bad, ulen - 8,
                                                    pk["payload_len"][rows_])
        elif number == p.ICMP:
            _icmp(buf, parsed, rows_, hdr)
        else:
            pk["payload_len"][rows_] = np.maximum(l4_len[rows_] - need, 0)


def _tcp(parsed: Parsed, rows_, hdr, whole) -> None:
    pk = parsed.packets
    doff = (hdr[:, 12].astype(np.int64) >> 4) * 4
    pk["seq"][rows_] = be32(hdr, 4)
    pk["ack_seq"][rows_] = be32(hdr, 8)
    pk["tcp_flags"][rows_] = hdr[:, 13]
    pk["window"][rows_] = be16(hdr, 14)
    seg = parsed.l4_len[rows_]
    bad = whole & ((doff < 20) | (doff > seg))
    parsed.reason[rows_[bad & (parsed.reason[rows_] == 0)]] = Reason.BAD_TCP_HEADER_LENGTH
    pk["payload_len"][rows_] = np.where(bad, 0, np.maximum(seg - doff, 0))


def _icmp(buf, parsed: Parsed, rows_, hdr) -> None:
    pk = parsed.packets
    kind = hdr[:, 0]
    pk["icmp_type"][rows_], pk["icmp_code"][rows_] = kind, hdr[:, 1]
    pk["sport"][rows_], pk["dport"][rows_] = NO_PORT, NO_PORT
    with_id = np.isin(kind, ICMP_ID_TYPES)
    pk["icmp_id"][rows_[with_id]] = be16(hdr[with_id], 4)
    pk["payload_len"][rows_] = np.maximum(parsed.l4_len[rows_] - 8, 0)
    # An error quotes the offending header and 8 bytes of its payload (RFC 792).
    quoted = np.isin(kind, ICMP_ERROR_TYPES) & (parsed.l4_cap[rows_] >= 8 + 20)
    q_rows = rows_[quoted]
    if not len(q_rows):
        return
    q = parsed.l4[q_rows] + 8
    qb0 = gather8(buf, q)
    q_hlen = (qb0 & 0x0F) * 4
    good = ((qb0 >> 4) == 4) & (q_hlen >= 20)
    q_rows, q, q_hlen = q_rows[good], q[good], q_hlen[good]
    pk["has_inner"][q_rows] = 1
    pk["inner_saddr"][q_rows] = gather32(buf, q + 12)
    pk["inner_daddr"][q_rows] = gather32(buf, q + 16)
    q_proto = gather8(buf, q + 9)
    pk["inner_protocol"][q_rows] = q_proto
    ported = (np.isin(q_proto, sorted(p.PORTED))
              & (parsed.l4_cap[q_rows] >= 8 + q_hlen + 4)
              & ((gather16(buf, q + 6) & IP_OFFSET) == 0))
    pk["inner_sport"][q_rows] = np.where(ported, gather16(buf, q + q_hlen), NO_PORT)
    pk["inner_dport"][q_rows] = np.where(ported, gather16(buf, q + q_hlen + 2), NO_PORT)
