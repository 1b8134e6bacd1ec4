"""The ipsets felix programs on a node, with their members.

Selector sets (``hash:net``) hold every matching endpoint's IPs cluster-wide (workload pods
on any node, host endpoints' expected IPs) and matching network sets' CIDRs; named-port sets
(``hash:ip,port``) hold ``ip,proto:port`` of matching endpoints' named ports
(felix/labelindex/named_port_index.go CalculateEndpointContribution). The fixed sets come from
masq_mgr.go, ipset_hosts_mgr.go, vxlan_mgr.go, hostip_mgr.go and dscp_mgr.go.
"""

from __future__ import annotations

from ipaddress import IPv4Network, ip_network

from tracer.dataplane.ir import IpSet
from tracer.model.cluster import ContainerPort
from tracer.policy.felix.context import Ctx
from tracer.policy.felix.parsed import SetSpec, named_port_protocol

MAX_IPSET_SIZE = 1048576


def _sort_members(members: set[str]) -> tuple[str, ...]:
    def key(member: str):
        addr, _, port = member.partition(",")
        net = ip_network(addr, strict=False)
        return (int(net.network_address), net.prefixlen, port)
    return tuple(sorted(members, key=key))


def _ip_member(net: IPv4Network | str) -> str:
    """MakeCIDROrIPOnly: a /32 is written as the bare address."""
    net = ip_network(str(net), strict=False)
    return str(net.network_address) if net.prefixlen == 32 else str(net)


def _port_matches(port: ContainerPort, spec: SetSpec) -> bool:
    if port.name != spec.named_port:
        return False
    return spec.port_protocol == "any" or named_port_protocol(port.protocol.lower()) == \
        spec.port_protocol


def selector_set(ctx: Ctx, name: str, spec: SetSpec) -> IpSet:
    members: set[str] = set()
    for entry in ctx.facts.selected(spec.selector):
        addrs = entry.addresses
        if spec.named_port is None:
            members.update(_ip_member(a) for a in addrs)
            continue
        for port in entry.ports:
            if _port_matches(port, spec):
                proto = named_port_protocol(port.protocol.lower())
                members.update(f"{_ip_member(a)},{proto}:{port.port}" for a in addrs
                               if "/" not in a or a.endswith("/32"))
    return IpSet(name, spec.set_type, _sort_members(members), maxelem=MAX_IPSET_SIZE)


def fixed_sets(ctx: Ctx) -> list[IpSet]:
    """Sets felix's managers always program for this node's configuration."""
    cluster, node = ctx.cluster, ctx.node
    pools = list(cluster.ippools.values())
    sets = [
        IpSet(ctx.all_pools_set, "hash:net", _sort_members({str(p.cidr) for p in pools})),
        IpSet(ctx.set_name("masq-ipam-pools"), "hash:net",
              _sort_members({str(p.cidr) for p in pools if p.nat_outgoing})),
    ]
    # int_dataplane.go registers the hosts set manager for IPIP or for NAT exclusions
    if ctx.ipip_enabled or ctx.felix.nat_outgoing_exclusions == "IPPoolsAndHostIPs":
        sets.append(IpSet(ctx.set_name("all-hosts-net"), "hash:net", _sort_members(
            {str(n.address.ip) for n in cluster.nodes.values()})))
    if ctx.vxlan_enabled:
        # Remote VTEPs' parent-device (node) IPs; the local VTEP is not a source.
        sets.append(IpSet(ctx.set_name("all-vxlan-net"), "hash:net", _sort_members(
            {str(n.address.ip) for n in cluster.nodes.values()
             if n.name != node.name and n.vxlan_tunnel_address is not None})))
    host_ips = {"127.0.0.1", str(node.address.ip)}
    host_ips |= {str(a) for a in (node.ipip_tunnel_address if ctx.ipip_enabled else None,
                                  node.vxlan_tunnel_address if ctx.vxlan_enabled else None,
                                  node.wireguard_interface_address if ctx.wireguard else None)
                 if a is not None}
    sets.append(IpSet(ctx.set_name("this-host"), "hash:ip", _sort_members(host_ips)))
    if ctx.knob.dscp_rule:
        sets.append(IpSet(ctx.set_name("dscp-src-net"), "hash:net"))
    return sets
