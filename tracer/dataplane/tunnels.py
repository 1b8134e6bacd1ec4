"""Which node a tunnel packet goes to, and the outer packet the tunnel device sends.

:class:`TunnelDirectory` is the cluster's tunnel facts as felix programs them on every node
(VXLAN FDB/ARP entries, IPIP routes, WireGuard peers and their allowed IPs), fixed when the
dataplane is assembled. The framers themselves keep per-run session state (WireGuard
handshakes and counters), so they live in the run's :class:`~tracer.dataplane.state.RunState`.

The outer packet is framed byte-exact by ``tracer.encap`` (the framers tshark and the kernel's
vxlan device judge); the trace's outer header fields are read back from those bytes, so the
trace and a pcap can never disagree.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network

from tracer.dataplane.interfaces import IfaceKind, Interface
from tracer.dataplane.packet import Packet
from tracer.dataplane.state import RunState
from tracer.dataplane.trace import EncapRecord
from tracer.dataplane.wire import to_bytes
from tracer.encap import ipv4
from tracer.encap.base import TunnelEndpoint
from tracer.encap.ipip import IpipEncap
from tracer.encap.vxlan import VxlanEncap
from tracer.encap.wireguard import WireGuardEncap
from tracer.protocols import VXLAN_DEFAULT_PORT, WIREGUARD_DEFAULT_PORT


@dataclass(frozen=True)
class TunnelDirectory:
    endpoints: Mapping[str, TunnelEndpoint]          # node name -> its tunnel identity
    wireguard_owners: tuple[tuple[IPv4Network, str], ...] = ()   # allowed IPs -> peer node
    vxlan_vni: int = 4096
    vxlan_port: int = VXLAN_DEFAULT_PORT
    wireguard_port: int = WIREGUARD_DEFAULT_PORT
    wireguard_mtu: int = 1440
    # Where a node's FelixConfiguration differs from the above. The sender's settings frame:
    # the kernel's vxlan device sends to its own configured port (IFLA_VXLAN_PORT) with its own
    # VNI, and felix gives WireGuard peers its own listening port (wireguard.go
    # endpointUDPAddr).
    vxlan_by_node: Mapping[str, tuple[int, int]] = field(default_factory=dict)  # (VNI, port)
    wireguard_by_node: Mapping[str, tuple[int, int]] = field(default_factory=dict)  # (port, MTU)

    def vxlan_of(self, node: str | None) -> tuple[int, int]:
        return self.vxlan_by_node.get(node or "", (self.vxlan_vni, self.vxlan_port))

    def wireguard_of(self, node: str | None) -> tuple[int, int]:
        return self.wireguard_by_node.get(node or "", (self.wireguard_port, self.wireguard_mtu))

    def peer(self, iface: Interface, via: IPv4Address | None,
             dst: IPv4Address) -> TunnelEndpoint | str:
        """The node a packet routed into ``iface`` goes to, or why none does."""
        if iface.kind is IfaceKind.IPIP:
            found = next((e for e in self.endpoints.values() if e.underlay_ip == via), None)
            return found or f"{iface.name} route via {via} names no Calico node"
        if iface.kind is IfaceKind.VXLAN:
            found = next((e for e in self.endpoints.values() if e.vtep_ip == via), None)
            return found or f"no VTEP {via} in the FDB"
        best = max((item for item in self.wireguard_owners if dst in item[0]),
                   key=lambda item: item[0].prefixlen, default=None)
        if best is None:
            return f"no WireGuard peer has {dst} in its allowed IPs"
        return self.endpoints[best[1]]

    def framer(self, mode: str, state: RunState, node: str | None = None):
        """The run's framer for ``mode`` on ``node`` (created on first use; WireGuard keeps
        sessions). Framers differ by the sending node's settings: nodes configured alike share
        one."""
        vni, port = self.vxlan_of(node)
        wg_port, wg_mtu = self.wireguard_of(node)
        key = {"vxlan": f"vxlan:{vni}:{port}",
               "wireguard": f"wireguard:{wg_port}:{wg_mtu}"}.get(mode, mode)
        framer = state.tunnel_sessions.get(key)
        if framer is None:
            framer = state.tunnel_sessions[key] = {
                "ipip": IpipEncap,
                "vxlan": lambda: VxlanEncap(vni=vni, port=port),
                # The simulator cannot know the nodes' private keys: it runs WireGuard with keys
                # of its own per node (the trace says so); the framing is real.
                "wireguard": lambda: WireGuardEncap(port=wg_port, mtu=wg_mtu),
            }[mode]()
        return framer

    def encapsulate(self, node: str, iface: Interface, packet: Packet, via: IPv4Address | None,
                    state: RunState) -> EncapRecord | str:
        peer = self.peer(iface, via, packet.dst)
        if isinstance(peer, str):
            return peer
        framer = self.framer(iface.mode, state, node)
        local = self.endpoints[node]
        sent_before = len(getattr(framer, "control_packets", ()))
        wire = framer.encapsulate(to_bytes(packet), local, peer)
        outer = _outer_packet(wire, packet)
        preamble, keylog = (), ""
        if iface.kind is IfaceKind.WIREGUARD:
            preamble = tuple(framer.control_packets[sent_before:])
            keylog = framer.keylog_lines(local, peer)
        return EncapRecord(node, iface.mode, packet, outer, outer.length - packet.length,
                           self._detail(node, iface, peer), wire, preamble, keylog)

    def _detail(self, node: str, iface: Interface, peer: TunnelEndpoint) -> str:
        if iface.kind is IfaceKind.IPIP:
            return f"IPIP to {peer.node} ({peer.underlay_ip})"
        if iface.kind is IfaceKind.VXLAN:
            vni = self.vxlan_of(node)[0]
            return (f"VXLAN VNI {vni} to VTEP {peer.vtep_ip} ({peer.vtep_mac}) at "
                    f"{peer.underlay_ip}")
        return f"WireGuard transport data to peer {peer.node} ({peer.underlay_ip})"


def _outer_packet(wire: bytes, inner: Packet) -> Packet:
    """The outer header fields as framed, carrying the inner packet."""
    header = ipv4.parse_header(wire)
    sport = dport = None
    if header.protocol == ipv4.PROTO_UDP:
        sport, dport, *_ = ipv4.parse_udp(wire[header.header_length:])
    return Packet(header.src, header.dst, header.protocol, sport=sport, dport=dport,
                  ttl=header.ttl, length=len(wire), df=header.df, inner=inner)
