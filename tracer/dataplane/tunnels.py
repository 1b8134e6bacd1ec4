"""Which node a tunnel packet goes to, and what the outer packet looks like.

The outer headers come from the byte-exact framers in ``tracer.encap`` when a wire image is
wanted; the trace itself needs only the outer header fields, taken from the same framer.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from ipaddress import IPv4Address

from tracer.dataplane.packet import IPIP, UDP, Packet
from tracer.dataplane.routing import IPIP_IFACE, VXLAN_IFACE, block_owners
from tracer.dataplane.trace import EncapRecord
from tracer.model.cluster import Cluster

OVERHEAD = {"ipip": 20, "vxlan": 50, "wireguard": 60}


def vxlan_source_port(inner: Packet) -> int:
    """A stable stand-in for the kernel's flow hash (udp_flow_src_port): same flow, same port,
    within the default ephemeral range 32768-60999."""
    key = f"{inner.src}{inner.dst}{inner.protocol}{inner.sport}{inner.dport}".encode()
    return 32768 + zlib.crc32(key) % (60999 - 32768 + 1)


@dataclass
class ClusterTunnels:
    cluster: Cluster

    def encapsulate(self, node: str, oif: str, packet: Packet,
                    via: IPv4Address | None) -> EncapRecord | str:
        local = self.cluster.nodes[node]
        if oif == IPIP_IFACE:
            peer = self.cluster.node_by_ip(via) if via else None
            if peer is None:
                return f"tunl0 route via {via} names no Calico node"
            outer = Packet(local.address.ip, peer.address.ip, IPIP, ttl=packet.ttl,
                           length=packet.length + OVERHEAD["ipip"], df=packet.df, inner=packet)
            return EncapRecord(node, "ipip", packet, outer, OVERHEAD["ipip"],
                               f"IPIP to {peer.name} ({peer.address.ip})")
        if oif == VXLAN_IFACE:
            peer = next((n for n in self.cluster.nodes.values()
                         if n.vxlan_tunnel_address == via), None)
            if peer is None:
                return f"no VTEP {via} in the FDB of {node}"
            felix = self.cluster.felix
            outer = Packet(local.address.ip, peer.address.ip, UDP,
                           sport=vxlan_source_port(packet), dport=felix.vxlan_port, ttl=64,
                           length=packet.length + OVERHEAD["vxlan"], df=False, inner=packet)
            return EncapRecord(node, "vxlan", packet, outer, OVERHEAD["vxlan"],
                               f"VXLAN VNI {felix.vxlan_vni} to VTEP {via} "
                               f"({peer.vxlan_tunnel_mac}) at {peer.address.ip}")
        peer = self._owner_of(packet.dst)
        if peer is None:
            return f"no WireGuard peer has {packet.dst} in its allowed IPs"
        port = self.cluster.felix.wireguard_listening_port
        padded = (packet.length + 15) // 16 * 16
        outer = Packet(local.address.ip, peer.address.ip, UDP, sport=port, dport=port, ttl=64,
                       length=padded + OVERHEAD["wireguard"], df=False, inner=packet)
        return EncapRecord(node, "wireguard", packet, outer, outer.length - packet.length,
                           f"WireGuard transport data to peer {peer.name} ({peer.address.ip})")

    def _owner_of(self, addr: IPv4Address):
        for block, owner in block_owners(self.cluster).items():
            if addr in block:
                return self.cluster.nodes[owner]
        ep = self.cluster.endpoint_by_ip(addr)
        return self.cluster.nodes[ep.pod.node] if ep else None
