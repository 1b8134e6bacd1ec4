"""Each node's routing table as Calico programs it.

Sources: felix route_mgr.go / vxlan_mgr.go / ipip_mgr.go / wireguard.go and the CNI plugin
(calico-dataplane.md §3.6, §7). Per node:

* ``<pod ip>/32 dev cali… scope link`` for each local workload (CNI + felix endpoint manager);
* ``blackhole <block>`` for each block the node owns, so unknown addresses in it are dropped;
* per remote block, by the pool's mode: ``via <node ip> dev tunl0 onlink`` (IPIP),
  ``via <vtep ip> dev vxlan.calico onlink`` (VXLAN), ``via <node ip> dev eth0`` (no encap,
  or CrossSubnet within the node's subnet), or ``dev wireguard.cali`` in table 1 when WireGuard
  is on (selected by the ip rule ``not fwmark <wg mark> lookup 1``, priority 99);
* the underlay subnet ``dev eth0 scope link`` and a default route to the underlay gateway.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network, ip_network

from tracer.dataplane.interfaces import IPIP_DEVICE, UNDERLAY_DEVICE, VXLAN_DEVICE
from tracer.dataplane.routing import WIREGUARD_TABLE, Route, RoutingTable
from tracer.model.cluster import Cluster, IPPool, Node


def pool_for(cluster: Cluster, addr: IPv4Address) -> IPPool | None:
    for pool in cluster.ippools.values():
        if addr in pool.cidr:
            return pool
    return None


def block_owners(cluster: Cluster) -> dict[IPv4Network, str]:
    """Which node owns each IPAM block: the node whose pods (and tunnel address) sit in it.

    A block shared by pods of several nodes (borrowed addresses) goes to the node with most
    addresses in it; the others get /32 routes, as Calico does for borrowed IPs.
    """
    counts: dict[IPv4Network, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for node_name, addr in _node_owned_addresses(cluster):
        pool = pool_for(cluster, addr)
        if pool is None:
            continue
        counts[block_of(addr, pool.block_size)][node_name] += 1
    return {block: max(sorted(per_node), key=lambda n: per_node[n])
            for block, per_node in counts.items()}


def block_of(addr: IPv4Address, size: int) -> IPv4Network:
    """The /``size`` IPAM block holding ``addr``."""
    return IPv4Network((int(addr) >> (32 - size) << (32 - size), size))


@dataclass(frozen=True)
class ClusterRoutes:
    """What every node's routing table needs about the whole cluster, computed once: each
    block's owner, and the pods outside their node's block (borrowed addresses), which every
    other node reaches by a /32 of their own."""

    owners: dict[IPv4Network, str]
    borrowed: dict[str, IPPool]               # endpoint key -> the pool of its address


def cluster_routes(cluster: Cluster) -> ClusterRoutes:
    owners = block_owners(cluster)
    borrowed = {}
    for ep in cluster.endpoints.values():
        pool = pool_for(cluster, ep.pod.ip)
        if pool is None:
            continue
        if owners.get(block_of(ep.pod.ip, pool.block_size)) not in (ep.pod.node, None):
            borrowed[ep.key] = pool
    return ClusterRoutes(owners, borrowed)


def _node_owned_addresses(cluster: Cluster):
    for ep in cluster.endpoints.values():
        yield ep.pod.node, ep.pod.ip
    for node in cluster.nodes.values():
        for addr in (node.ipip_tunnel_address, node.vxlan_tunnel_address,
                     node.wireguard_interface_address):
            if addr is not None:
                yield node.name, addr


def _same_subnet(local: Node, remote: Node) -> bool:
    return remote.address.ip in local.address.network


def remote_route(pool: IPPool, local: Node, remote: Node, dst: IPv4Network) -> Route:
    """The route felix/BIRD programs on ``local`` towards ``dst`` owned by ``remote``."""
    same_subnet = _same_subnet(local, remote)
    vxlan = pool.vxlan_mode == "Always" or (pool.vxlan_mode == "CrossSubnet" and not same_subnet)
    ipip = pool.ipip_mode == "Always" or (pool.ipip_mode == "CrossSubnet" and not same_subnet)
    if vxlan and remote.vxlan_tunnel_address is not None:
        return Route(dst=dst, dev=VXLAN_DEVICE, via=remote.vxlan_tunnel_address, onlink=True,
                     origin="felix")
    if ipip:
        return Route(dst=dst, dev=IPIP_DEVICE, via=remote.address.ip, onlink=True, origin="bird")
    return Route(dst=dst, dev=UNDERLAY_DEVICE, via=remote.address.ip, origin="bird")


def node_routing_table(cluster: Cluster, node_name: str, *, wireguard_mark: int | None = None,
                       underlay_gateway: IPv4Address | None = None,
                       shared: ClusterRoutes | None = None) -> RoutingTable:
    """``shared``: :func:`cluster_routes` of the cluster, computed once for all its nodes."""
    node = cluster.nodes[node_name]
    routes: list[Route] = []
    shared = shared or cluster_routes(cluster)
    owners = shared.owners
    felix = cluster.felix_for(node_name)
    wireguard = felix.wireguard_enabled

    for ep in sorted(cluster.endpoints.values(), key=lambda e: e.key):
        if ep.pod.node == node_name:
            routes.append(Route(dst=IPv4Network((ep.pod.ip, 32)), dev=ep.interface,
                                scope="link", origin="cni"))
        elif ep.key in shared.borrowed:
            # A pod outside its node's block (borrowed address) needs its own /32.
            routes.append(remote_route(shared.borrowed[ep.key], node,
                                       cluster.nodes[ep.pod.node], IPv4Network((ep.pod.ip, 32))))

    for block, owner in sorted(owners.items(), key=lambda item: (int(item[0].network_address),
                                                                  item[0].prefixlen)):
        pool = pool_for(cluster, block.network_address)
        assert pool is not None
        if owner == node_name:
            routes.append(Route(dst=block, dev=None, kind="blackhole", origin="felix"))
            continue
        remote = cluster.nodes[owner]
        if wireguard and remote.wireguard_public_key and node.wireguard_public_key:
            routes.append(Route(dst=block, dev=felix.wireguard_interface_name,
                                scope="link", table=WIREGUARD_TABLE, origin="felix"))
        routes.append(remote_route(pool, node, remote, block))

    routes.append(Route(dst=node.address.network, dev=UNDERLAY_DEVICE, scope="link",
                        origin="kernel"))
    if underlay_gateway is not None:
        routes.append(Route(dst=ip_network("0.0.0.0/0"), dev=UNDERLAY_DEVICE,
                            via=underlay_gateway, origin="dhcp"))

    local = {node.address.ip, IPv4Address("127.0.0.1")}
    for addr in (node.ipip_tunnel_address, node.vxlan_tunnel_address,
                 node.wireguard_interface_address):
        if addr is not None:
            local.add(addr)
    return RoutingTable(node=node_name, routes=tuple(routes), local_addresses=frozenset(local),
                        wireguard_mark=wireguard_mark if wireguard else None)


def underlay_gateway(cluster: Cluster) -> IPv4Address | None:
    """The router on the underlay that external traffic goes through: the last usable address
    of the first node's subnet that no node uses (the external-host side in the kernel lab)."""
    nodes = sorted(cluster.nodes.values(), key=lambda n: n.name)
    if not nodes:
        return None
    used = {n.address.ip for n in nodes}
    candidate = nodes[0].address.network.broadcast_address - 1
    while candidate in used:
        candidate -= 1
    return candidate
