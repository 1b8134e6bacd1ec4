"""Assemble every node's dataplane from a cluster: rendered (or user-supplied) rulesets,
ipsets, routing tables and interface MTUs."""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Address

from tracer.dataplane.ipsets import IpSetIndex
from tracer.dataplane.ir import Ruleset
from tracer.dataplane.node import NodeDataplane, NodeEnvironment
from tracer.dataplane.pipeline import Pipeline
from tracer.dataplane.routing import (IPIP_IFACE, UNDERLAY_IFACE, VXLAN_IFACE,
                                      node_routing_table, underlay_gateway)
from tracer.dataplane.tunnels import ClusterTunnels
from tracer.encap.mtu import OVERHEADS as OVERHEAD
from tracer.kubeproxy.merge import with_kube_proxy
from tracer.model.cluster import Cluster
from tracer.policy.felix import mark_bits, render_node


@dataclass(frozen=True)
class Mtus:
    """Interface MTUs as calico-node auto-detects them (veth_mtu "0" in calico.yaml): every
    tunnel device gets host MTU minus its overhead, and pods get the smallest in use."""

    host: int
    ipip: int
    vxlan: int
    wireguard: int
    pod: int


def mtus(cluster: Cluster) -> Mtus:
    felix = cluster.felix
    host = felix.host_mtu
    ipip = felix.ipip_mtu or host - OVERHEAD["ipip"]
    vxlan = felix.vxlan_mtu or host - OVERHEAD["vxlan"]
    wireguard = felix.wireguard_mtu or host - OVERHEAD["wireguard"]
    pools = [p for p in cluster.ippools.values() if not p.disabled]
    candidates = [host]
    if any(p.ipip_mode != "Never" for p in pools):
        candidates.append(ipip)
    if any(p.vxlan_mode != "Never" for p in pools):
        candidates.append(vxlan)
    if felix.wireguard_enabled:
        candidates.append(wireguard)
    return Mtus(host, ipip, vxlan, wireguard, min(candidates))


@dataclass
class Dataplane:
    cluster: Cluster
    version: str
    nodes: dict[str, NodeDataplane]
    pipeline: Pipeline


def build_dataplane(cluster: Cluster, *, version: str,
                    rulesets: dict[str, tuple[Ruleset, str]] | None = None) -> Dataplane:
    """``rulesets`` replaces the rendered ruleset of some nodes: node -> (ruleset, source)."""
    rulesets = rulesets or {}
    sizes = mtus(cluster)
    marks = mark_bits(version, cluster.felix)
    gateway = underlay_gateway(cluster)
    prefixes = tuple(p.strip() for p in cluster.felix.interface_prefix.split(",") if p.strip())
    nodes: dict[str, NodeDataplane] = {}
    for name, node in sorted(cluster.nodes.items()):
        supplied = rulesets.get(name)
        ruleset = supplied[0] if supplied else render_node(cluster, name, version=version)
        if cluster.services and not supplied:   # kube-proxy (iptables mode) runs beside felix
            ruleset = with_kube_proxy(cluster, name, ruleset, version=version)
        routing = node_routing_table(cluster, name, wireguard_mark=marks.wireguard,
                                     underlay_gateway=gateway)
        interfaces = {UNDERLAY_IFACE: sizes.host, IPIP_IFACE: sizes.ipip,
                      VXLAN_IFACE: sizes.vxlan,
                      cluster.felix.wireguard_interface_name: sizes.wireguard}
        for ep in cluster.endpoints.values():
            if ep.pod.node == name:
                interfaces[ep.interface] = sizes.pod
        addresses = {UNDERLAY_IFACE: node.address.ip}
        for iface, addr in ((IPIP_IFACE, node.ipip_tunnel_address),
                            (VXLAN_IFACE, node.vxlan_tunnel_address),
                            (cluster.felix.wireguard_interface_name,
                             node.wireguard_interface_address)):
            if addr is not None:
                addresses[iface] = addr
        env = NodeEnvironment(routing=routing, ipsets=IpSetIndex(ruleset.ipsets))
        nodes[name] = NodeDataplane(
            name=name, ruleset=ruleset, routing=routing, underlay_ip=node.address.ip,
            interfaces=interfaces, environment=env, rendered=supplied is None,
            source=supplied[1] if supplied else f"rendered (Calico v{version})",
            workload_prefixes=prefixes or ("cali",), addresses=addresses)

    def deliver_local(node: str, dst: IPv4Address) -> str | None:
        ep = cluster.endpoint_by_ip(dst)
        return f"pod {ep.key}" if ep is not None and ep.pod.node == node else None

    pipeline = Pipeline(nodes, deliver_local=deliver_local, tunnels=ClusterTunnels(cluster))
    return Dataplane(cluster=cluster, version=version, nodes=nodes, pipeline=pipeline)
