"""``ip -4 route`` and ``ip -4 addr`` text (iproute2's default output) -> routes and addresses.

Route lines: ``[TYPE] PREFIX|default [via GW] [dev DEV] [proto P] [scope S] [src A]
[metric M] [onlink] [linkdown]``; TYPE is unicast (unwritten), blackhole, unreachable,
prohibit, throw, local, broadcast. Multipath continuation lines (``nexthop via ...``) are not
modelled and are said. Address blocks: ``N: NAME[@PEER]: <FLAGS> mtu M ...`` then
``inet A/P ... scope S NAME[:LABEL]`` lines.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Interface, ip_network

from tracer.dataplane.routing import MAIN_TABLE, Route
from tracer.errors import InputError

_ROUTE_TYPES = {"blackhole": "blackhole", "unreachable": "blackhole", "prohibit": "blackhole",
                "throw": "throw", "local": "local"}
_SKIPPED_TYPES = ("broadcast", "multicast", "anycast", "nat")
_VALUE_KEYS = {"via", "dev", "proto", "scope", "src", "metric", "table", "mtu", "advmss",
               "realm", "realms", "expires", "error", "pref", "weight", "initcwnd",
               "initrwnd", "features", "quickack", "congctl", "rto_min", "hoplimit",
               "rttvar", "rtt", "ssthresh", "cwnd", "window", "reordering", "fastopen_no_cookie",
               "nhid", "tos", "ttl-propagate"}
_FLAGS = {"onlink", "linkdown", "pervasive", "offload", "trap", "notify", "dead", "lock"}


@dataclass(frozen=True)
class LinkAddress:
    """One ``inet`` line of ``ip -4 addr`` with its link's facts."""

    ifname: str
    mtu: int
    up: bool
    address: IPv4Interface


def parse_routes(text: str, *, filename: str) -> tuple[tuple[Route, ...], list[str]]:
    """The main table's routes, and warnings for lines not modelled."""
    routes: list[Route] = []
    warnings: list[str] = []
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line:
            continue
        if raw[:1].isspace() or line.startswith("nexthop"):
            warnings.append(f"{filename}: line {lineno}: multipath next hop not modelled "
                            f"(the route's first next hop is not used either): {line}")
            continue
        words = line.split()
        kind = "unicast"
        if words[0] in _ROUTE_TYPES or words[0] in _SKIPPED_TYPES or words[0] == "unicast":
            if words[0] in _SKIPPED_TYPES:
                continue
            kind = _ROUTE_TYPES.get(words[0], "unicast")
            if words[0] in ("unreachable", "prohibit"):
                warnings.append(f"{filename}: line {lineno}: {words[0]} route read as a "
                                "blackhole (the packet is dropped; no ICMP error is modelled)")
            words = words[1:]
        if not words:
            raise _bad(filename, lineno, "route without a destination", line)
        try:
            dst = ip_network("0.0.0.0/0" if words[0] == "default" else words[0], strict=False)
        except ValueError:
            raise _bad(filename, lineno, f"bad destination {words[0]!r}", line) from None
        fields: dict[str, str] = {}
        flags: set[str] = set()
        i = 1
        while i < len(words):
            word = words[i]
            if word in _VALUE_KEYS and i + 1 < len(words):
                fields[word] = words[i + 1]
                i += 2
            elif word in _FLAGS:
                flags.add(word)
                i += 1
            else:
                i += 1                         # unknown words: iproute2 grows new ones
        table = fields.get("table", "main")
        if table not in ("main", str(MAIN_TABLE)):
            continue
        try:
            via = IPv4Address(fields["via"]) if "via" in fields else None
        except ValueError:
            raise _bad(filename, lineno, f"bad gateway {fields['via']!r}", line) from None
        scope = fields.get("scope", "universe")  # iproute2 prints every other scope
        routes.append(Route(dst=dst, dev=fields.get("dev"), via=via, kind=kind,  # type: ignore[arg-type]
                            scope=scope if scope in ("link", "host") else "universe",
                            onlink="onlink" in flags, origin=fields.get("proto", "")))
    return tuple(routes), warnings


_LINK_RE = re.compile(r"^(\d+):\s+([^:@\s]+)(?:@[^:\s]+)?:\s+<([^>]*)>(.*)$")
_MTU_RE = re.compile(r"\bmtu (\d+)")


def parse_addresses(text: str, *, filename: str) -> list[LinkAddress]:
    addresses: list[LinkAddress] = []
    link: tuple[str, int, bool] | None = None
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line:
            continue
        head = _LINK_RE.match(line)
        if head is not None:
            mtu = _MTU_RE.search(head.group(4))
            flags = head.group(3).split(",")
            link = (head.group(2), int(mtu.group(1)) if mtu else 1500, "UP" in flags)
            continue
        words = line.split()
        if words[0] != "inet":
            continue                           # valid_lft lines, link/ether of plain `ip addr`
        if link is None:
            raise _bad(filename, lineno, "address before its link line", line)
        try:
            address = IPv4Interface(words[1])
        except (ValueError, IndexError):
            raise _bad(filename, lineno, "bad address", line) from None
        addresses.append(LinkAddress(link[0], link[1], link[2], address))
    return addresses


def _bad(filename: str, lineno: int, problem: str, line: str) -> InputError:
    return InputError(f"line {lineno}: {problem} in: {line}", file=filename)
