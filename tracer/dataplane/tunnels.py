"""Which node a tunnel packet goes to, and the outer packet the tunnel device sends.

The outer packet is framed byte-exact by ``tracer.encap`` (the framers tshark and the kernel's
vxlan device judge); the trace's outer header fields are read back from those bytes, so the
trace and a pcap can never disagree.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from ipaddress import IPv4Address

from tracer.dataplane.packet import Packet
from tracer.dataplane.routing import IPIP_IFACE, VXLAN_IFACE, block_owners
from tracer.dataplane.trace import EncapRecord
from tracer.dataplane.wire import to_bytes
from tracer.encap import ipv4
from tracer.encap.base import TunnelEndpoint
from tracer.encap.ipip import IpipEncap
from tracer.encap.vxlan import VxlanEncap
from tracer.encap.wireguard import WireGuardEncap
from tracer.model.cluster import Cluster, Node


@dataclass
class ClusterTunnels:
    cluster: Cluster
    framers: dict[str, object] = field(default_factory=dict)

    def __post_init__(self) -> None:
        felix = self.cluster.felix
        self.framers = {
            "ipip": IpipEncap(),
            "vxlan": VxlanEncap(vni=felix.vxlan_vni, port=felix.vxlan_port),
            # The simulator cannot know the nodes' private keys: it runs WireGuard with keys
            # of its own per node (the trace says so); the framing is real.
            "wireguard": WireGuardEncap(port=felix.wireguard_listening_port,
                                        mtu=felix.wireguard_mtu or felix.host_mtu - 60),
        }

    def encapsulate(self, node: str, oif: str, packet: Packet,
                    via: IPv4Address | None) -> EncapRecord | str:
        local = self.cluster.nodes[node]
        if oif == IPIP_IFACE:
            mode, peer = "ipip", self.cluster.node_by_ip(via) if via else None
            missing = f"tunl0 route via {via} names no Calico node"
        elif oif == VXLAN_IFACE:
            mode = "vxlan"
            peer = next((n for n in self.cluster.nodes.values()
                         if n.vxlan_tunnel_address == via), None)
            missing = f"no VTEP {via} in the FDB of {node}"
        else:
            mode, peer = "wireguard", self._owner_of(packet.dst)
            missing = f"no WireGuard peer has {packet.dst} in its allowed IPs"
        if peer is None:
            return missing
        framer = self.framers[mode]
        src, dst = self._endpoint(local), self._endpoint(peer)
        sent_before = len(getattr(framer, "control_packets", ()))
        wire = framer.encapsulate(to_bytes(packet), src, dst)
        outer = _outer_packet(wire, packet)
        preamble, keylog = (), ""
        if mode == "wireguard":
            preamble = tuple(framer.control_packets[sent_before:])
            keylog = framer.keylog_lines(src, dst)
        return EncapRecord(node, mode, packet, outer, outer.length - packet.length,
                           self._detail(mode, peer), wire, preamble, keylog)

    def _endpoint(self, node: Node) -> TunnelEndpoint:
        return TunnelEndpoint(node.name, node.address.ip, vtep_ip=node.vxlan_tunnel_address,
                              vtep_mac=node.vxlan_tunnel_mac)

    def _detail(self, mode: str, peer: Node) -> str:
        felix = self.cluster.felix
        if mode == "ipip":
            return f"IPIP to {peer.name} ({peer.address.ip})"
        if mode == "vxlan":
            return (f"VXLAN VNI {felix.vxlan_vni} to VTEP {peer.vxlan_tunnel_address} "
                    f"({peer.vxlan_tunnel_mac}) at {peer.address.ip}")
        return f"WireGuard transport data to peer {peer.name} ({peer.address.ip})"

    def _owner_of(self, addr: IPv4Address) -> Node | None:
        for block, owner in block_owners(self.cluster).items():
            if addr in block:
                return self.cluster.nodes[owner]
        ep = self.cluster.endpoint_by_ip(addr)
        return self.cluster.nodes[ep.pod.node] if ep else None


def _outer_packet(wire: bytes, inner: Packet) -> Packet:
    """The outer header fields as framed, carrying the inner packet."""
    header = ipv4.parse_header(wire)
    sport = dport = None
    if header.protocol == ipv4.PROTO_UDP:
        sport, dport, *_ = ipv4.parse_udp(wire[header.header_length:])
    return Packet(header.src, header.dst, header.protocol, sport=sport, dport=dport,
                  ttl=header.ttl, length=len(wire), df=header.df, inner=inner)
