"""Link-layer headers, vectorised: where each frame's IPv4 header starts, or why it has none.

Layouts (tcpdump.org link-type pages): Ethernet with any number of 802.1Q (0x8100), 802.1ad
(0x88a8) or old QinQ (0x9100) tags; Linux cooked SLL (16 bytes, protocol at 14, packet type
at 0) and SLL2 (20 bytes, protocol at 0, interface index at 4, packet type at 10); raw IP
(version from the first nibble) and LINKTYPE_IPV4; BSD NULL (address family in the writer's
byte order) and LOOP (network byte order), where AF_INET is 2.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tracer.capture import columns as c

MAX_VLAN_TAGS = 8
AF_INET = 2


def gather8(buf: np.ndarray, pos: np.ndarray) -> np.ndarray:
    """``buf[pos]`` as int64. Callers mask rows whose bytes are not all there; a position past
    the end (only such rows have one) reads the last byte instead of failing."""
    if len(pos) and pos.max() >= len(buf):
        pos = np.minimum(pos, len(buf) - 1)
    return buf[pos].astype(np.int64)


def gather16(buf: np.ndarray, pos: np.ndarray) -> np.ndarray:
    """Big-endian 16-bit fields at ``pos``."""
    return (gather8(buf, pos) << 8) | gather8(buf, pos + 1)


def gather32(buf: np.ndarray, pos: np.ndarray) -> np.ndarray:
    return (gather16(buf, pos) << 16) | gather16(buf, pos + 2)


def rows(buf: np.ndarray, pos: np.ndarray, width: int) -> np.ndarray:
    """``width`` bytes from each position as one (n, width) uint8 array: a single gather over a
    sliding-window view, so every field after it is a column slice."""
    if len(buf) < width:
        buf = np.concatenate([buf, np.zeros(width, np.uint8)])
    view = np.lib.stride_tricks.sliding_window_view(buf, width)
    if len(pos) and pos.max() >= len(view):
        pos = np.minimum(pos, len(view) - 1)
    return view[pos]


def be16(block: np.ndarray, at: int) -> np.ndarray:
    """Big-endian 16-bit column ``at`` (even) of a :func:`rows` block, as int64: a byte-order
    view of the block, no per-byte arithmetic."""
    return block.view(">u2")[:, at // 2].astype(np.int64)


def be32(block: np.ndarray, at: int) -> np.ndarray:
    """Big-endian 32-bit column ``at`` (a multiple of 4; blocks are 4-byte multiples wide)."""
    return block.view(">u4")[:, at // 4].astype(np.int64)


@dataclass
class LinkLayer:
    """Per record: the IPv4 header's offset in the frame, or a skip reason."""

    l3_offset: np.ndarray       # int64
    skip: np.ndarray            # uint8, 0 or a columns.Skip
    ethertype: np.ndarray       # int32, -1 when the link type has none
    vlan: np.ndarray            # int16
    vlan_inner: np.ndarray      # int16
    pkttype: np.ndarray         # int8
    sll_ifindex: np.ndarray     # int32


def _ethertype_skip(ethertype: np.ndarray) -> np.ndarray:
    skip = np.full(len(ethertype), c.Skip.OTHER_ETHERTYPE, np.uint8)
    skip[ethertype == c.ETH_P_IP] = 0
    skip[ethertype == c.ETH_P_ARP] = c.Skip.ARP
    skip[ethertype == c.ETH_P_IPV6] = c.Skip.IPV6
    skip[ethertype < 0x0600] = c.Skip.LLC
    return skip


CHUNK = 1 << 16                  # records per pass: the temporaries stay in the cache


def decode(buf: np.ndarray, start: np.ndarray, caplen: np.ndarray,
           linktype: np.ndarray, big_endian: np.ndarray) -> LinkLayer:
    """``start``/``caplen``/``linktype``/``big_endian`` per record (``big_endian``: the byte
    order of the section, which the NULL link type's family field follows)."""
    n = len(start)
    out = LinkLayer(np.zeros(n, np.int64), np.full(n, c.Skip.UNSUPPORTED_LINKTYPE, np.uint8),
                    np.full(n, -1, np.int32), np.full(n, c.NO_VLAN, np.int16),
                    np.full(n, c.NO_VLAN, np.int16), np.full(n, -1, np.int8),
                    np.full(n, -1, np.int32))
    for first in range(0, n, CHUNK):
        part = slice(first, first + CHUNK)
        view = LinkLayer(*(getattr(out, f)[part] for f in LinkLayer.__dataclass_fields__))
        _decode(buf, start[part], caplen[part], linktype[part], big_endian[part], view)
    return out


def _decode(buf, start, caplen, linktype, big_endian, out: LinkLayer) -> None:
    n = len(start)
    uniform = len(linktype) and (linktype == linktype[0]).all()
    for lt in ([linktype[0]] if uniform else np.unique(linktype)):
        sel = slice(None) if uniform else np.flatnonzero(linktype == lt)
        if lt == c.LINKTYPE_ETHERNET:
            _ethernet(buf, start[sel], caplen[sel], sel, out)
        elif lt in (c.LINKTYPE_LINUX_SLL, c.LINKTYPE_LINUX_SLL2):
            _sll(buf, start[sel], caplen[sel], sel, out, lt == c.LINKTYPE_LINUX_SLL2)
        elif lt in (c.LINKTYPE_RAW, c.LINKTYPE_IPV4):
            version = gather8(buf, start[sel]) >> 4
            skip = np.where(version == 6, c.Skip.IPV6, 0).astype(np.uint8)
            if lt == c.LINKTYPE_IPV4:
                skip[:] = 0               # IPv4 by definition; a bad version is malformed
            skip[caplen[sel] < 1] = c.Skip.TRUNCATED_LINK_HEADER
            out.l3_offset[sel] = 0
            out.skip[sel] = skip
        elif lt == c.LINKTYPE_IPV6:
            out.skip[sel] = c.Skip.IPV6
        elif lt in (c.LINKTYPE_NULL, c.LINKTYPE_LOOP):
            _null(buf, start[sel], caplen[sel], sel, out,
                  np.ones(len(start[sel]), bool) if lt == c.LINKTYPE_LOOP else big_endian[sel])


def _ethernet(buf, start, caplen, sel, out: LinkLayer) -> None:
    off = np.full(len(start), 12, np.int64)
    ok = caplen >= 14
    ethertype = be16(rows(buf, start + 12, 2), 0)
    vlans = [np.full(len(start), c.NO_VLAN, np.int16) for _ in range(2)]
    for depth in range(MAX_VLAN_TAGS):
        tagged = ok & ((ethertype == c.ETH_P_8021Q) | (ethertype == c.ETH_P_8021AD)
                       | (ethertype == c.ETH_P_QINQ1))
        if not tagged.any():
            break
        ok &= ~tagged | (caplen >= off + 6)
        tagged &= ok
        if depth < 2:
            vlans[depth][tagged] = (gather16(buf, start + off + 2)[tagged] & 0x0FFF)
        off[tagged] += 4
        ethertype = np.where(tagged, gather16(buf, start + off), ethertype)
    skip = _ethertype_skip(ethertype)
    skip[~ok] = c.Skip.TRUNCATED_LINK_HEADER
    out.skip[sel], out.ethertype[sel] = skip, np.where(ok, ethertype, -1)
    out.l3_offset[sel] = off + 2
    out.vlan[sel], out.vlan_inner[sel] = vlans


def _sll(buf, start, caplen, sel, out: LinkLayer, v2: bool) -> None:
    hlen = 20 if v2 else 16
    ok = caplen >= hlen
    ethertype = gather16(buf, start + (0 if v2 else 14))
    skip = _ethertype_skip(ethertype)
    skip[~ok] = c.Skip.TRUNCATED_LINK_HEADER
    out.skip[sel], out.ethertype[sel] = skip, np.where(ok, ethertype, -1)
    out.l3_offset[sel] = hlen
    out.pkttype[sel] = np.where(ok, gather8(buf, start + (10 if v2 else 1)), -1)
    if v2:
        out.sll_ifindex[sel] = np.where(ok, gather32(buf, start + 4), -1).astype(np.int32)


def _null(buf, start, caplen, sel, out: LinkLayer, big: np.ndarray) -> None:
    be = gather32(buf, start)
    le = ((gather8(buf, start + 3) << 24) | (gather8(buf, start + 2) << 16)
          | (gather8(buf, start + 1) << 8) | gather8(buf, start))
    family = np.where(big, be, le)
    skip = np.where(family == AF_INET, 0, c.Skip.OTHER_FAMILY).astype(np.uint8)
    skip[np.isin(family, (10, 24, 28, 30))] = c.Skip.IPV6     # AF_INET6 differs per OS
    skip[caplen < 4] = c.Skip.TRUNCATED_LINK_HEADER
    out.skip[sel] = skip
    out.l3_offset[sel] = 4
