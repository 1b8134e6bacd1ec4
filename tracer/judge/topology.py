"""A cluster's dataplane as a kernel-lab topology: the same rulesets, ipsets and routes the
simulator uses, so the two can only differ in how they execute them."""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Interface, IPv4Network

from tracer.dataplane.interfaces import IfaceKind
from tracer.dataplane.ipsets import format_ipsets
from tracer.dataplane.iptables_save import format_ruleset
from tracer.dataplane.routing import MAIN_TABLE
from tracer.encap.vxlan import vtep_mac
from tracer.kernel.topology import NodeSpec, PodSpec, RouteSpec, TopologySpec, VxlanSpec
from tracer.model.cluster import Cluster
from tracer.trace.assemble import Dataplane
from tracer.trace.routes import block_owners, underlay_gateway

# Tunnel devices this kernel cannot make (no ipip or wireguard module here).
UNBUILDABLE_KINDS = frozenset({IfaceKind.IPIP, IfaceKind.WIREGUARD})


@dataclass(frozen=True)
class LabPlan:
    spec: TopologySpec
    unbuildable: tuple[str, ...]       # "node-1: 10.244.0.64/26 dev tunl0", routes left out

    def crosses_missing_device(self, src_node: str, dst_node: str) -> bool:
        """Whether a packet between the two nodes would need a route we could not build."""
        return src_node != dst_node and bool(self.unbuildable)


def lab_plan(dataplane: Dataplane) -> LabPlan:
    cluster = dataplane.cluster
    gateway = underlay_gateway(cluster)
    vxlan_nodes = {n.name for n in cluster.nodes.values() if n.vxlan_tunnel_address}
    uses_vxlan = any(p.vxlan_mode != "Never" for p in cluster.ippools.values())
    nodes, unbuildable = [], []
    for name, node_dp in sorted(dataplane.nodes.items()):
        node = cluster.nodes[name]
        pods = tuple(PodSpec(ep.key, ep.pod.ip, ep.interface)
                     for ep in sorted(cluster.endpoints.values(), key=lambda e: e.key)
                     if ep.pod.node == name)
        routes = []
        for route in node_dp.routing.routes:
            device = node_dp.interfaces.get(route.dev)
            kind = device.kind if device is not None else None
            if kind in UNBUILDABLE_KINDS:
                unbuildable.append(f"{name}: {route} (the kernel here has no {kind} module)")
                continue
            if route.scope == "link" and kind is IfaceKind.UNDERLAY and route.via is None:
                continue                       # the connected route comes with the address
            if kind is IfaceKind.WORKLOAD:
                continue                       # the lab adds each pod's /32 itself
            routes.append(RouteSpec(route.dst, route.dev, via=route.via, onlink=route.onlink,
                                    kind=route.kind if route.kind != "local" else "unicast",
                                    table=route.table if route.table != MAIN_TABLE
                                    else MAIN_TABLE, scope=route.scope
                                    if route.scope in ("link", "universe") else "universe"))
        vxlan = None
        if uses_vxlan and name in vxlan_nodes:
            peers = tuple((other.vxlan_tunnel_address, _mac(other), other.address.ip)
                          for other in sorted(cluster.nodes.values(), key=lambda n: n.name)
                          if other.name != name and other.vxlan_tunnel_address)
            felix = cluster.felix_for(name)
            vxlan = VxlanSpec(felix.vxlan_vni, felix.vxlan_port,
                              node.vxlan_tunnel_address, _mac(node), peers)
        nodes.append(NodeSpec(name=name, underlay=node.address, pods=pods,
                              routes=tuple(routes),
                              iptables=format_ruleset(node_dp.ruleset),
                              ipsets=format_ipsets(node_dp.ruleset.ipsets), vxlan=vxlan))
    first = min(cluster.nodes.values(), key=lambda n: n.name)
    gw = IPv4Interface(f"{gateway}/{first.address.network.prefixlen}") if gateway else None
    return LabPlan(TopologySpec(nodes=tuple(nodes), underlay_gateway=gw,
                                external_routes=external_routes(cluster)), tuple(unbuildable))


def external_routes(cluster: Cluster) -> tuple[RouteSpec, ...]:
    """The external host reaches each IPAM block through the node that owns it, and a pod
    outside its node's block through its node (a /32), as a BGP-peering router would."""
    owners = block_owners(cluster)
    routes = [RouteSpec(block, "eth0", via=cluster.nodes[owner].address.ip)
              for block, owner in sorted(owners.items(), key=lambda i: str(i[0]))]
    for ep in sorted(cluster.endpoints.values(), key=lambda e: e.key):
        owner = next((node for block, node in owners.items() if ep.pod.ip in block), None)
        if owner != ep.pod.node:
            routes.append(RouteSpec(IPv4Network(f"{ep.pod.ip}/32"), "eth0",
                                    via=cluster.nodes[ep.pod.node].address.ip))
    return tuple(routes)


def _mac(node) -> str:
    return node.vxlan_tunnel_mac or vtep_mac(node.name)
