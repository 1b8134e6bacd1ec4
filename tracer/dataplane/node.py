"""One node's dataplane: its ruleset, routes, ipsets and connection tracker, and the
environment the interpreter asks about addresses, ipsets and reverse paths."""

from __future__ import annotations

from dataclasses import dataclass, field
from ipaddress import IPv4Address

from tracer.dataplane.ir import RpfilterMatch, Ruleset, SetMatch
from tracer.dataplane.routing import RoutingTable


@dataclass
class NodeDataplane:
    name: str
    ruleset: Ruleset
    routing: RoutingTable
    underlay_ip: IPv4Address
    interfaces: dict[str, int]         # interface -> MTU
    environment: "NodeEnvironment"
    conntrack: object | None = None    # tracer.conntrack table (stateful runs)
    rendered: bool = True              # False when the ruleset came from a user's dump
    workload_prefixes: tuple[str, ...] = ("cali",)
    addresses: dict[str, IPv4Address] = field(default_factory=dict)   # interface -> address

    def source_address_for(self, oif: str | None) -> IPv4Address:
        """The address MASQUERADE takes: the outgoing interface's own (inet_select_addr)."""
        return self.addresses.get(oif or "", self.underlay_ip)
    source: str = ""


@dataclass
class NodeEnvironment:
    """Answers the interpreter's questions about this node (``Environment`` protocol)."""

    routing: RoutingTable
    ipsets: object                     # tracer.dataplane.ipsets.IpSetIndex
    statistic_choices: dict[str, bool] = field(default_factory=dict)
    missing_sets: set[str] = field(default_factory=set)

    def ipset_contains(self, match: SetMatch, packet) -> bool:
        values: list = []
        for flag in match.flags:
            addr = packet.src if flag == "src" else packet.dst
            port = packet.sport if flag == "src" else packet.dport
            # The first dimension is an address; a second one on an ip,port set is the port.
            values.append(port if values else addr)
        return self.ipsets.contains(match.set_name, tuple(values), packet.protocol)

    def addr_type(self, addr: int, iface: str | None = None) -> str:
        if IPv4Address(addr) in self.routing.local_addresses:
            return "LOCAL"
        if addr == 0xFFFFFFFF:
            return "BROADCAST"
        return "UNICAST"

    def rpf_ok(self, packet, match: RpfilterMatch) -> bool:
        """xt_rpfilter: look the source up as a destination, as if replying. Strict mode
        wants the reply to leave through the arrival interface; loose mode any route but a
        blackhole. ``--validmark`` uses the packet mark in the lookup (WireGuard rules)."""
        mark = packet.mark if match.validmark else 0
        route = self.routing.lookup(IPv4Address(packet.src), mark=mark)
        if route is None or route.kind == "blackhole":
            return False
        if route.kind == "local":
            return False               # RTN_LOCAL fails unless --accept-local (not used by felix)
        return match.loose or route.dev == packet.iif

    def statistic(self, match, packet) -> bool:
        return self.statistic_choices.get(str(match), True)
