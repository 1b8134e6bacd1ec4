"""One node's dataplane as assembled: ruleset, routes, ipsets and interfaces, frozen.

Nothing here changes while packets flow. What does change (conntrack tables, the clock,
tunnel sessions, counters) lives in a :class:`~tracer.dataplane.state.RunState`, and explicit
choices of a run (a pinned Service backend) in :class:`~tracer.dataplane.state.Pins`; the
environment the interpreter asks combines a node with a run's pins.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from ipaddress import IPv4Address

from tracer.dataplane.interfaces import InterfaceTable
from tracer.dataplane.interpreter import PacketView
from tracer.dataplane.ipsets import IpSetIndex
from tracer.dataplane.ir import Jump, Rule, RpfilterMatch, Ruleset, SetMatch, StatisticMatch
from tracer.dataplane.routing import RoutingTable
from tracer.dataplane.state import Pins
from tracer.protocols import ICMP, PORTED


@dataclass(frozen=True)
class NodeDataplane:
    name: str
    ruleset: Ruleset
    routing: RoutingTable
    interfaces: InterfaceTable
    underlay_ip: IPv4Address
    source: str = ""                   # "rendered (Calico v3.32)" or the dump it came from
    rendered: bool = True              # False when the ruleset came from a user's dump
    ipsets: IpSetIndex = field(default=None, compare=False)  # type: ignore[assignment]

    def __post_init__(self) -> None:
        if self.ipsets is None:
            object.__setattr__(self, "ipsets", IpSetIndex(self.ruleset.ipsets))

    @property
    def warnings(self) -> tuple[str, ...]:
        """What reading this node's dump had to assume (absent chains, sets, tables)."""
        return self.ruleset.warnings

    def environment(self, pins: Pins) -> "NodeEnvironment":
        return NodeEnvironment(self, pins)


@dataclass(frozen=True)
class NodeEnvironment:
    """Answers the interpreter's questions about one node in one run (``Environment``)."""

    node: NodeDataplane
    pins: Pins

    def ipset_contains(self, match: SetMatch, packet: PacketView) -> bool:
        return set_contains(self.node.ipsets, match, packet)

    def addr_type(self, addr: int, iface: str | None = None) -> str:
        """xt_addrtype: the address's type in the local table; with ``--limit-iface-in/out``
        (``iface``) LOCAL only for an address assigned to that very device
        (``inet_dev_addr_type``), so the node's eth0 address is not LOCAL on vxlan.calico."""
        address = IPv4Address(addr)
        if iface is not None:
            device = self.node.interfaces.get(iface)
            local = device is not None and device.address == address
        else:
            local = address in self.node.routing.local_addresses
        return address_type(addr, local=local)

    def rpf_ok(self, packet: PacketView, match: RpfilterMatch) -> bool:
        """xt_rpfilter: look the source up as a destination, as if replying. Strict mode
        wants the reply to leave through the arrival interface; loose mode any route but a
        blackhole. ``--validmark`` uses the packet mark in the lookup (WireGuard rules)."""
        mark = packet.mark if match.validmark else 0
        route = self.node.routing.lookup(IPv4Address(packet.src), mark=mark)
        if route is None or route.kind == "blackhole":
            return False
        if route.kind == "local":
            return False               # RTN_LOCAL fails unless --accept-local (not used by felix)
        return match.loose or route.dev == packet.iif

    def statistic(self, match: StatisticMatch, packet: PacketView, chain: str,
                  rule: Rule) -> bool:
        """A random/nth draw, before its ``!``. A pinned Service chain fires exactly the rule
        that jumps to the chosen backend; other random draws use the run's random source if
        it has one; every other draw fires (the first backend wins)."""
        chosen = self.pins.statistic.get(chain)
        if chosen is None:
            if self.pins.draw is not None and match.mode == "random":
                return self.pins.draw() < match.probability
            return True
        hits = isinstance(rule.target, Jump) and rule.target.chain == chosen
        return hits ^ match.negated


def address_type(addr: int, *, local: bool) -> str:
    """The RTN_* name xt_addrtype compares with, for an address known to be local or not."""
    if local:
        return "LOCAL"
    if addr == 0xFFFFFFFF:
        return "BROADCAST"
    if addr >> 28 == 0xE:
        return "MULTICAST"
    return "UNICAST"


def set_contains(ipsets: IpSetIndex, match: SetMatch, packet: PacketView) -> bool:
    """xt_set: each of the set's dimensions reads the side its flag names (a dimension
    without a flag reads the destination)."""
    if match.set_name not in ipsets:
        return False
    values = []
    for i, kind in enumerate(ipsets.dims(match.set_name)):
        side = match.flags[i] if i < len(match.flags) else "dst"
        if kind in ("ip", "net"):
            values.append(packet.src if side == "src" else packet.dst)
        else:
            values.append((packet.protocol, set_port(packet, side)))
    return ipsets.contains(match.set_name, tuple(values))


def set_port(packet: PacketView, side: str) -> int:
    """``ip_set_get_ip4_port``: L4 port, ICMP type<<8|code, else 0."""
    if packet.protocol in PORTED:
        port = packet.sport if side == "src" else packet.dport
        return port or 0
    if packet.protocol == ICMP:
        return ((packet.icmp_type or 0) << 8) | (packet.icmp_code or 0)
    return 0
