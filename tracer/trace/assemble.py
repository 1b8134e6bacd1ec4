"""Assemble a cluster's dataplane: each node's ruleset (felix and kube-proxy, or a user's dump),
ipsets, routing tables and interface table, built once when a packet first reaches the node.

The :class:`Dataplane` is immutable: a node, once built, never changes, and runs carry their
own state (``tracer.dataplane.state``). Nodes are built on first access, so a trace through
two nodes of a hundred-node cluster renders two nodes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from ipaddress import IPv4Address, IPv4Network

from tracer.dataplane.interfaces import (IPIP_DEVICE, LOOPBACK_DEVICE, UNDERLAY_DEVICE,
                                         VXLAN_DEVICE, IfaceKind, Interface, InterfaceTable)
from tracer.dataplane.ir import Ruleset
from tracer.dataplane.iptables_save import with_gap_warnings
from tracer.dataplane.lazy import LazyMapping
from tracer.dataplane.node import NodeDataplane
from tracer.dataplane.pipeline import Pipeline
from tracer.dataplane.routing import RoutingTable
from tracer.dataplane.stages import TableRunner
from tracer.dataplane.tunnels import TunnelDirectory
from tracer.encap.base import TunnelEndpoint
from tracer.encap.mtu import OVERHEADS
from tracer.encap.vxlan import vtep_mac
from tracer.kubeproxy.merge import with_kube_proxy
from tracer.model.cluster import Cluster
from tracer.policy.evaluate import PolicyIndex
from tracer.policy.felix import mark_bits, render_node
from tracer.trace.prepared import PreparedCluster, prepare
from tracer.trace.routes import (ClusterRoutes, cluster_routes, node_routing_table,
                                 underlay_gateway)


@dataclass(frozen=True)
class Mtus:
    """Interface MTUs as calico-node auto-detects them (veth_mtu "0" in calico.yaml): every
    tunnel device gets host MTU minus its overhead, and pods get the smallest in use."""

    host: int
    ipip: int
    vxlan: int
    wireguard: int
    pod: int


def mtus(cluster: Cluster, node: str | None = None) -> Mtus:
    """``node``: with its own FelixConfiguration (``node.<name>``); the default one without."""
    felix = cluster.felix_for(node)
    host = felix.host_mtu
    ipip = felix.ipip_mtu or host - OVERHEADS["ipip"]
    vxlan = felix.vxlan_mtu or host - OVERHEADS["vxlan"]
    wireguard = felix.wireguard_mtu or host - OVERHEADS["wireguard"]
    candidates = [host]
    if ipip_enabled(cluster):
        candidates.append(ipip)
    if vxlan_enabled(cluster):
        candidates.append(vxlan)
    if felix.wireguard_enabled:
        candidates.append(wireguard)
    return Mtus(host, ipip, vxlan, wireguard, min(candidates))


def ipip_enabled(cluster: Cluster) -> bool:
    """calico-node turns IPIP on (and felix configures tunl0) when an enabled pool uses it."""
    return any(p.ipip_mode != "Never" for p in cluster.ippools.values() if not p.disabled)


def vxlan_enabled(cluster: Cluster) -> bool:
    return any(p.vxlan_mode != "Never" for p in cluster.ippools.values() if not p.disabled)


def interface_table(cluster: Cluster, node_name: str) -> InterfaceTable:
    """The node's devices: loopback, underlay, the tunnels felix configures, pod veths."""
    node, felix = cluster.nodes[node_name], cluster.felix_for(node_name)
    sizes = mtus(cluster, node_name)
    devices = [Interface(LOOPBACK_DEVICE, IfaceKind.LOOPBACK, 65536, IPv4Address("127.0.0.1")),
               Interface(UNDERLAY_DEVICE, IfaceKind.UNDERLAY, sizes.host, node.address.ip)]
    if ipip_enabled(cluster):
        devices.append(Interface(IPIP_DEVICE, IfaceKind.IPIP, sizes.ipip,
                                 node.ipip_tunnel_address))
    if vxlan_enabled(cluster):
        devices.append(Interface(VXLAN_DEVICE, IfaceKind.VXLAN, sizes.vxlan,
                                 node.vxlan_tunnel_address, udp_port=felix.vxlan_port))
    if felix.wireguard_enabled:
        devices.append(Interface(felix.wireguard_interface_name, IfaceKind.WIREGUARD,
                                 sizes.wireguard, node.wireguard_interface_address,
                                 udp_port=felix.wireguard_listening_port))
    for ep in sorted(cluster.endpoints.values(), key=lambda e: e.key):
        if ep.pod.node == node_name:
            devices.append(Interface(ep.interface, IfaceKind.WORKLOAD, sizes.pod, ep.pod.ip,
                                     endpoint=ep.key))
    return InterfaceTable(tuple(devices), felix.interface_prefixes)


def tunnel_directory(cluster: Cluster, routes: ClusterRoutes | None = None) -> TunnelDirectory:
    """What felix programs about the other nodes: VTEPs, IPIP peers, WireGuard peers."""
    felix = cluster.felix
    endpoints = {
        n.name: TunnelEndpoint(n.name, n.address.ip, vtep_ip=n.vxlan_tunnel_address,
                               vtep_mac=n.vxlan_tunnel_mac or vtep_mac(n.name))
        for n in cluster.nodes.values()}
    routes = routes or cluster_routes(cluster)
    owners: list[tuple[IPv4Network, str]] = []
    if any(cluster.felix_for(name).wireguard_enabled for name in cluster.nodes):
        # only WireGuard peers are found by address
        owners += routes.owners.items()
        owners += [(IPv4Network((ep.pod.ip, 32)), ep.pod.node)
                   for ep in cluster.endpoints.values()]
    own = {name: cluster.felix_for(name) for name in cluster.nodes}
    vxlan = {name: (c.vxlan_vni, c.vxlan_port) for name, c in own.items() if c is not felix}
    wireguard = {name: (c.wireguard_listening_port, mtus(cluster, name).wireguard)
                 for name, c in own.items() if c is not felix}
    return TunnelDirectory(
        endpoints=endpoints, wireguard_owners=tuple(owners), vxlan_vni=felix.vxlan_vni,
        vxlan_port=felix.vxlan_port, wireguard_port=felix.wireguard_listening_port,
        wireguard_mtu=mtus(cluster).wireguard, vxlan_by_node=vxlan,
        wireguard_by_node=wireguard)


class LazyNodes(LazyMapping[str, NodeDataplane]):
    """Node name -> dataplane, each built the first time a packet reaches it."""

    @property
    def built(self) -> tuple[str, ...]:
        """The nodes built so far (what a run has reached)."""
        return tuple(sorted(super().built))


@dataclass(frozen=True)
class Dataplane:
    cluster: Cluster
    version: str
    nodes: LazyNodes
    pipeline: Pipeline
    policy_index: PolicyIndex | None = None     # the evaluator's index of this cluster

    def with_tables(self, tables: TableRunner, conntrack_table=None) -> "Dataplane":
        """The same nodes, netfilter tables run by ``tables`` (an engine), conntrack tables
        made by ``conntrack_table`` when given."""
        return replace(self, pipeline=self.pipeline.with_tables(tables, conntrack_table))


def build_dataplane(cluster: Cluster, *, version: str,
                    rulesets: Mapping[str, tuple[Ruleset, str]] | None = None,
                    routing: Mapping[str, RoutingTable] | None = None,
                    interfaces: Mapping[str, InterfaceTable] | None = None,
                    prepared: PreparedCluster | None = None) -> Dataplane:
    """``rulesets`` replaces the rendered ruleset of some nodes: node -> (ruleset, source);
    ``routing`` and ``interfaces`` replace the derived routes and devices of some nodes (a
    diags bundle's own). ``prepared``: the cluster's shared indexes if already at hand (from
    the cache); built here otherwise, once for all the nodes."""
    supplied = dict(rulesets or {})
    given_routing = dict(routing or {})
    given_interfaces = dict(interfaces or {})
    if prepared is None or prepared.cluster is not cluster:
        prepared = prepare(cluster)
    facts, routes = prepared.facts, prepared.routes
    gateway = underlay_gateway(cluster)

    def build(name: str) -> NodeDataplane:
        given = supplied.get(name)
        if given is None:
            ruleset = render_node(cluster, name, version=version, facts=facts)
            if cluster.services:               # kube-proxy (iptables mode) runs beside felix
                ruleset = with_kube_proxy(cluster, name, ruleset, version=version)
        marks = mark_bits(version, cluster.felix_for(name))
        table = given_routing.get(name) or node_routing_table(
            cluster, name, wireguard_mark=marks.wireguard, underlay_gateway=gateway,
            shared=routes)
        devices = given_interfaces.get(name) or interface_table(cluster, name)
        if given is not None:
            known = frozenset(i.name for i in devices.interfaces) | frozenset(
                r.dev for r in table.routes if r.dev)
            ruleset = with_gap_warnings(given[0], given[1], known)
        return NodeDataplane(
            name=name, ruleset=ruleset, routing=table, interfaces=devices,
            underlay_ip=cluster.nodes[name].address.ip, rendered=given is None,
            source=given[1] if given else f"rendered (Calico v{version})")

    nodes = LazyNodes(tuple(sorted(cluster.nodes)), build)
    underlay = {n.address.ip: n.name for n in cluster.nodes.values()}
    pipeline = Pipeline(nodes, underlay=underlay, tunnels=tunnel_directory(cluster, routes))
    return Dataplane(cluster=cluster, version=version, nodes=nodes, pipeline=pipeline,
                     policy_index=prepared.policy_index)
