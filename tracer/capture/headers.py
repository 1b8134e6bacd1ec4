"""IPv4 and L4 headers of many datagrams at once: two numpy gathers (every IPv4 header, every
L4 header, as (n, 20) byte blocks), then one compiled pass that checks and decodes them.

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

import numba
import numpy as np

from tracer import protocols as p
from tracer.capture.columns import Reason
from tracer.capture.link import be16, gather8, gather16, gather32, rows
from tracer.dataplane.batch import NO_PORT, PACKET_DTYPE

IP_MF, IP_DF, IP_OFFSET = 0x2000, 0x4000, 0x1FFF
# ICMP types whose header carries an identifier (echo, timestamp, info, address mask) and
# those that quote the offending datagram (RFC 792 errors).
ICMP_ID_TYPES = (0, 8, 13, 14, 15, 16, 17, 18)
ICMP_ERROR_TYPES = (3, 4, 5, 11, 12)
L4_MIN_HEADER = {p.TCP: 20, p.UDP: 8, p.UDPLITE: 8, p.ICMP: 8, p.SCTP: 12}
# numba sees module globals as constants: the reason codes and protocol numbers, spelled out.
TCP, UDP, UDPLITE, ICMP, SCTP = p.TCP, p.UDP, p.UDPLITE, p.ICMP, p.SCTP
(TRUNCATED_IP_HEADER, SNAPPED, BAD_VERSION, BAD_IHL, BAD_IP_CHECKSUM, BAD_TOTAL_LENGTH,
 TRUNCATED_L4_HEADER, BAD_TCP_HEADER_LENGTH, BAD_UDP_LENGTH) = (
    int(Reason.TRUNCATED_IP_HEADER), int(Reason.SNAPPED), int(Reason.BAD_VERSION),
    int(Reason.BAD_IHL), int(Reason.BAD_IP_CHECKSUM), int(Reason.BAD_TOTAL_LENGTH),
    int(Reason.TRUNCATED_L4_HEADER), int(Reason.BAD_TCP_HEADER_LENGTH),
    int(Reason.BAD_UDP_LENGTH))
BAD_L4_MARK = 0xFFFFFFFF          # payload_len value _l4 uses to flag a bad L4 length


@dataclass
class Parsed:
    """Header fields of each datagram (rows of ``packets`` are PACKET_DTYPE)."""

    packets: np.ndarray
    reason: np.ndarray          # uint8 Reason
    ip_id: np.ndarray           # int64
    frag_off: np.ndarray        # int64, flags + offset word
    hlen: np.ndarray            # int64
    l4: np.ndarray              # int64, absolute offset of the L4 header in the buffer
    l4_cap: np.ndarray          # int64, bytes of the L4 part the buffer holds
    l4_len: np.ndarray          # int64, bytes of the L4 part on the wire (tot_len - hlen)

    @property
    def fragment(self) -> np.ndarray:
        return (self.frag_off & (IP_MF | IP_OFFSET)) != 0


@numba.njit(cache=True)
def _decode(ip, l4b, cap, wire, opt_sum, pk, reason, frag_off, l4_cap, l4_len, quoted):
    """Checks and fields of each datagram from its gathered IPv4 and L4 header blocks."""
    for i in range(ip.shape[0]):
        rec = pk[i]
        rec.sport = rec.dport = rec.tcp_flags = NO_PORT
        rec.icmp_type = rec.icmp_code = rec.inner_sport = rec.inner_dport = NO_PORT
        rec.iif = -1
        rec.seq = rec.ack_seq = rec.inner_saddr = rec.inner_daddr = rec.mark = 0
        rec.window = rec.icmp_id = 0
        rec.has_inner = rec.inner_protocol = 0
        rec.tstamp = 0.0
        b0 = np.int64(ip[i, 0])
        hlen = (b0 & 0x0F) * 4
        tot = (np.int64(ip[i, 2]) << 8) | ip[i, 3]
        frag = (np.int64(ip[i, 6]) << 8) | ip[i, 7]
        r = 0
        if wire[i] < 20:
            r = TRUNCATED_IP_HEADER
        elif cap[i] < 20:
            r = SNAPPED
        elif b0 >> 4 != 4:
            r = BAD_VERSION
        elif hlen < 20:
            r = BAD_IHL
        elif hlen > wire[i]:
            r = TRUNCATED_IP_HEADER
        elif hlen > cap[i]:
            r = SNAPPED
        else:
            total = opt_sum[i] if hlen > 20 else 0
            for w in range(10):
                total += (np.int64(ip[i, 2 * w]) << 8) | ip[i, 2 * w + 1]
            while total >> 16:
                total = (total & 0xFFFF) + (total >> 16)
            if total != 0xFFFF:
                r = BAD_IP_CHECKSUM
            elif tot > wire[i] or tot < hlen:
                r = BAD_TOTAL_LENGTH
        rec.saddr = (np.uint32(ip[i, 12]) << 24) | (np.uint32(ip[i, 13]) << 16) \
            | (np.uint32(ip[i, 14]) << 8) | np.uint32(ip[i, 15])
        rec.daddr = (np.uint32(ip[i, 16]) << 24) | (np.uint32(ip[i, 17]) << 16) \
            | (np.uint32(ip[i, 18]) << 8) | np.uint32(ip[i, 19])
        proto = ip[i, 9]
        rec.protocol = proto
        rec.ttl = ip[i, 8]
        rec.tot_len = tot
        rec.df = 1 if frag & IP_DF else 0
        frag_off[i] = frag
        seg = tot - hlen
        held = min(cap[i], tot) - hlen
        l4_len[i], l4_cap[i] = seg, held
        rec.payload_len = max(seg, 0) if r == 0 else 0
        first = r == 0 and (frag & IP_OFFSET) == 0
        whole = first and (frag & IP_MF) == 0
        need = 20 if proto == TCP else 8 if proto in (UDP, UDPLITE, ICMP) else \
            12 if proto == SCTP else 0
        if first and need:
            if whole and seg < need:
                r = TRUNCATED_L4_HEADER
            elif held < need:
                if whole:
                    r = SNAPPED
            else:
                _l4(l4b, i, rec, proto, seg, held, whole, quoted)
                if whole and rec.payload_len == BAD_L4_MARK:
                    rec.payload_len = 0
                    r = BAD_TCP_HEADER_LENGTH if proto == TCP else BAD_UDP_LENGTH
        reason[i] = r


@numba.njit(cache=True, inline="always")
def _l4(l4b, i, rec, proto, seg, held, whole, quoted):
    """Fields of one L4 header; a bad length on a whole datagram sets BAD_L4_MARK."""
    rec.sport = (np.int32(l4b[i, 0]) << 8) | l4b[i, 1]
    rec.dport = (np.int32(l4b[i, 2]) << 8) | l4b[i, 3]
    if proto == TCP:
        doff = (np.int64(l4b[i, 12]) >> 4) * 4
        rec.seq = (np.uint32(l4b[i, 4]) << 24) | (np.uint32(l4b[i, 5]) << 16) \
            | (np.uint32(l4b[i, 6]) << 8) | np.uint32(l4b[i, 7])
        rec.ack_seq = (np.uint32(l4b[i, 8]) << 24) | (np.uint32(l4b[i, 9]) << 16) \
            | (np.uint32(l4b[i, 10]) << 8) | np.uint32(l4b[i, 11])
        rec.tcp_flags = l4b[i, 13]
        rec.window = (np.uint16(l4b[i, 14]) << 8) | l4b[i, 15]
        if whole and (doff < 20 or doff > seg):
            rec.payload_len = BAD_L4_MARK
        else:
            rec.payload_len = max(seg - doff, 0)
    elif proto == UDP or proto == UDPLITE:
        ulen = (np.int64(l4b[i, 4]) << 8) | l4b[i, 5]
        if proto == UDP and whole and (ulen < 8 or ulen > seg):
            rec.payload_len = BAD_L4_MARK
        elif proto == UDP and whole:
            rec.payload_len = ulen - 8
        else:
            rec.payload_len = max(seg - 8, 0)
    elif proto == ICMP:
        kind = l4b[i, 0]
        rec.icmp_type, rec.icmp_code = kind, l4b[i, 1]
        rec.sport = rec.dport = NO_PORT
        if kind in (0, 8, 13, 14, 15, 16, 17, 18):          # ICMP_ID_TYPES
            rec.icmp_id = (np.uint16(l4b[i, 4]) << 8) | l4b[i, 5]
        rec.payload_len = max(seg - 8, 0)
        if kind in (3, 4, 5, 11, 12) and held >= 8 + 20:    # ICMP_ERROR_TYPES
            quoted[i] = True
    else:
        rec.payload_len = max(seg - 12, 0)


def parse_ipv4(buf: np.ndarray, l3: np.ndarray, cap: np.ndarray, wire: np.ndarray,
               out: np.ndarray | None = None) -> Parsed:
    """Fields of the IPv4 datagrams starting at ``l3`` (absolute offsets into ``buf``), decoded
    into ``out`` (PACKET_DTYPE rows, every field written) or a new array."""
    n = len(l3)
    ip = rows(buf, l3, 20)                          # every IPv4 header, one gather
    hlen = (ip[:, 0] & 0x0F).astype(np.int64) * 4
    more = np.flatnonzero(hlen > 20)                # options: the rest of the header
    opt_sum = np.zeros(n if len(more) else 1, np.int64)
    if len(more):
        opts = rows(buf, l3[more] + 20, 40).view(">u2").astype(np.int64)
        opts[np.arange(20) >= (hlen[more, None] - 20) // 2] = 0
        opt_sum[more] = opts.sum(axis=1)
    l4 = l3 + hlen
    l4b = rows(buf, l4, 20)                         # every L4 header, one gather
    pk = np.zeros(n, PACKET_DTYPE) if out is None else out
    reason = np.empty(n, np.uint8)
    frag, l4_cap, l4_len = (np.empty(n, np.int64) for _ in range(3))
    quoted = np.zeros(n, np.bool_)
    _decode(ip, l4b, np.asarray(cap, np.int64), np.asarray(wire, np.int64), opt_sum, pk,
            reason, frag, l4_cap, l4_len, quoted)
    parsed = Parsed(pk, reason, be16(ip, 4), frag, hlen, l4, l4_cap, l4_len)
    _icmp_quoted(buf, parsed, np.flatnonzero(quoted))
    return parsed


def _icmp_quoted(buf, parsed: Parsed, q_rows) -> None:
    """The datagram an ICMP error quotes: its header and 8 bytes of payload (RFC 792)."""
    if not len(q_rows):
        return
    pk = parsed.packets
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
