"""The capture-side columns and the reason vocabulary: what a capture knows that a packet does not.

A reader returns two arrays aligned row for row: the packet batch
(:data:`tracer.dataplane.batch.PACKET_DTYPE`, what the dataplane classifies) and
:data:`CAPTURE_DTYPE` here (where the row came from in the file and how it was framed).
Frames that are not IPv4 never become rows; they are listed in :data:`SKIP_DTYPE` records
with a :class:`Skip` reason so nothing is dropped silently.

Every row has a :class:`Reason`. ``OK`` rows are classified as they are. ``category`` tells the
consumer what a non-OK row means:

- ``malformed``: the kernel drops the packet before netfilter (``ip_rcv_core``), or conntrack
  cannot read its L4 header; the verdict is *dropped, reason malformed*.
- ``fragment``: IPv4 reassembly (``ip_defrag``, as ``nf_defrag_ipv4`` calls it before
  conntrack) discarded the fragment or its whole queue; the verdict is *dropped*.
- ``unreadable``: the capture cannot tell (the snap length cut the headers, a WireGuard
  packet without keys, a tunnel payload that is not IPv4). The row describes the outermost
  packet the file shows, which the node's tables do see.
"""

from __future__ import annotations

from enum import IntEnum

import numpy as np

# Link types (https://www.tcpdump.org/linktypes.html) this package reads or writes.
LINKTYPE_NULL = 0            # BSD loopback: 4-byte address family in the writer's byte order
LINKTYPE_ETHERNET = 1
LINKTYPE_RAW = 101           # raw IP, version from the first nibble
LINKTYPE_LOOP = 108          # OpenBSD loopback: address family in network byte order
LINKTYPE_LINUX_SLL = 113
LINKTYPE_IPV4 = 228
LINKTYPE_IPV6 = 229
LINKTYPE_LINUX_SLL2 = 276
LINKTYPE_NAMES = {LINKTYPE_NULL: "null", LINKTYPE_ETHERNET: "ethernet", LINKTYPE_RAW: "raw",
                  LINKTYPE_LOOP: "loop", LINKTYPE_LINUX_SLL: "linux-sll",
                  LINKTYPE_IPV4: "ipv4", LINKTYPE_IPV6: "ipv6",
                  LINKTYPE_LINUX_SLL2: "linux-sll2"}

# Ethertypes (IEEE registry) the link layers carry.
ETH_P_IP, ETH_P_ARP, ETH_P_IPV6 = 0x0800, 0x0806, 0x86DD
ETH_P_8021Q, ETH_P_8021AD, ETH_P_QINQ1 = 0x8100, 0x88A8, 0x9100   # VLAN tags (0x9100: old QinQ)

NO_VLAN = -1


class Tunnel(IntEnum):
    """How the row's packet was carried on the wire the capture saw."""

    NONE = 0
    IPIP = 1
    VXLAN = 2
    WIREGUARD = 3


class Reason(IntEnum):
    """Why a row is not an ordinary packet (0 = it is)."""

    OK = 0
    # malformed: ip_rcv_core / conntrack L4 header checks
    BAD_VERSION = 1
    BAD_IHL = 2
    TRUNCATED_IP_HEADER = 3
    BAD_TOTAL_LENGTH = 4
    BAD_IP_CHECKSUM = 5
    TRUNCATED_L4_HEADER = 6
    BAD_TCP_HEADER_LENGTH = 7
    BAD_UDP_LENGTH = 8
    # fragment: ip_defrag
    FRAG_OVERLAP = 20
    FRAG_DUPLICATE = 21
    FRAG_BAD_LENGTH = 22
    FRAG_TIMEOUT = 23
    FRAG_INCOMPLETE = 24
    FRAG_OVERSIZE = 25
    FRAG_ECN = 26
    # unreadable: the file does not show enough
    SNAPPED = 40
    WIREGUARD_NO_KEYS = 41
    WIREGUARD_UNDECRYPTABLE = 42
    WIREGUARD_HANDSHAKE = 43
    TUNNEL_NOT_IPV4 = 44
    VXLAN_BAD_HEADER = 45


# reason -> (category, text). Category "" is an ordinary packet.
REASONS: dict[Reason, tuple[str, str]] = {
    Reason.OK: ("", "ok"),
    Reason.BAD_VERSION: ("malformed", "IP version is not 4"),
    Reason.BAD_IHL: ("malformed", "IPv4 header length below 20 bytes"),
    Reason.TRUNCATED_IP_HEADER: ("malformed", "frame ends inside the IPv4 header"),
    Reason.BAD_TOTAL_LENGTH: ("malformed", "IPv4 total length below the header length or "
                              "beyond the frame"),
    Reason.BAD_IP_CHECKSUM: ("malformed", "bad IPv4 header checksum"),
    Reason.TRUNCATED_L4_HEADER: ("malformed", "datagram ends inside the TCP/UDP/ICMP header"),
    Reason.BAD_TCP_HEADER_LENGTH: ("malformed", "TCP data offset below 20 bytes or beyond the "
                                   "segment"),
    Reason.BAD_UDP_LENGTH: ("malformed", "UDP length below 8 or beyond the datagram"),
    Reason.FRAG_OVERLAP: ("fragment", "overlapping fragment: the whole queue was discarded"),
    Reason.FRAG_DUPLICATE: ("fragment", "duplicate fragment (data already queued)"),
    Reason.FRAG_BAD_LENGTH: ("fragment", "fragment ends beyond the last fragment, or an empty "
                             "fragment: the whole queue was discarded"),
    Reason.FRAG_TIMEOUT: ("fragment", "reassembly timed out (ipfrag_time)"),
    Reason.FRAG_INCOMPLETE: ("fragment", "datagram still incomplete when the capture ends"),
    Reason.FRAG_OVERSIZE: ("fragment", "reassembled datagram larger than 65535 bytes"),
    Reason.FRAG_ECN: ("fragment", "fragments mix Not-ECT and CE (ip_frag_ecn_table)"),
    Reason.SNAPPED: ("unreadable", "the capture's snap length cut the headers"),
    Reason.WIREGUARD_NO_KEYS: ("unreadable", "WireGuard transport data, no keys to decrypt it"),
    Reason.WIREGUARD_UNDECRYPTABLE: ("unreadable", "WireGuard transport data that the keys "
                                     "given do not decrypt"),
    Reason.WIREGUARD_HANDSHAKE: ("unreadable", "WireGuard handshake, cookie or keepalive "
                                 "(no inner packet)"),
    Reason.TUNNEL_NOT_IPV4: ("unreadable", "tunnel payload is not IPv4"),
    Reason.VXLAN_BAD_HEADER: ("unreadable", "VXLAN header without the I flag or too short"),
}


def category(reason: int) -> str:
    return REASONS[Reason(reason)][0]


class Skip(IntEnum):
    """Why a frame did not become a row."""

    ARP = 1
    IPV6 = 2
    OTHER_ETHERTYPE = 3
    LLC = 4
    UNSUPPORTED_LINKTYPE = 5
    TRUNCATED_LINK_HEADER = 6
    OTHER_FAMILY = 7
    FRAGMENT_QUEUED = 8


SKIPS: dict[Skip, str] = {
    Skip.ARP: "ARP",
    Skip.IPV6: "IPv6 (not modelled yet)",
    Skip.OTHER_ETHERTYPE: "not IPv4 (other ethertype)",
    Skip.LLC: "802.3 length field / LLC frame",
    Skip.UNSUPPORTED_LINKTYPE: "link type not read",
    Skip.TRUNCATED_LINK_HEADER: "frame ends inside the link-layer header",
    Skip.OTHER_FAMILY: "loopback frame of another address family",
    Skip.FRAGMENT_QUEUED: "fragment consumed by a reassembled datagram",
}

CAPTURE_DTYPE = np.dtype([
    ("frame", np.uint32),          # 1-based packet record number in the file (Wireshark's
                                   # frame number, unless it shows other pcapng blocks as frames)
    ("ts_ns", np.int64),           # capture time, ns since the epoch (exact, unlike tstamp)
    ("caplen", np.uint32), ("wire_len", np.uint32),
    ("interface", np.uint16),      # index into Capture.interfaces
    ("linktype", np.uint16),
    ("offset", np.int64),          # file offset of the frame's first byte
    ("l3_offset", np.uint16),      # the outermost IPv4 header, from the frame's first byte
    ("vlan", np.int16), ("vlan_inner", np.int16),   # 802.1Q/802.1ad ids, NO_VLAN when absent
    ("pkttype", np.int8),          # Linux SLL/SLL2 packet type (0 host, 4 outgoing), else -1
    ("sll_ifindex", np.int32),     # SLL2 interface index, else -1
    ("reason", np.uint8),          # Reason
    ("tunnel", np.uint8),          # Tunnel: how the row's packet was carried
    ("outer_saddr", np.uint32), ("outer_daddr", np.uint32),
    ("outer_sport", np.int32), ("outer_dport", np.int32),   # VXLAN / WireGuard UDP ports
    ("outer_ttl", np.uint8), ("outer_tot_len", np.uint16),
    ("vni", np.int32),             # VXLAN network identifier, else -1
    ("ip_id", np.uint16), ("frag_off", np.uint16),   # as on the wire (flags + offset)
    ("frags", np.uint16),          # fragments reassembled into this row (0: not a fragment)
    ("first_frame", np.uint32),    # frame of the fragment at offset 0 (reassembled rows)
])

SKIP_DTYPE = np.dtype([("frame", np.uint32), ("reason", np.uint8), ("ethertype", np.int32),
                       ("linktype", np.uint16)])
