"""The trace: a typed tree built once by the pipeline, read by every renderer.

One record type per stage, each holding only what that stage knows (STYLE pattern 5).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Union

from tracer.dataplane.events import NetfilterEvent
from tracer.dataplane.ir import Provenance, Rule
from tracer.dataplane.packet import Packet
from tracer.dataplane.routing import Route

# The fixed drop taxonomy: one code per reason a packet can die, policy or plumbing.
DROP_REASONS: dict[str, str] = {
    "denied-by-rule": "a policy rule with action Deny matched",
    "default-deny": "the endpoint is selected by policy but no policy allowed the packet "
                    "(end of tier), or no profile accepted it",
    "no-route": "the node has no route to the destination",
    "rpf-check": "reverse-path check failed: the source address does not route back "
                 "through the arrival interface (spoofed source)",
    "conntrack-invalid": "conntrack classified the packet INVALID",
    "mtu-exceeded": "the packet is larger than the path MTU and has DF set",
    "failsafe": "dropped by host-endpoint failsafe handling",
    "host-endpoint": "dropped by host endpoint policy",
    "unknown-interface": "the packet came from or goes to a cali interface felix does not know",
    "encap-from-workload": "workloads may not send IPIP/VXLAN packets",
    "unknown-tunnel-peer": "tunnel packet from a host that is not a Calico node",
    "ttl-exceeded": "the TTL reached zero",
    "conntrack-full": "the conntrack table is full",
    "endpoint-to-host": "DefaultEndpointToHostAction drops pod-to-host traffic",
    "no-endpoints": "the Service has no ready endpoints: kube-proxy rejects the connection",
    "netfilter-drop": "dropped by an iptables rule that is not Calico policy",
}


@dataclass(frozen=True)
class HookRecord:
    """One table's traversal at one hook, as the kernel's TRACE would report it."""

    node: str
    hook: str                          # PREROUTING, INPUT, FORWARD, OUTPUT, POSTROUTING
    table: str
    packet: Packet
    iif: str | None
    oif: str | None
    events: tuple[NetfilterEvent, ...]
    verdict: str                       # ACCEPT, DROP, REJECT
    mark_before: int
    mark_after: int


@dataclass(frozen=True)
class ConntrackRecord:
    node: str
    ctstate: str                       # NEW, ESTABLISHED, RELATED, INVALID, UNTRACKED
    tcp_state: str | None = None
    note: str = ""


@dataclass(frozen=True)
class NatRecord:
    node: str
    kind: str                          # DNAT, SNAT, MASQUERADE, de-NAT
    before: Packet
    after: Packet
    note: str = ""


@dataclass(frozen=True)
class RouteRecord:
    node: str
    destination: str
    route: Route | None
    decision: Literal["local", "forward", "no-route", "blackhole"]
    oif: str | None
    table_shown: tuple[str, ...] = ()  # the routes considered, `ip route` style


@dataclass(frozen=True)
class EncapRecord:
    node: str
    mode: str                          # ipip, vxlan, wireguard
    inner: Packet
    outer: Packet
    overhead: int
    detail: str = ""
    wire: bytes = b""                  # the outer packet's bytes, when framed
    preamble: tuple[tuple[str, bytes], ...] = ()   # sent first: WireGuard handshake messages
    keylog: str = ""                   # WireGuard keys in Wireshark's wg keylog format


@dataclass(frozen=True)
class DecapRecord:
    node: str
    mode: str
    outer: Packet
    inner: Packet
    iif: str
    detail: str = ""


@dataclass(frozen=True)
class MtuRecord:
    node: str
    oif: str
    mtu: int
    packet_length: int
    fits: bool
    note: str = ""


@dataclass(frozen=True)
class DeliverRecord:
    node: str
    where: str                         # "pod ns/name", "host <node>", "external <ip>"
    iface: str | None
    packet: Packet


@dataclass(frozen=True)
class DropRecord:
    node: str
    reason: str                        # a key of DROP_REASONS
    detail: str
    event: NetfilterEvent | None = None
    table: str | None = None


Stage = Union[HookRecord, ConntrackRecord, NatRecord, RouteRecord, EncapRecord, DecapRecord,
              MtuRecord, DeliverRecord, DropRecord]


@dataclass(frozen=True)
class Hop:
    """Everything that happened to the packet inside one node."""

    node: str
    iif: str | None                    # None for locally originated packets
    packet: Packet                     # as it arrived
    stages: tuple[Stage, ...]


@dataclass(frozen=True)
class Decision:
    """The iptables rule that decided, mapped back to the Calico object behind it."""

    node: str
    table: str
    chain: str
    rule_number: int | None
    rule: Rule | None
    rule_text: str | None
    effect: str
    provenance: Provenance | None


@dataclass(frozen=True)
class PacketTrace:
    packet: Packet
    source: str                        # "ns/pod", "host <node>", "external <ip>"
    destination: str
    assumptions: tuple[str, ...]
    hops: tuple[Hop, ...]
    verdict: Literal["allowed", "dropped"]
    reason: str | None                 # a DROP_REASONS key when dropped
    deciding: tuple[Decision, ...]     # drop: the dropping rule; allow: the accepting policy rules
    why: str = ""
    hint: str = ""
    delivered_to: str | None = None
    staged: tuple[str, ...] = ()       # "would have ..." lines from staged policies
    selected_by: dict[str, tuple[str, ...]] = field(default_factory=dict, hash=False)

    def netfilter_events(self) -> list[tuple[str, NetfilterEvent]]:
        """Every netfilter event in order with its node: what the kernel judge compares."""
        return [(hop.node, event) for hop in self.hops for stage in hop.stages
                if isinstance(stage, HookRecord) for event in stage.events]
