"""VXLAN as Calico's ``vxlan.calico`` device puts it on the wire (50 bytes overhead).

Device: VNI 4096, UDP port 4789, ``nolearning``, local address = the parent interface's IP
(felix/dataplane/linux/vxlan_mgr.go). felix creates it over netlink without
IFLA_VXLAN_UDP_CSUM, TTL, TOS or DF attributes, so the kernel defaults apply
(drivers/net/vxlan/vxlan_core.c ``vxlan_xmit_one``): outer UDP checksum computed
(``udpcsum``), TTL from ``ip4_dst_hoplimit`` (64), TOS 0 plus the inner ECN bits, DF clear
(VXLAN_DF_UNSET), and a UDP source port from ``udp_flow_src_port`` over the inner flow hash,
inside the local port range. The inner frame goes from the local VTEP MAC to the remote VTEP
MAC that felix programs as a static neighbour entry.
"""

from __future__ import annotations

import hashlib
import struct

from tracer.encap import ipv4
from tracer.encap.base import (UNKNOWN_PEER, DecapResult, OuterFields, TunnelEndpoint,
                               TunnelTemplate)
from tracer.protocols import VXLAN_DEFAULT_PORT

VXLAN_OVERHEAD = 50               # 20 IPv4 + 8 UDP + 8 VXLAN + 14 inner Ethernet

VXLAN_VNI = 4096
VXLAN_FLAG_VNI = 0x08000000       # the I flag in the first 32-bit word
ETH_P_IP = 0x0800
ETH_HLEN = 14
LOCAL_PORT_RANGE = (32768, 60999)  # net.ipv4.ip_local_port_range default


def vtep_mac(node: str, ip_version: int = 4) -> str:
    """felix's VTEP MAC when the node has no vxlanTunnelMACAddr: 'f' (0x66) followed by the
    first 5 bytes of SHA-1 of the node name (``<name>-v6`` for IPv6), as in
    felix/calc/vxlan_resolver.go ``vtepMACForHost``."""
    name = node + "-v6" if ip_version == 6 else node
    raw = b"f" + hashlib.sha1(name.encode()).digest()[:5]
    return ":".join(f"{b:02x}" for b in raw)


def mac_bytes(mac: str) -> bytes:
    parts = mac.replace("-", ":").split(":")
    if len(parts) != 6:
        raise ValueError(f"bad MAC address {mac!r}")
    return bytes(int(p, 16) for p in parts)


def endpoint_mac(ep: TunnelEndpoint) -> bytes:
    return mac_bytes(ep.vtep_mac or vtep_mac(ep.node))


def flow_src_port(inner: bytes, port_range: tuple[int, int] = LOCAL_PORT_RANGE) -> int:
    """The outer source port, mapped into the range like ``udp_flow_src_port``.

    The kernel's flow hash is keyed with a per-boot random secret, so the exact port cannot be
    reproduced; this hashes the inner addresses, protocol and ports deterministically instead
    (same flow, same port) and maps it the same way: ``((hash ^ hash << 16) * span) >> 32``.
    """
    low, high = port_range
    key = inner[12:20] + inner[9:10] + _l4_ports(inner)
    flow_hash = int.from_bytes(hashlib.blake2s(key, digest_size=4).digest(), "big")
    flow_hash = (flow_hash ^ (flow_hash << 16)) & 0xFFFFFFFF
    return ((flow_hash * (high - low)) >> 32) + low


def _l4_ports(inner: bytes) -> bytes:
    hlen = (inner[0] & 0x0F) * 4
    if inner[9] in (ipv4.PROTO_TCP, ipv4.PROTO_UDP) and len(inner) >= hlen + 4:
        return inner[hlen:hlen + 4]
    return b""


class VxlanEncap(TunnelTemplate):
    """VXLAN between Calico nodes' ``vxlan.calico`` devices."""

    name = "vxlan"
    overhead = VXLAN_OVERHEAD
    ip_protocol = ipv4.PROTO_UDP

    def __init__(self, vni: int = VXLAN_VNI, port: int = VXLAN_DEFAULT_PORT, *,
                 udp_csum: bool = True,
                 port_range: tuple[int, int] = LOCAL_PORT_RANGE):
        self.vni = vni
        self.port = port
        self.udp_csum = udp_csum
        self.port_range = port_range

    def _wrap(self, inner: bytes, src: TunnelEndpoint, dst: TunnelEndpoint, *,
              sport: int | None = None) -> bytes:
        frame = endpoint_mac(dst) + endpoint_mac(src) + struct.pack("!H", ETH_P_IP) + inner
        vxlan = struct.pack("!II", VXLAN_FLAG_VNI, self.vni << 8)
        sport = flow_src_port(inner, self.port_range) if sport is None else sport
        return ipv4.build_udp(src.underlay_ip, dst.underlay_ip, sport, self.port,
                              vxlan + frame, checksum=self.udp_csum)

    def _outer_fields(self, inner: ipv4.IPv4Header) -> OuterFields:
        return OuterFields(tos=ipv4.ecn_encapsulate(0, inner.tos), ttl=ipv4.DEFAULT_TTL,
                           df=False)

    def _unwrap(self, hdr: ipv4.IPv4Header, payload: bytes, receiver: TunnelEndpoint,
                peers: list[TunnelEndpoint]) -> DecapResult:
        sport, dport, _, _, data = ipv4.parse_udp(payload)
        if dport != self.port:
            return DecapResult.drop(f"not VXLAN (UDP port {dport})")
        if not ipv4.udp_checksum_ok(hdr.src, hdr.dst, payload[:len(data) + ipv4.UDP_HLEN]):
            return DecapResult.drop("bad outer UDP checksum")
        peer = self.peer_by_underlay(hdr.src, peers)
        if peer is None:
            return DecapResult.drop(UNKNOWN_PEER)
        return self._unwrap_vxlan(hdr, data, receiver, peer, sport)

    def _unwrap_vxlan(self, hdr: ipv4.IPv4Header, data: bytes, receiver: TunnelEndpoint,
                      peer: TunnelEndpoint, sport: int) -> DecapResult:
        if len(data) < 8 + ETH_HLEN:
            raise ipv4.MalformedPacket(f"VXLAN payload too short ({len(data)} bytes)")
        flags, vni_word = struct.unpack("!II", data[:8])
        vni = vni_word >> 8
        info = (("vni", str(vni)), ("udp_sport", str(sport)))
        # vxlan_rcv: the I flag must be set and no unknown flag or reserved bit may remain.
        if flags != VXLAN_FLAG_VNI or vni_word & 0xFF:
            return DecapResult.drop(f"bad VXLAN flags 0x{flags:08x}", peer.node, info)
        if vni != self.vni:
            return DecapResult.drop(f"wrong VNI {vni} (device has {self.vni})", peer.node, info)
        return self._unwrap_frame(hdr, data[8:], receiver, peer, info)

    @staticmethod
    def _unwrap_frame(hdr: ipv4.IPv4Header, frame: bytes, receiver: TunnelEndpoint,
                      peer: TunnelEndpoint, info: tuple[tuple[str, str], ...]) -> DecapResult:
        own = endpoint_mac(receiver)
        if frame[6:12] == own:                       # vxlan_set_mac: our own MAC looped back
            return DecapResult.drop("inner source MAC is this VTEP's own", peer.node, info)
        if frame[0:6] != own:                        # PACKET_OTHERHOST, dropped by ip_rcv
            return DecapResult.drop("inner destination MAC is not this node's VTEP",
                                    peer.node, info)
        (ethertype,) = struct.unpack("!H", frame[12:14])
        if ethertype != ETH_P_IP:
            return DecapResult.drop(f"inner frame is not IPv4 (ethertype 0x{ethertype:04x})",
                                    peer.node, info)
        inner_hdr = ipv4.parse_header(frame[ETH_HLEN:])
        inner = ipv4.ecn_decapsulate(hdr.tos, frame[ETH_HLEN:ETH_HLEN + inner_hdr.total_length])
        if inner is None:
            return DecapResult.drop("outer ECN CE over a Not-ECT inner packet", peer.node, info)
        return DecapResult(inner=inner, peer=peer.node, info=info)
