"""The one encapsulation template shared by IPIP, VXLAN and WireGuard.

A mode supplies only three things: the payload that goes after the outer IPv4 header
(``_wrap``), how the outer header's TOS/TTL/DF derive from the inner packet (``_outer_fields``),
and how a received payload is unwrapped (``_unwrap``). The template builds and checks the
outer IPv4 header and turns every malformed or unwanted packet into a :class:`DecapResult`
with a reason, never an exception. Marks and other skb metadata never cross the wire: only
the bytes returned here do.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network
from typing import Protocol, runtime_checkable

from tracer.encap import ipv4
from tracer.errors import InputError


@dataclass(frozen=True)
class TunnelEndpoint:
    """A node as a tunnel end: its underlay address plus the mode-specific identity."""

    node: str
    underlay_ip: IPv4Address
    vtep_ip: IPv4Address | None = None          # VXLAN tunnel address (vxlan.calico)
    vtep_mac: str | None = None                 # None: derived from the node name like felix
    wg_public_key: bytes | None = None          # 32 raw bytes; None: the simulator's own key
    wg_allowed_ips: tuple[IPv4Network, ...] = ()  # peer's AllowedIPs (empty: not checked)


@dataclass(frozen=True)
class DecapResult:
    """What the receiving node makes of an outer packet: the inner packet, or a drop."""

    inner: bytes | None
    drop_reason: str | None = None
    peer: str | None = None                     # node name of the sender when known
    info: tuple[tuple[str, str], ...] = ()      # mode facts for the trace (VNI, counter, ...)

    @property
    def ok(self) -> bool:
        return self.drop_reason is None

    @classmethod
    def drop(cls, reason: str, peer: str | None = None,
             info: tuple[tuple[str, str], ...] = ()) -> DecapResult:
        return cls(inner=None, drop_reason=reason, peer=peer, info=info)


@runtime_checkable
class Encapsulation(Protocol):
    """What the pipeline calls; every mode in this package satisfies it."""

    name: str
    overhead: int

    def encapsulate(self, inner: bytes, src: TunnelEndpoint, dst: TunnelEndpoint) -> bytes: ...

    def decapsulate(self, outer: bytes, receiver: TunnelEndpoint,
                    known_peers: Iterable[TunnelEndpoint]) -> DecapResult: ...


@dataclass(frozen=True)
class OuterFields:
    """The outer header fields a mode derives from the inner packet."""

    tos: int
    ttl: int
    df: bool


# Drop reasons shared by the modes (each mode adds its own).
UNKNOWN_PEER = "unknown tunnel peer"
NOT_LOCAL = "outer destination is not this node"
BAD_OUTER_CHECKSUM = "bad outer IPv4 header checksum"
OUTER_FRAGMENT = "outer packet is a fragment (reassembly not modelled)"


def peers_list(known_peers: Iterable[TunnelEndpoint] | Mapping[str, TunnelEndpoint]
               ) -> list[TunnelEndpoint]:
    if isinstance(known_peers, Mapping):
        return list(known_peers.values())
    return list(known_peers)


def require_ipv4(inner: bytes, mode: str) -> ipv4.IPv4Header:
    """Calico's IPv4 tunnels carry IPv4 only; anything else is bad input from the caller."""
    try:
        return ipv4.parse_header(inner)
    except ipv4.MalformedPacket as err:
        raise InputError(f"cannot {mode}-encapsulate: inner packet is not IPv4 ({err})") from None


class TunnelTemplate:
    """Outer IPv4 build/parse around a mode's payload; subclasses fill in the hooks."""

    name: str = ""
    overhead: int = 0
    ip_protocol: int = 0

    # ------------------------------------------------------------------ sending side
    def encapsulate(self, inner: bytes, src: TunnelEndpoint, dst: TunnelEndpoint, *,
                    ident: int | None = None, **pins: int) -> bytes:
        """The outer IPv4 packet (no L2 header).

        ``ident`` pins the outer IP ID, which the kernel draws from a randomly keyed hash
        (``__ip_select_ident``); other ``pins`` are mode-specific (VXLAN's UDP source port).
        """
        inner_hdr = require_ipv4(inner, self.name)
        payload = self._wrap(inner, src, dst, **pins)
        fields = self._outer_fields(inner_hdr)
        if ident is None:
            ident = ipv4.flow_ident(src.underlay_ip.packed, dst.underlay_ip.packed,
                                    bytes([self.ip_protocol]), inner[:20])
        header = ipv4.build_header(src.underlay_ip, dst.underlay_ip, self.ip_protocol,
                                   len(payload), ttl=fields.ttl, tos=fields.tos,
                                   ident=ident, df=fields.df)
        return header + payload

    def _wrap(self, inner: bytes, src: TunnelEndpoint, dst: TunnelEndpoint, **pins: int) -> bytes:
        raise NotImplementedError

    def _outer_fields(self, inner: ipv4.IPv4Header) -> OuterFields:
        raise NotImplementedError

    # ---------------------------------------------------------------- receiving side
    def decapsulate(self, outer: bytes, receiver: TunnelEndpoint,
                    known_peers: Iterable[TunnelEndpoint] | Mapping[str, TunnelEndpoint]
                    ) -> DecapResult:
        try:
            hdr = ipv4.parse_header(outer)
        except ipv4.MalformedPacket as err:
            return DecapResult.drop(f"malformed outer packet: {err}")
        problem = self._outer_problem(outer, hdr, receiver)
        if problem:
            return DecapResult.drop(problem)
        peers = peers_list(known_peers)
        payload = outer[hdr.header_length:hdr.total_length]
        try:
            return self._unwrap(hdr, payload, receiver, peers)
        except ipv4.MalformedPacket as err:
            return DecapResult.drop(f"malformed {self.name} packet: {err}")

    def _outer_problem(self, outer: bytes, hdr: ipv4.IPv4Header,
                       receiver: TunnelEndpoint) -> str | None:
        if not ipv4.header_checksum_ok(outer):
            return BAD_OUTER_CHECKSUM
        if hdr.mf or hdr.frag_offset:
            return OUTER_FRAGMENT
        if hdr.dst != receiver.underlay_ip:
            return NOT_LOCAL
        if hdr.protocol != self.ip_protocol:
            return f"not a {self.name} packet (IP protocol {hdr.protocol})"
        return None

    def _unwrap(self, hdr: ipv4.IPv4Header, payload: bytes, receiver: TunnelEndpoint,
                peers: list[TunnelEndpoint]) -> DecapResult:
        raise NotImplementedError

    @staticmethod
    def peer_by_underlay(src: IPv4Address, peers: list[TunnelEndpoint]) -> TunnelEndpoint | None:
        """Calico admits tunnel packets only from other nodes' addresses (the all-hosts-net /
        all-vxlan-net ipsets matched in filter INPUT); the rest are dropped."""
        return next((p for p in peers if p.underlay_ip == src), None)
