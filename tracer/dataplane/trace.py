"""The trace: a typed tree built once by the pipeline, read by every renderer.

One record type per stage, each holding only what that stage knows (STYLE pattern 5).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Union

from tracer.dataplane.events import NetfilterEvent
from tracer.dataplane.packet import Packet
from tracer.dataplane.reasons import DropReason
from tracer.dataplane.routing import Route


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
    # What the traversal had to assume (an absent chain, an unknown ipset, an IPVS match).
    warnings: tuple[str, ...] = ()


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
    reason: DropReason
    detail: str
    event: NetfilterEvent | None = None
    table: str | None = None
    stage: str = ""                    # the pipeline stage that dropped it (Stage.name)

    def __post_init__(self) -> None:
        # A reason outside the vocabulary is a bug here, not something to explain vaguely later.
        object.__setattr__(self, "reason", DropReason(self.reason))


Record = Union[HookRecord, ConntrackRecord, NatRecord, RouteRecord, EncapRecord, DecapRecord,
              MtuRecord, DeliverRecord, DropRecord]


@dataclass(frozen=True)
class Hop:
    """Everything that happened to the packet inside one node."""

    node: str
    iif: str | None                    # None for locally originated packets
    packet: Packet                     # as it arrived
    stages: tuple[Record, ...]
