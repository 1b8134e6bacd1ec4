"""IP-in-IP as Calico's ``tunl0`` puts it on the wire (IPv4 protocol 4, 20 bytes overhead).

``tunl0`` is the ipip module's fallback device, which felix only configures (address, MTU);
its parameters stay at the kernel defaults: ``ttl inherit`` (ttl 0), ``tos 0`` and
``nopmtudisc`` (frag_off 0). ``ip_tunnel_xmit`` (net/ipv4/ip_tunnel.c) then gives the outer
header the inner TTL, the inner DF bit, a TOS carrying only the inner ECN bits, and an ID
from ``__ip_select_ident`` (net/ipv4/ip_tunnel_core.c ``iptunnel_xmit``).
"""

from __future__ import annotations

from tracer.encap import ipv4
from tracer.encap.base import (UNKNOWN_PEER, DecapResult, OuterFields, TunnelEndpoint,
                               TunnelTemplate)

IPIP_OVERHEAD = 20
ECN_DROP = "outer ECN CE over a Not-ECT inner packet (INET_ECN_decapsulate)"


class IpipEncap(TunnelTemplate):
    """IPv4-in-IPv4 between Calico nodes."""

    name = "ipip"
    overhead = IPIP_OVERHEAD
    ip_protocol = ipv4.PROTO_IPIP

    def _wrap(self, inner: bytes, src: TunnelEndpoint, dst: TunnelEndpoint, **pins: int) -> bytes:
        if pins:
            raise TypeError(f"ipip takes no pins, got {sorted(pins)}")
        return inner

    def _outer_fields(self, inner: ipv4.IPv4Header) -> OuterFields:
        # ttl 0 = inherit; tunnel frag_off 0 | inner DF; tos 0 + inner ECN.
        return OuterFields(tos=ipv4.ecn_encapsulate(0, inner.tos), ttl=inner.ttl, df=inner.df)

    def _unwrap(self, hdr: ipv4.IPv4Header, payload: bytes, receiver: TunnelEndpoint,
                peers: list[TunnelEndpoint]) -> DecapResult:
        peer = self.peer_by_underlay(hdr.src, peers)
        if peer is None:
            return DecapResult.drop(UNKNOWN_PEER)
        inner_hdr = ipv4.parse_header(payload)
        inner = ipv4.ecn_decapsulate(hdr.tos, payload[:inner_hdr.total_length])
        if inner is None:
            return DecapResult.drop(ECN_DROP, peer=peer.node)
        return DecapResult(inner=inner, peer=peer.node)
