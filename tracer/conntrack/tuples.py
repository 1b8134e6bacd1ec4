"""Records the connection tracker trades in: tuples, packet keys, verdicts and entry snapshots.

Addresses are IPv4 ints. A :class:`FlowTuple` is what the kernel's ``nf_conntrack_tuple``
holds for one direction. ICMP is keyed as the kernel keys it (``icmp_pkt_to_tuple``):
``sport`` holds the echo id, ``dport`` holds ``type << 8 | code``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from ipaddress import IPv4Address

IPPROTO_ICMP = 1
IPPROTO_TCP = 6
IPPROTO_UDP = 17

# TCP header flag bits (tcp_flag_byte).
FIN, SYN, RST, PSH, ACK, URG, ECE, CWR = 0x01, 0x02, 0x04, 0x08, 0x10, 0x20, 0x40, 0x80

ICMP_ECHOREPLY, ICMP_DEST_UNREACH, ICMP_SOURCE_QUENCH, ICMP_REDIRECT = 0, 3, 4, 5
ICMP_ECHO, ICMP_TIME_EXCEEDED, ICMP_PARAMETERPROB = 8, 11, 12
ICMP_TIMESTAMP, ICMP_TIMESTAMPREPLY, ICMP_INFO_REQUEST, ICMP_INFO_REPLY = 13, 14, 15, 16
ICMP_ADDRESS, ICMP_ADDRESSREPLY = 17, 18
NR_ICMP_TYPES = 18
# icmp_is_err(): the types that carry the header of the packet that caused them.
ICMP_ERROR_TYPES = frozenset({ICMP_DEST_UNREACH, ICMP_SOURCE_QUENCH, ICMP_REDIRECT,
                              ICMP_TIME_EXCEEDED, ICMP_PARAMETERPROB})
# invmap in nf_conntrack_proto_icmp.c: only query/answer types have a reply tuple.
ICMP_INVERSE = {ICMP_ECHO: ICMP_ECHOREPLY, ICMP_ECHOREPLY: ICMP_ECHO,
                ICMP_TIMESTAMP: ICMP_TIMESTAMPREPLY, ICMP_TIMESTAMPREPLY: ICMP_TIMESTAMP,
                ICMP_INFO_REQUEST: ICMP_INFO_REPLY, ICMP_INFO_REPLY: ICMP_INFO_REQUEST,
                ICMP_ADDRESS: ICMP_ADDRESSREPLY, ICMP_ADDRESSREPLY: ICMP_ADDRESS}
# valid_new in nf_conntrack_icmp_packet: the types that may start a "connection".
ICMP_VALID_NEW = frozenset({ICMP_ECHO, ICMP_TIMESTAMP, ICMP_INFO_REQUEST, ICMP_ADDRESS})

CTSTATES = ("NEW", "ESTABLISHED", "RELATED", "INVALID", "UNTRACKED")
DIRECTIONS = ("original", "reply")


def ip(text: str) -> int:
    """Dotted quad to int."""
    return int(IPv4Address(text))


def ip_str(addr: int) -> str:
    """Int to dotted quad."""
    return str(IPv4Address(addr))


def ports_matter(protocol: int) -> bool:
    """TCP, UDP and ICMP tuples carry ports/ids; other protocols use the generic tracker."""
    return protocol in (IPPROTO_TCP, IPPROTO_UDP, IPPROTO_ICMP)


@dataclass(frozen=True)
class FlowTuple:
    """One direction of a connection, as ``nf_conntrack_tuple`` (ICMP: sport=id, dport=type<<8|code)."""

    src: int
    dst: int
    protocol: int
    sport: int
    dport: int

    @property
    def icmp_type(self) -> int:
        return self.dport >> 8

    @property
    def icmp_code(self) -> int:
        return self.dport & 0xFF

    def invert(self) -> FlowTuple | None:
        """The tuple of the other direction (``nf_ct_invert_tuple``); None when the kernel has none."""
        if self.protocol == IPPROTO_ICMP:
            inverse = ICMP_INVERSE.get(self.icmp_type)
            if inverse is None:
                return None
            return FlowTuple(self.dst, self.src, self.protocol, self.sport,
                             inverse << 8 | self.icmp_code)
        return FlowTuple(self.dst, self.src, self.protocol, self.dport, self.sport)


@dataclass(frozen=True)
class PacketKey:
    """What conntrack reads from one packet.

    ``tcp_flags``/``icmp_type`` None means the L4 header was truncated. For ICMP, ``sport`` is
    the echo id and ``dport`` is ignored. ``icmp_inner`` is the embedded header of an ICMP
    error. ``wscale``/``sack_perm`` are the TCP options tcp_in_window reads (SYN packets).
    """

    src: int
    dst: int
    protocol: int
    sport: int = 0
    dport: int = 0
    tcp_flags: int | None = None
    seq: int = 0
    ack: int = 0
    window: int = 65535
    payload_len: int = 0
    icmp_type: int | None = None
    icmp_code: int | None = None
    icmp_inner: PacketKey | None = None
    wscale: int | None = None
    sack_perm: bool = False

    def tuple(self) -> FlowTuple:
        """The tuple the kernel builds for this packet (``nf_ct_get_tuple``)."""
        if self.protocol == IPPROTO_ICMP:
            return FlowTuple(self.src, self.dst, IPPROTO_ICMP, self.sport & 0xFFFF,
                             ((self.icmp_type or 0) & 0xFF) << 8 | ((self.icmp_code or 0) & 0xFF))
        if ports_matter(self.protocol):
            return FlowTuple(self.src, self.dst, self.protocol, self.sport & 0xFFFF,
                             self.dport & 0xFFFF)
        return FlowTuple(self.src, self.dst, self.protocol, 0, 0)

    @classmethod
    def tcp(cls, src: str | int, dst: str | int, sport: int, dport: int, flags: int, *,
            seq: int = 0, ack: int = 0, window: int = 65535, payload_len: int = 0,
            wscale: int | None = None, sack_perm: bool = False) -> PacketKey:
        return cls(_addr(src), _addr(dst), IPPROTO_TCP, sport, dport, tcp_flags=flags, seq=seq,
                   ack=ack, window=window, payload_len=payload_len, wscale=wscale,
                   sack_perm=sack_perm)

    @classmethod
    def udp(cls, src: str | int, dst: str | int, sport: int, dport: int,
            payload_len: int = 0) -> PacketKey:
        return cls(_addr(src), _addr(dst), IPPROTO_UDP, sport, dport, payload_len=payload_len)

    @classmethod
    def icmp(cls, src: str | int, dst: str | int, icmp_type: int, icmp_code: int = 0, *,
             ident: int = 0, inner: PacketKey | None = None) -> PacketKey:
        return cls(_addr(src), _addr(dst), IPPROTO_ICMP, ident, 0, icmp_type=icmp_type,
                   icmp_code=icmp_code, icmp_inner=inner)


def _addr(value: str | int) -> int:
    return ip(value) if isinstance(value, str) else value


@dataclass(frozen=True)
class CtVerdict:
    """Result of ``nf_conntrack_in`` for one packet, as ``-m conntrack --ctstate`` sees it.

    ``dropped`` is True when conntrack itself drops the packet (NF_DROP: table full, or a
    TCP reopen race); ``reason`` says why a packet is INVALID, ignored or dropped.
    """

    ctstate: str
    direction: str = "original"
    entry_id: int | None = None
    tcp_state: str | None = None
    reason: str | None = None
    status: frozenset[str] = field(default_factory=frozenset)
    dropped: bool = False


@dataclass(frozen=True)
class Entry:
    """Snapshot of one conntrack entry: both tuples, status bits, mark and absolute expiry."""

    entry_id: int
    original: FlowTuple
    reply: FlowTuple
    status: frozenset[str]
    mark: int
    expires: float
    tcp_state: str | None

    def remaining(self, now: float) -> float:
        return self.expires - now


@dataclass(frozen=True)
class NatRewrite:
    """Addresses/ports a packet must carry after NAT in its direction (``nf_nat_manip_pkt``).

    ``src_changed``/``dst_changed`` say which side the entry rewrites; for ICMP the ports are
    the echo id (sport) and unchanged type/code (dport).
    """

    src: int
    dst: int
    sport: int
    dport: int
    src_changed: bool
    dst_changed: bool
