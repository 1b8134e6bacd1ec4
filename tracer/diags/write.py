"""A node's dataplane written as a diags bundle's files, so a rendered node and a real node's
bundle compare with ``diff`` and a rendered node loads as is: ``ipv4_tables`` for
``iptables-restore``, ``ipsets`` for ``ipset restore`` (``ipset save`` form: the one form both
``ipset restore`` and this reader take; a real bundle's is ``ipset list``), and ``ipv4_route``,
``ipv4_addr``, ``hostname`` in iproute2's spelling, which ``--diags`` reads back."""

from __future__ import annotations

from ipaddress import IPv4Interface

from tracer.dataplane.interfaces import IfaceKind
from tracer.dataplane.ipsets import format_ipsets
from tracer.dataplane.iptables_save import format_ruleset
from tracer.dataplane.node import NodeDataplane
from tracer.dataplane.routing import MAIN_TABLE


def bundle_files(node: NodeDataplane, underlay: IPv4Interface) -> dict[str, str]:
    """file name -> text for one node."""
    return {
        "hostname": node.name + "\n",
        "ipv4_tables": format_ruleset(node.ruleset),
        "ipsets": format_ipsets(node.ruleset.ipsets),
        "ipv4_route": format_routes(node),
        "ipv4_addr": format_addresses(node, underlay),
    }


def format_routes(node: NodeDataplane) -> str:
    """``ip -4 route``: the main table (iproute2 shows no other without ``table``)."""
    lines = []
    for route in node.routing.routes:
        if route.table != MAIN_TABLE or route.kind == "local":
            continue
        text = str(route)
        if route.dst.prefixlen == 32:          # iproute2 prints a host route's bare address
            text = text.replace(str(route.dst), str(route.dst.network_address), 1)
        lines.append(text)
    return "".join(line + " \n" for line in lines)


def format_addresses(node: NodeDataplane, underlay: IPv4Interface) -> str:
    """``ip -4 addr``: every device with an IPv4 address (workload veths have none on the
    host side, as on a real node)."""
    lines = []
    number = 0
    for iface in node.interfaces.interfaces:
        if iface.address is None or iface.kind is IfaceKind.WORKLOAD:
            continue
        number += 1
        flags = "LOOPBACK,UP,LOWER_UP" if iface.kind is IfaceKind.LOOPBACK else \
            "BROADCAST,MULTICAST,UP,LOWER_UP"
        lines.append(f"{number}: {iface.name}: <{flags}> mtu {iface.mtu} qdisc noqueue state "
                     "UP group default qlen 1000")
        if iface.kind is IfaceKind.LOOPBACK:
            address = f"{iface.address}/8 scope host"
        elif iface.kind is IfaceKind.UNDERLAY:
            address = f"{underlay.with_prefixlen} scope global"
        else:
            address = f"{iface.address}/32 scope global"
        lines.append(f"    inet {address} {iface.name}")
        lines.append("       valid_lft forever preferred_lft forever")
    return "".join(line + "\n" for line in lines)
