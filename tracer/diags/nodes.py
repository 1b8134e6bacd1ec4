"""Nodes rebuilt from diags bundles, with no manifests, or beside them.

From each bundle: the ruleset (``ipv4_tables``), the sets (``ipsets``), the main routing
table (``ipv4_route``) and the addresses (``ipv4_addr``). From those, what calico-trace
otherwise derives from manifests:

- workloads: each ``/32 dev cali… scope link`` route is a pod's address and veth (the CNI
  plugin and felix program exactly these);
- the node: its underlay address is the address of the device the default route leaves by;
  its tunnel addresses are those of ``tunl0``, ``vxlan.calico`` and ``wireguard.cali``;
- IP pools: the members of felix's ``cali40all-ipam-pools`` set (``cali40masq-ipam-pools``:
  natOutgoing); the block size from the ``blackhole`` routes felix adds for its own blocks;
  the encapsulation from the device remote blocks are routed through.

With manifests, the manifests name pods, labels and policies, and any disagreement with the
bundle (a pod address or veth on one side only) is said.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from ipaddress import IPv4Address, IPv4Interface, IPv4Network

from tracer.dataplane.interfaces import (IPIP_DEVICE, LOOPBACK_DEVICE, UNDERLAY_DEVICE,
                                         VXLAN_DEVICE, IfaceKind, Interface, InterfaceTable)
from tracer.dataplane.ipsets import parse_ipsets
from tracer.dataplane.iptables_save import parse_ruleset
from tracer.dataplane.ir import Ruleset
from tracer.dataplane.routing import Route, RoutingTable
from tracer.diags.bundle import DiagsBundle
from tracer.diags.iproute import LinkAddress, parse_addresses, parse_routes
from tracer.errors import InputError
from tracer.model.cluster import Cluster, IPPool, Node, Origin, Pod, WorkloadEndpoint

POOLS_SET = "cali40all-ipam-pools"
MASQ_POOLS_SET = "cali40masq-ipam-pools"
WIREGUARD_DEVICE = "wireguard.cali"
DEFAULT_BLOCK_SIZE = 26
# The origin kind of a workload known only from a bundle's routes (no labels, no policies).
BUNDLE_ORIGIN = "diags route"


@dataclass(frozen=True)
class BundleNode:
    """One node as its bundle shows it."""

    name: str
    source: str
    ruleset: Ruleset
    routes: tuple[Route, ...]
    addresses: tuple[LinkAddress, ...]
    underlay: IPv4Interface
    underlay_mtu: int
    warnings: tuple[str, ...] = ()

    def address_of(self, device: str) -> LinkAddress | None:
        return next((a for a in self.addresses if a.ifname == device), None)

    def workloads(self, prefixes: tuple[str, ...]) -> list[tuple[IPv4Address, str]]:
        """(pod address, veth) for each ``/32 dev cali…`` route."""
        return [(r.dst.network_address, r.dev) for r in self.routes
                if r.kind == "unicast" and r.dst.prefixlen == 32 and r.dev is not None
                and r.dev.startswith(prefixes) and r.via is None]


def load_node(name: str, bundle: DiagsBundle, *, partial: bool = False) -> BundleNode:
    sets_text = bundle.ipsets_text
    warnings: list[str] = []
    ipsets = parse_ipsets(sets_text, filename=bundle.filename("ipsets")) if sets_text else None
    ruleset = parse_ruleset(bundle.text("ipv4_tables"), filename=bundle.filename("ipv4_tables"),
                            ipsets=ipsets, partial=partial)
    routes, said = parse_routes(bundle.text("ipv4_route"), filename=bundle.filename("ipv4_route"))
    warnings += said
    addresses = tuple(parse_addresses(bundle.text("ipv4_addr"),
                                      filename=bundle.filename("ipv4_addr")))
    default = next((r for r in routes if r.dst.prefixlen == 0 and r.dev), None)
    device = default.dev if default is not None else UNDERLAY_DEVICE
    uplink = next((a for a in addresses if a.ifname == device), None)
    if uplink is None:
        raise InputError(f"cannot tell node {name}'s underlay address: no default route, and "
                         f"{device} has no IPv4 address", file=bundle.filename("ipv4_addr"))
    if device != UNDERLAY_DEVICE:
        # The pipeline names a node's uplink eth0 (where traffic from outside enters).
        warnings.append(f"{bundle.source}: the uplink {device} is shown as {UNDERLAY_DEVICE}")
        routes = tuple(replace(r, dev=UNDERLAY_DEVICE) if r.dev == device else r
                       for r in routes)
        addresses = tuple(replace(a, ifname=UNDERLAY_DEVICE) if a.ifname == device else a
                          for a in addresses)
    if bundle.hostname is not None and bundle.hostname != name:
        warnings.append(f"{bundle.source}: the bundle's hostname is {bundle.hostname}; traced "
                        f"as node {name}")
    return BundleNode(name=name, source=bundle.source, ruleset=ruleset, routes=routes,
                      addresses=addresses, underlay=uplink.address, underlay_mtu=uplink.mtu,
                      warnings=tuple(warnings))


@dataclass
class Rebuilt:
    """What the bundles give the dataplane assembly, node by node."""

    cluster: Cluster
    rulesets: dict[str, tuple[Ruleset, str]] = field(default_factory=dict)
    routing: dict[str, RoutingTable] = field(default_factory=dict)
    interfaces: dict[str, InterfaceTable] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


def rebuild(nodes: list[BundleNode], base: Cluster | None = None) -> Rebuilt:
    """The cluster the bundles describe, on top of ``base`` (from manifests) when given."""
    cluster = base if base is not None else Cluster(title="diags bundles")
    out = Rebuilt(cluster)
    for node in nodes:
        out.warnings += [f"{node.name}: {w}" for w in node.warnings]
        _merge_node(cluster, node, out)
    if base is None or not cluster.ippools:
        cluster.ippools.update(_pools(nodes))
    for node in nodes:
        _merge_workloads(cluster, node, cluster.felix_for(node.name).interface_prefixes, out,
                         from_manifests=base is not None)
    if base is None:
        wireguard = any(n.address_of(WIREGUARD_DEVICE) for n in nodes)
        cluster.felix = replace(cluster.felix, host_mtu=min(n.underlay_mtu for n in nodes),
                                wireguard_enabled=wireguard)
    for node in nodes:
        out.rulesets[node.name] = (node.ruleset, f"diags bundle {node.source}")
        out.routing[node.name] = RoutingTable(
            node=node.name, routes=node.routes,
            local_addresses=frozenset({a.address.ip for a in node.addresses}
                                      | {IPv4Address("127.0.0.1")}))
        out.interfaces[node.name] = _interfaces(cluster, node)
    return out


def _merge_node(cluster: Cluster, node: BundleNode, out: Rebuilt) -> None:
    tunnels = {attr: (a.address.ip if (a := node.address_of(dev)) else None)
               for attr, dev in (("ipip_tunnel_address", IPIP_DEVICE),
                                 ("vxlan_tunnel_address", VXLAN_DEVICE),
                                 ("wireguard_interface_address", WIREGUARD_DEVICE))}
    known = cluster.nodes.get(node.name)
    if known is None:
        wg = "(from the bundle)" if tunnels["wireguard_interface_address"] else None
        cluster.nodes[node.name] = Node(name=node.name, address=node.underlay,
                                        wireguard_public_key=wg, **tunnels)
        return
    if known.address != node.underlay:
        out.warnings.append(f"{node.name}: the manifests give address {known.address}, the "
                            f"bundle {node.underlay}: the bundle's is used")
    for attr, value in tunnels.items():
        if getattr(known, attr) != value:
            out.warnings.append(f"{node.name}: the manifests give {attr.replace('_', ' ')} "
                                f"{getattr(known, attr)}, the bundle {value}: the bundle's is "
                                "used")
    cluster.nodes[node.name] = replace(known, address=node.underlay, **tunnels)


def _merge_workloads(cluster: Cluster, node: BundleNode, prefixes: tuple[str, ...],
                     out: Rebuilt, *, from_manifests: bool) -> None:
    routed = dict(node.workloads(prefixes))
    for key, ep in list(cluster.endpoints.items()):
        if ep.pod.node != node.name:
            continue
        veth = routed.pop(ep.pod.ip, None)
        if veth is None:
            out.warnings.append(f"{node.name}: pod {key} ({ep.pod.ip}) is in the manifests, but "
                                "the bundle has no route to it: the node cannot deliver to it")
        elif veth != ep.interface:
            out.warnings.append(f"{node.name}: pod {key} ({ep.pod.ip}) has veth {ep.interface} "
                                f"by the manifests, {veth} in the bundle: the bundle's is used")
            cluster.endpoints[key] = replace(ep, interface=veth)
    for ip, veth in sorted(routed.items()):
        owner = cluster.endpoint_by_ip(ip)
        if owner is not None:
            out.warnings.append(f"{node.name}: {ip} dev {veth} is routed here, but the "
                                f"manifests put pod {owner.key} on {owner.pod.node}")
            continue
        if from_manifests:
            out.warnings.append(f"{node.name}: workload {ip} on {veth} is in the bundle but no "
                                f"manifest names it: traced as {node.name}/{veth}")
        pod = Pod(namespace=node.name, name=veth, node=node.name, ip=ip,
                  origin=Origin(file=node.source, kind=BUNDLE_ORIGIN, name=f"{ip} dev {veth}"))
        cluster.pods[pod.key] = pod
        cluster.endpoints[pod.key] = WorkloadEndpoint(pod=pod, interface=veth, labels={})


def _pools(nodes: list[BundleNode]) -> dict[str, IPPool]:
    """IP pools from felix's pool sets, encapsulation from how remote blocks are routed."""
    cidrs: dict[IPv4Network, bool] = {}
    for node in nodes:
        sets = node.ruleset.ipsets
        masq = set(sets[MASQ_POOLS_SET].members) if MASQ_POOLS_SET in sets else set()
        for member in sets[POOLS_SET].members if POOLS_SET in sets else ():
            cidrs[IPv4Network(member, strict=False)] = member in masq
    pools = {}
    for number, (cidr, masq) in enumerate(sorted(cidrs.items(), key=lambda i: str(i[0]))):
        blackholes = [r.dst.prefixlen for n in nodes for r in n.routes
                      if r.kind == "blackhole" and r.dst.subnet_of(cidr)]
        via = {r.dev for n in nodes for r in n.routes if r.kind == "unicast"
               and r.via is not None and r.dst.prefixlen < 32 and r.dst.subnet_of(cidr)}
        ipip = _mode(IPIP_DEVICE in via, UNDERLAY_DEVICE in via)
        vxlan = _mode(VXLAN_DEVICE in via, UNDERLAY_DEVICE in via)
        pools[f"pool-{number}"] = IPPool(
            name=f"pool-{number}", cidr=cidr,
            block_size=blackholes[0] if blackholes else DEFAULT_BLOCK_SIZE,
            ipip_mode=ipip, vxlan_mode=vxlan, nat_outgoing=masq)
    return pools


def _mode(tunnel: bool, direct: bool) -> str:
    if not tunnel:
        return "Never"
    return "CrossSubnet" if direct else "Always"


def _interfaces(cluster: Cluster, node: BundleNode) -> InterfaceTable:
    felix = cluster.felix_for(node.name)
    devices = [Interface(LOOPBACK_DEVICE, IfaceKind.LOOPBACK, 65536, IPv4Address("127.0.0.1")),
               Interface(UNDERLAY_DEVICE, IfaceKind.UNDERLAY, node.underlay_mtu,
                         node.underlay.ip)]
    tunnel_mtus = []
    for device, kind, port in ((IPIP_DEVICE, IfaceKind.IPIP, None),
                               (VXLAN_DEVICE, IfaceKind.VXLAN, felix.vxlan_port),
                               (felix.wireguard_interface_name, IfaceKind.WIREGUARD,
                                felix.wireguard_listening_port)):
        link = node.address_of(device)
        if link is not None:
            devices.append(Interface(device, kind, link.mtu, link.address.ip, udp_port=port))
            tunnel_mtus.append(link.mtu)
    pod_mtu = min([node.underlay_mtu, *tunnel_mtus])
    for ep in sorted(cluster.endpoints.values(), key=lambda e: e.key):
        if ep.pod.node == node.name:
            devices.append(Interface(ep.interface, IfaceKind.WORKLOAD, pod_mtu, ep.pod.ip,
                                     endpoint=ep.key))
    return InterfaceTable(tuple(devices), felix.interface_prefixes)
