"""A declarative description of the namespaces to build: nodes, pods, routes, rules, VXLAN.

Plain frozen records with no side effects; :mod:`tracer.kernel.realise` turns them into
network namespaces. ``validate`` checks what the kernel would otherwise reject half-way
through building, so a bad spec fails before any namespace exists.
"""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Interface, IPv4Network
from typing import Literal

from tracer.dataplane.interfaces import UNDERLAY_DEVICE, VXLAN_DEVICE
from tracer.errors import InputError

IFNAMSIZ = 15                      # the kernel's interface name limit, without the NUL
CALI_HOST_MAC = "ee:ee:ee:ee:ee:ee"  # the CNI plugin's host-side veth MAC
POD_GATEWAY = IPv4Address("169.254.1.1")
MAIN_TABLE = 254

RouteKind = Literal["unicast", "blackhole", "throw"]
RouteScope = Literal["universe", "link"]


@dataclass(frozen=True)
class PodSpec:
    """One workload: its key ("ns/name"), address and host-side veth name (``cali…``)."""

    key: str
    ip: IPv4Address
    interface: str
    mac: str | None = None


@dataclass(frozen=True)
class RouteSpec:
    """One route in a node namespace, in the terms ``ip route`` uses."""

    dst: IPv4Network
    dev: str | None
    via: IPv4Address | None = None
    onlink: bool = False
    kind: RouteKind = "unicast"
    table: int = MAIN_TABLE
    scope: RouteScope = "universe"


@dataclass(frozen=True)
class VxlanSpec:
    """The node's ``vxlan.calico`` device and its static peers.

    ``peers`` holds (remote VTEP ip, remote VTEP mac, remote underlay ip), from which felix
    programs one ARP entry (VTEP ip → mac) and one FDB entry (mac → underlay ip) each.
    """

    vni: int
    port: int
    vtep_ip: IPv4Address
    vtep_mac: str
    peers: tuple[tuple[IPv4Address, str, IPv4Address], ...] = ()


@dataclass(frozen=True)
class NodeSpec:
    """A node: underlay address, local pods, routes, and its iptables-save / ipset-save text."""

    name: str
    underlay: IPv4Interface
    pods: tuple[PodSpec, ...] = ()
    routes: tuple[RouteSpec, ...] = ()
    iptables: str = ""
    ipsets: str = ""
    vxlan: VxlanSpec | None = None


@dataclass(frozen=True)
class TopologySpec:
    """Nodes joined on one underlay segment, plus an optional external host on it."""

    nodes: tuple[NodeSpec, ...]
    underlay_gateway: IPv4Interface | None = None
    # The external host's routes to pod addresses, each via the node that owns them, as a
    # router peering with the nodes learns them (BGP).
    external_routes: tuple[RouteSpec, ...] = ()

    def node(self, name: str) -> NodeSpec:
        for node in self.nodes:
            if node.name == name:
                return node
        raise KeyError(name)

    def pod(self, key: str) -> tuple[NodeSpec, PodSpec]:
        for node in self.nodes:
            for pod in node.pods:
                if pod.key == key:
                    return node, pod
        raise KeyError(key)

    def owner_of(self, addr: IPv4Address) -> tuple[NodeSpec | None, PodSpec | None]:
        """The node and pod that own ``addr`` (pod IP, node underlay or VTEP address)."""
        for node in self.nodes:
            for pod in node.pods:
                if pod.ip == addr:
                    return node, pod
            if node.underlay.ip == addr or (node.vxlan and node.vxlan.vtep_ip == addr):
                return node, None
        return None, None


def validate(spec: TopologySpec) -> None:
    """Raise :class:`InputError` for what the kernel would refuse or what would clash."""
    names = [node.name for node in spec.nodes]
    _unique(names, "node name")
    _unique([str(node.underlay.ip) for node in spec.nodes], "underlay address")
    _unique([pod.key for node in spec.nodes for pod in node.pods], "pod key")
    _unique([str(pod.ip) for node in spec.nodes for pod in node.pods], "pod IP")
    if spec.underlay_gateway is not None and str(spec.underlay_gateway.ip) in {
            str(node.underlay.ip) for node in spec.nodes}:
        raise InputError("underlay gateway address is also a node address",
                         obj=str(spec.underlay_gateway))
    for node in spec.nodes:
        _validate_node(node)


def _validate_node(node: NodeSpec) -> None:
    _unique([pod.interface for pod in node.pods], f"interface on node {node.name}")
    devices = {UNDERLAY_DEVICE, "lo"} | {pod.interface for pod in node.pods}
    if node.vxlan is not None:
        devices.add(VXLAN_DEVICE)
    for pod in node.pods:
        if not pod.interface or len(pod.interface) > IFNAMSIZ or pod.interface in (
                UNDERLAY_DEVICE, "lo", VXLAN_DEVICE):
            raise InputError(f"bad host-side interface name {pod.interface!r} "
                             f"(1-{IFNAMSIZ} characters, not a reserved device)", obj=pod.key)
    for route in node.routes:
        if route.kind == "unicast" and route.dev is None and route.via is None:
            raise InputError("unicast route needs a device or a gateway",
                             obj=f"{node.name}: {route.dst}")
        if route.dev is not None and route.dev not in devices:
            # tunl0 and wireguard.cali cannot be built here: the kernel lacks ipip/wireguard.
            raise InputError(f"route uses device {route.dev!r}, which this lab does not "
                             f"create (available: {', '.join(sorted(devices))})",
                             obj=f"{node.name}: {route.dst}")


def _unique(values: list[str], what: str) -> None:
    seen: set[str] = set()
    for value in values:
        if value in seen:
            raise InputError(f"duplicate {what} {value!r}")
        seen.add(value)
