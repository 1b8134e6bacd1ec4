"""Build a :class:`TopologySpec` as real network namespaces, the way CNI and felix wire a node.

Per node namespace: ``eth0`` on the shared underlay (a bridge in its own namespace), one
``cali…`` veth per pod (host MAC ``ee:ee:ee:ee:ee:ee``, ``/32`` route with scope link,
proxy ARP without delay, forwarding, route_localnet: felix's
``configureProcSysForInterface``), the node's routes, an optional ``vxlan.calico`` device
with static ARP and FDB entries (felix's ``vxlan_mgr.go`` / ``vxlanfdb``), then its ipsets
and iptables rules restored inside the namespace. Per pod namespace: ``eth0`` with the pod
IP as ``/32``, a link route to ``169.254.1.1`` and the default route via it (the CNI
plugin's layout). All netlink work goes through pyroute2 in the target namespace.
"""

from __future__ import annotations

import os
import shutil
import socket
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Interface

from pyroute2 import IPRoute

from tracer.errors import InputError
from tracer.kernel import cleanup, nsexec
from tracer.kernel.topology import (CALI_HOST_MAC, POD_GATEWAY, UNDERLAY_DEVICE, VXLAN_DEVICE,
                                    NodeSpec, PodSpec, RouteSpec, TopologySpec, validate)

BRIDGE = "br0"
VXLAN_MTU = 1450              # felix: host MTU 1500 minus the 50-byte VXLAN overhead
NUD_PERMANENT = 0x80
RT_SCOPES = {"universe": 0, "link": 253}
RT_TYPES = {"unicast": 1, "blackhole": 6, "throw": 9}


REQUIRED_BINARIES = ("iptables", "iptables-restore", "ipset", "xtables-monitor")


def missing_requirements() -> str | None:
    """Why a lab cannot run here (not root, a binary missing), or None."""
    if os.geteuid() != 0:
        return "needs root (network namespaces, iptables)"
    missing = [b for b in REQUIRED_BINARIES if shutil.which(b) is None]
    return f"missing binaries: {', '.join(missing)}" if missing else None


class LabError(RuntimeError):
    """The kernel refused part of the topology; the message names the namespace and step."""


@dataclass
class LabNamespaces:
    """Which namespace plays which role."""

    underlay: str = ""
    external: str | None = None
    nodes: dict[str, str] = field(default_factory=dict)
    pods: dict[str, str] = field(default_factory=dict)

    def all(self) -> list[str]:
        names = [self.underlay, self.external, *self.nodes.values(), *self.pods.values()]
        return [n for n in names if n]


class KernelLab(cleanup.OwnedNamespaces):
    """Context manager: realise ``spec`` on enter, remove every namespace on exit."""

    def __init__(self, spec: TopologySpec) -> None:
        super().__init__()
        self.spec = spec
        self.ns = LabNamespaces()

    def __enter__(self) -> "KernelLab":
        validate(self.spec)
        return super().__enter__()

    # -- lookups for probes ---------------------------------------------------------------

    def netns_of_pod(self, key: str) -> str:
        return self.ns.pods[key]

    def netns_of_node(self, name: str) -> str:
        return self.ns.nodes[name]

    def netns_of_address(self, addr: IPv4Address) -> str | None:
        """The namespace that owns ``addr``: a pod, a node (underlay or VTEP) or the external host."""
        node, pod = self.spec.owner_of(addr)
        if pod is not None:
            return self.ns.pods[pod.key]
        if node is not None:
            return self.ns.nodes[node.name]
        gateway = self.spec.underlay_gateway
        if gateway is not None and gateway.ip == addr:
            return self.ns.external
        return None

    # -- building -------------------------------------------------------------------------

    def _build(self) -> None:
        self.ns.underlay = self.new_namespace()
        with IPRoute(netns=self.ns.underlay, flags=0) as ipr:
            ipr.link("add", ifname=BRIDGE, kind="bridge")
            ipr.link("set", index=_index(ipr, BRIDGE), state="up")
        for number, node in enumerate(self.spec.nodes):
            self.ns.nodes[node.name] = self.new_namespace()
            self._attach_to_underlay(self.ns.nodes[node.name], f"u{number}", node.underlay)
        if self.spec.underlay_gateway is not None:
            self.ns.external = self.new_namespace()
            self._attach_to_underlay(self.ns.external, "uext", self.spec.underlay_gateway)
            with IPRoute(netns=self.ns.external, flags=0) as ipr:
                eth0 = _index(ipr, UNDERLAY_DEVICE)
                for route in self.spec.external_routes:
                    ipr.route("add", dst=str(route.dst), gateway=str(route.via), oif=eth0)
        for node in self.spec.nodes:
            self._build_node(node)

    def _attach_to_underlay(self, ns: str, port: str, address: IPv4Interface) -> None:
        """``eth0`` in ``ns``, its peer ``port`` enslaved to the underlay bridge."""
        with IPRoute(netns=ns, flags=0) as ipr:
            ipr.link("add", ifname=UNDERLAY_DEVICE, kind="veth",
                     peer={"ifname": port, "net_ns_fd": self.ns.underlay})
            eth0 = _index(ipr, UNDERLAY_DEVICE)
            ipr.addr("add", index=eth0, address=str(address.ip),
                     prefixlen=address.network.prefixlen)
            ipr.link("set", index=eth0, state="up")
        with IPRoute(netns=self.ns.underlay, flags=0) as ipr:
            ipr.link("set", index=_index(ipr, port), master=_index(ipr, BRIDGE), state="up")

    def _build_node(self, node: NodeSpec) -> None:
        ns = self.ns.nodes[node.name]
        sysctls: dict[str, int] = {"net/ipv4/ip_forward": 1}
        for pod in node.pods:
            self._build_pod(node, pod)
            sysctls.update(_workload_sysctls(pod.interface))
        nsexec.write_sysctls(ns, sysctls)
        with IPRoute(netns=ns, flags=0) as ipr:
            if node.vxlan is not None:
                self._build_vxlan(ipr, node)
            for route in node.routes:
                _add_route(ipr, node, route)
            if not any(r.dst.prefixlen == 0 and r.table == 254 for r in node.routes):
                # Proxy ARP answers only for addresses routed out of another interface, so
                # the node needs a default route, as any real node has.
                self._add_default_route(ipr, node)
        self._restore_rules(node)

    def _build_pod(self, node: NodeSpec, pod: PodSpec) -> None:
        node_ns = self.ns.nodes[node.name]
        pod_ns = self.ns.pods[pod.key] = self.new_namespace()
        with IPRoute(netns=node_ns, flags=0) as ipr:
            ipr.link("add", ifname=pod.interface, kind="veth",
                     peer={"ifname": "eth0", "net_ns_fd": pod_ns})
            cali = _index(ipr, pod.interface)
            ipr.link("set", index=cali, address=CALI_HOST_MAC, state="up")
            ipr.route("replace", dst=f"{pod.ip}/32", oif=cali, scope=RT_SCOPES["link"])
        with IPRoute(netns=pod_ns, flags=0) as ipr:
            eth0 = _index(ipr, "eth0")
            if pod.mac:
                ipr.link("set", index=eth0, address=pod.mac)
            ipr.addr("add", index=eth0, address=str(pod.ip), prefixlen=32)
            ipr.link("set", index=eth0, state="up")
            ipr.route("add", dst=f"{POD_GATEWAY}/32", oif=eth0, scope=RT_SCOPES["link"])
            ipr.route("add", dst="0.0.0.0/0", gateway=str(POD_GATEWAY), oif=eth0)

    def _build_vxlan(self, ipr: IPRoute, node: NodeSpec) -> None:
        vx = node.vxlan
        assert vx is not None
        ipr.link("add", ifname=VXLAN_DEVICE, kind="vxlan", vxlan_id=vx.vni,
                 vxlan_port=vx.port, vxlan_local=str(node.underlay.ip),
                 vxlan_link=_index(ipr, UNDERLAY_DEVICE), vxlan_learning=0)
        dev = _index(ipr, VXLAN_DEVICE)
        ipr.link("set", index=dev, address=vx.vtep_mac, mtu=VXLAN_MTU)
        ipr.addr("add", index=dev, address=str(vx.vtep_ip), prefixlen=32)
        ipr.link("set", index=dev, state="up")
        for vtep_ip, vtep_mac, underlay_ip in vx.peers:
            ipr.neigh("add", dst=str(vtep_ip), lladdr=vtep_mac, ifindex=dev,
                      state=NUD_PERMANENT)
            ipr.fdb("add", ifindex=dev, lladdr=vtep_mac, dst=str(underlay_ip),
                    state=NUD_PERMANENT)

    def _add_default_route(self, ipr: IPRoute, node: NodeSpec) -> None:
        eth0 = _index(ipr, UNDERLAY_DEVICE)
        gateway = self.spec.underlay_gateway
        if gateway is not None and gateway.ip in node.underlay.network:
            ipr.route("add", dst="0.0.0.0/0", gateway=str(gateway.ip), oif=eth0)
        else:
            ipr.route("add", dst="0.0.0.0/0", oif=eth0, scope=RT_SCOPES["link"])

    def _restore_rules(self, node: NodeSpec) -> None:
        ns = self.ns.nodes[node.name]
        try:
            if node.ipsets.strip():
                nsexec.run(ns, ["ipset", "restore"], input_text=node.ipsets)
            if node.iptables.strip():
                nsexec.run(ns, ["iptables-restore", "-w"], input_text=node.iptables)
        except nsexec.CommandFailed as exc:
            raise InputError(f"kernel refused the ruleset: {exc}", obj=node.name) from None


def _workload_sysctls(iface: str) -> dict[str, int]:
    """felix's configureProcSysForInterface (IPv4); rp_filter is left at the namespace
    default, which is exactly what felix copies into it."""
    return {f"net/ipv4/conf/{iface}/route_localnet": 1,
            f"net/ipv4/neigh/{iface}/proxy_delay": 0,
            f"net/ipv4/conf/{iface}/proxy_arp": 1,
            f"net/ipv4/conf/{iface}/forwarding": 1}


def _index(ipr: IPRoute, ifname: str) -> int:
    found = ipr.link_lookup(ifname=ifname)
    if not found:
        raise LabError(f"interface {ifname} not found")
    return found[0]


def _add_route(ipr: IPRoute, node: NodeSpec, route: RouteSpec) -> None:
    request: dict[str, object] = {"dst": str(route.dst), "table": route.table,
                                  "type": RT_TYPES[route.kind], "family": socket.AF_INET}
    if route.kind == "unicast":
        request["scope"] = RT_SCOPES[route.scope]
        if route.dev is not None:
            request["oif"] = _index(ipr, route.dev)
        if route.via is not None:
            request["gateway"] = str(route.via)
        if route.onlink:
            request["flags"] = ["onlink"]
    try:
        # replace, not add: the spec may repeat routes the kernel or CNI already made
        # (the underlay subnet, a pod's /32).
        ipr.route("replace", **request)
    except Exception as exc:  # pyroute2 raises NetlinkError with the kernel's errno
        raise LabError(f"{node.name}: route {route} refused by the kernel: {exc}") from None
