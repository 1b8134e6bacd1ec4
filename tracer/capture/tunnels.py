"""Which datagrams carry a tunnel, and where the inner packet starts: IPIP and VXLAN,
vectorised; WireGuard is recognised here and opened by :mod:`tracer.capture.wgkeys`.

VXLAN (RFC 7348; the kernel's ``vxlan_rcv`` in drivers/net/vxlan/vxlan_core.c): UDP to the
device's port (4789 by default, felix's ``vxlanPort`` may differ), an 8-byte header whose
flags word must be exactly the I flag and whose reserved byte after the VNI must be 0, then
an Ethernet frame. IPIP: IP protocol 4, the inner datagram right after the outer header.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tracer import protocols as p
from tracer.capture.columns import ETH_P_IP, Reason, Tunnel
from tracer.capture.link import gather16, gather32
from tracer.encap.vxlan import ETH_HLEN, VXLAN_FLAG_VNI

UDP_HLEN, VXLAN_HLEN = 8, 8
VXLAN_INNER = UDP_HLEN + VXLAN_HLEN + ETH_HLEN     # from the outer L4 header to the inner IP


@dataclass
class Decap:
    """For the rows given: the tunnel found, the inner datagram's place, or why not."""

    tunnel: np.ndarray          # uint8 Tunnel
    reason: np.ndarray          # uint8 Reason for rows that look tunnelled but do not open
    l3: np.ndarray              # int64 inner IPv4 header offset
    cap: np.ndarray
    wire: np.ndarray
    vni: np.ndarray             # int32, -1 unless VXLAN


def find(buf: np.ndarray, protocol: np.ndarray, dport: np.ndarray, l4: np.ndarray,
         l4_cap: np.ndarray, l4_len: np.ndarray, vxlan_port: int) -> Decap:
    n = len(protocol)
    out = Decap(np.zeros(n, np.uint8), np.zeros(n, np.uint8), l4.copy(), l4_cap.copy(),
                l4_len.copy(), np.full(n, -1, np.int32))
    ipip = protocol == p.IPIP
    out.tunnel[ipip] = Tunnel.IPIP
    vx = np.flatnonzero((protocol == p.UDP) & (dport == vxlan_port))
    if len(vx):
        at = l4[vx]
        flags, vni_word = gather32(buf, at + UDP_HLEN), gather32(buf, at + UDP_HLEN + 4)
        ethertype = gather16(buf, at + VXLAN_INNER - 2)
        why = np.zeros(len(vx), np.uint8)
        why[(flags != VXLAN_FLAG_VNI) | ((vni_word & 0xFF) != 0)] = Reason.VXLAN_BAD_HEADER
        why[(why == 0) & (ethertype != ETH_P_IP)] = Reason.TUNNEL_NOT_IPV4
        why[l4_cap[vx] < VXLAN_INNER] = Reason.SNAPPED
        why[l4_len[vx] < VXLAN_INNER] = Reason.VXLAN_BAD_HEADER
        out.tunnel[vx] = Tunnel.VXLAN
        out.reason[vx] = why
        out.vni[vx] = vni_word >> 8
        out.l3[vx] = at + VXLAN_INNER
        out.cap[vx] = l4_cap[vx] - VXLAN_INNER
        out.wire[vx] = l4_len[vx] - VXLAN_INNER
    return out
