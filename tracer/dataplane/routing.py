"""A node's routing tables and the kernel's lookup: policy rules, then longest prefix.

What the tables hold (Calico's routes per node) is decided where the dataplane is assembled
(``tracer.trace.routes``); this module only stores and looks up.
"""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network, ip_network
from typing import Literal

MAIN_TABLE = 254
WIREGUARD_TABLE = 1

RouteKind = Literal["unicast", "blackhole", "local", "throw"]


@dataclass(frozen=True)
class Route:
    dst: IPv4Network
    dev: str | None
    via: IPv4Address | None = None
    kind: RouteKind = "unicast"
    scope: Literal["link", "universe", "host"] = "universe"
    onlink: bool = False
    table: int = MAIN_TABLE
    origin: str = ""                   # who programs it: "cni", "felix", "bird", "kernel"

    def __str__(self) -> str:
        if self.kind != "unicast":
            text = f"{self.kind} {self.dst}"
        else:
            text = str(self.dst) if self.dst.prefixlen else "default"
        if self.via is not None:
            text += f" via {self.via}"
        if self.dev is not None:
            text += f" dev {self.dev}"
        if self.scope != "universe" and self.kind == "unicast":
            text += f" scope {self.scope}"
        if self.onlink:
            text += " onlink"
        if self.table != MAIN_TABLE:
            text += f" table {self.table}"
        return text


@dataclass(frozen=True)
class RoutingTable:
    node: str
    routes: tuple[Route, ...]
    local_addresses: frozenset[IPv4Address]
    wireguard_mark: int | None = None  # packets carrying it skip the WireGuard table

    def lookup(self, dst: IPv4Address, *, mark: int = 0) -> Route | None:
        """Policy routing as the kernel does it: local table, then (WireGuard rule) table 1,
        then main. A ``throw`` route in table 1 falls through to main."""
        if dst in self.local_addresses:
            return Route(dst=ip_network(f"{dst}/32"), dev="lo", kind="local", scope="host",
                         origin="kernel")
        tables = [MAIN_TABLE]
        if self.wireguard_mark is not None and not (mark & self.wireguard_mark):
            tables.insert(0, WIREGUARD_TABLE)
        for table in tables:
            best = self._longest_match(dst, table)
            if best is not None and best.kind != "throw":
                return best
        return None

    def _longest_match(self, dst: IPv4Address, table: int) -> Route | None:
        best: Route | None = None
        for route in self.routes:
            if route.table == table and dst in route.dst:
                if best is None or route.dst.prefixlen > best.dst.prefixlen:
                    best = route
        return best
