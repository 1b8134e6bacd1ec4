"""A node's network interfaces, typed: the one place the pipeline learns what a device is.

Built once when the dataplane is assembled (from the cluster and FelixConfiguration, or from a
real node's dump), then only read: tunnel detection, decapsulation, MTU checks, local delivery
and MASQUERADE's source address all ask this table, so a configured VXLAN port or WireGuard
interface name is honoured everywhere at once.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from ipaddress import IPv4Address

from tracer.protocols import IPIP, UDP


class IfaceKind(StrEnum):
    LOOPBACK = "loopback"
    UNDERLAY = "underlay"              # the node's uplink (eth0 in the kernel lab)
    WORKLOAD = "workload"              # a pod's host-side veth (cali…)
    HOST_ENDPOINT = "host-endpoint"    # an interface a HostEndpoint names, other than eth0
    IPIP = "ipip"                      # tunl0
    VXLAN = "vxlan"                    # vxlan.calico
    WIREGUARD = "wireguard"            # wireguard.cali (FelixConfiguration names it)


TUNNEL_KINDS = frozenset({IfaceKind.IPIP, IfaceKind.VXLAN, IfaceKind.WIREGUARD})


@dataclass(frozen=True)
class Interface:
    name: str
    kind: IfaceKind
    mtu: int
    address: IPv4Address | None = None
    udp_port: int | None = None        # VXLAN / WireGuard: the port the device listens on
    endpoint: str | None = None        # WORKLOAD: the pod ("ns/name") behind the veth

    @property
    def is_tunnel(self) -> bool:
        return self.kind in TUNNEL_KINDS

    @property
    def mode(self) -> str:
        """The encapsulation mode name of a tunnel device ("ipip", "vxlan", "wireguard")."""
        return self.kind.value


@dataclass(frozen=True)
class InterfaceTable:
    """Every interface of one node by name, plus felix's workload prefixes for names the
    table does not hold (an interface felix would claim but no endpoint explains)."""

    interfaces: tuple[Interface, ...]
    workload_prefixes: tuple[str, ...] = ("cali",)
    _by_name: dict[str, Interface] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_by_name", {i.name: i for i in self.interfaces})

    def __getitem__(self, name: str) -> Interface:
        return self._by_name[name]

    def __contains__(self, name: object) -> bool:
        return name in self._by_name

    def get(self, name: str | None) -> Interface | None:
        return self._by_name.get(name) if name is not None else None

    def of_kind(self, kind: IfaceKind) -> tuple[Interface, ...]:
        return tuple(i for i in self.interfaces if i.kind is kind)

    def is_workload_name(self, name: str | None) -> bool:
        """Whether felix treats ``name`` as a workload interface (its prefix list)."""
        return bool(name) and name.startswith(self.workload_prefixes)

    def is_tunnel(self, name: str | None) -> bool:
        iface = self.get(name)
        return iface is not None and iface.is_tunnel

    def mtu(self, name: str | None, default: int = 1500) -> int:
        iface = self.get(name)
        return iface.mtu if iface is not None else default

    def tunnel_receiving(self, protocol: int, dport: int | None) -> Interface | None:
        """The tunnel device that takes a packet addressed to this node: IPIP by protocol,
        VXLAN and WireGuard by the UDP port their device listens on (vxlan_rcv / wg's
        socket); None when no such device exists here (the packet is then the host's)."""
        for iface in self.interfaces:
            if iface.kind is IfaceKind.IPIP and protocol == IPIP:
                return iface
            if iface.udp_port is not None and protocol == UDP and dport == iface.udp_port:
                return iface
        return None

    def source_address(self, oif: str | None, fallback: IPv4Address) -> IPv4Address:
        """The address MASQUERADE takes: the outgoing interface's own (inet_select_addr). A
        pod's host-side veth has none (the address on its record is the pod's, at the far
        end), so the kernel takes the first universe-scope address of the namespace: the
        underlay's, ``fallback`` (seen in the kernel lab: a NodePort or hairpin to a pod on
        the same node arrives from the node's address)."""
        iface = self.get(oif)
        if iface is None or iface.address is None or iface.kind is IfaceKind.WORKLOAD:
            return fallback
        return iface.address

# Device names felix and the kernel give (fixed; WireGuard's is FelixConfiguration's), and the
# underlay device of a node as calico-trace realises one.
IPIP_DEVICE = "tunl0"
VXLAN_DEVICE = "vxlan.calico"
UNDERLAY_DEVICE = "eth0"
LOOPBACK_DEVICE = "lo"
