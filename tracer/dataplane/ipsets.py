"""ipsets: read ``ipset save`` / ``ipset list`` text, write ``ipset save`` text, and answer
membership questions fast.

Members are kept in the spelling ``ipset save`` prints (``10.0.0.1`` for a /32 in a hash:net,
``10.0.0.5,tcp:8080`` for hash:ip,port), sorted, so two dumps of the same set compare equal
whatever order the kernel's hash walk produced. :class:`IpSetIndex` turns them into integer
tuples grouped by prefix lengths: a lookup masks the packet's values once per distinct
prefix-length combination in the set (a handful for felix's sets) and probes a Python set.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network, ip_address, ip_network

from tracer.dataplane.ir import IpSet
from tracer.errors import InputError, quote
from tracer.protocols import PROTOCOL_NUMBERS

# Dimension kinds per set type: "ip" (single address), "net" (prefix), "port"
# (protocol + port), "bport" (a bitmap:port port number, any port-carrying protocol).
SET_TYPE_DIMS: dict[str, tuple[str, ...]] = {
    "hash:ip": ("ip",),
    "hash:net": ("net",),
    "hash:ip,port": ("ip", "port"),
    "hash:net,port": ("net", "port"),
    "hash:net,net": ("net", "net"),
    "hash:ip,port,ip": ("ip", "port", "ip"),
    "hash:ip,port,net": ("ip", "port", "net"),
    "bitmap:ip": ("ip",),
    "bitmap:port": ("bport",),
}

# Protocols whose "port" is a real L4 port in ip_set_get_ip4_port (ip_set_getport.c).
_PORT_PROTOCOLS = {6, 17, 132, 136}
_ICMP = 1
_MAX_EXPANSION = 65536             # largest range/CIDR we expand for a single-address dimension

# Create-line options that take a value, and flags that take none (ipset(8)).
_CREATE_VALUE_OPTIONS = {"family", "hashsize", "maxelem", "bucketsize", "initval", "netmask",
                         "range", "timeout", "markmask"}
_CREATE_FLAGS = {"counters", "comment", "skbinfo", "forceadd"}


# ------------------------------------------------------------------------------------ parsing


def parse_ipsets(text: str, *, filename: str = "<input>") -> dict[str, IpSet]:
    """Parse ``ipset save`` (create/add lines) or ``ipset list`` (Name:/Members:) output."""
    first = next((ln.strip() for ln in text.splitlines() if ln.strip()
                  and not ln.lstrip().startswith("#")), "")
    if first.startswith("Name:"):
        return _parse_list(text, filename)
    return _parse_save(text, filename)


@dataclass
class _Draft:
    name: str
    set_type: str
    family: str
    maxelem: int
    members: list[str]


def _parse_save(text: str, filename: str) -> dict[str, IpSet]:
    drafts: dict[str, _Draft] = {}
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        try:
            words = shlex.split(line)
        except ValueError as err:
            raise _error(lineno, f"cannot split ({err})", line, filename) from None
        command, args = words[0], words[1:]
        if command == "create":
            if len(args) < 2:
                raise _error(lineno, "create needs a name and a type", line, filename)
            if args[0] in drafts:
                raise _error(lineno, f"set {quote(args[0])} created twice", line, filename)
            drafts[args[0]] = _draft_from_header(args[0], args[1], args[2:], lineno, line,
                                                 filename)
        elif command == "add":
            if len(args) < 2:
                raise _error(lineno, "add needs a set name and a member", line, filename)
            draft = drafts.get(args[0])
            if draft is None:
                raise _error(lineno, f"add to set {quote(args[0])} before its create line", line,
                             filename)
            _add_member(draft, args[1], args[2:], lineno, line, filename)
        else:
            raise _error(lineno, f"unsupported ipset command {quote(command)}", line, filename)
    return {name: _finish(d) for name, d in drafts.items()}


def _parse_list(text: str, filename: str) -> dict[str, IpSet]:
    drafts: dict[str, _Draft] = {}
    name = set_type = None
    header: list[str] = []
    current: _Draft | None = None
    in_members = False
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line:
            in_members = False
            continue
        key, sep, value = line.partition(":")
        if not in_members and sep and key in ("Name", "Type", "Header", "Revision",
                                              "Size in memory", "References",
                                              "Number of entries", "Members"):
            value = value.strip()
            if key == "Name":
                name, set_type, header, current = value, None, [], None
            elif key == "Type":
                set_type = value
            elif key == "Header":
                header = value.split()
            elif key == "Members":
                if name is None or set_type is None:
                    raise _error(lineno, "Members: before Name:/Type:", line, filename)
                if name in drafts:
                    raise _error(lineno, f"set {quote(name)} listed twice", line, filename)
                current = _draft_from_header(name, set_type, header, lineno, line, filename)
                drafts[name] = current
                in_members = True
            continue
        if key == "Name" and sep:          # a new set straight after a member list
            name, set_type, header, current, in_members = value.strip(), None, [], None, False
            continue
        if not in_members or current is None:
            raise _error(lineno, "unexpected line in ipset list output", line, filename)
        words = line.split()
        _add_member(current, words[0], words[1:], lineno, line, filename)
    return {n: _finish(d) for n, d in drafts.items()}


def _draft_from_header(name: str, set_type: str, options: list[str], lineno: int, line: str,
                       filename: str) -> _Draft:
    if set_type not in SET_TYPE_DIMS:
        raise _error(lineno, f"unsupported ipset type {quote(set_type)}", line, filename)
    if len(name) > 31:
        raise _error(lineno, f"set name {quote(name)} is longer than 31 characters", line, filename)
    family, maxelem = "inet", 65536
    i = 0
    while i < len(options):
        opt = options[i]
        if opt in _CREATE_FLAGS:
            i += 1
            continue
        if opt not in _CREATE_VALUE_OPTIONS or i + 1 >= len(options):
            raise _error(lineno, f"unsupported create option {quote(opt)}", line, filename)
        value = options[i + 1]
        if opt == "family":
            if value not in ("inet", "inet6"):
                raise _error(lineno, f"unknown family {quote(value)}", line, filename)
            family = value
        elif opt == "maxelem":
            maxelem = _int(value, lineno, line, filename)
        i += 2
    return _Draft(name, set_type, family, maxelem, [])


def _add_member(draft: _Draft, member: str, options: list[str], lineno: int, line: str,
                filename: str) -> None:
    if "nomatch" in options:
        raise _error(lineno, "nomatch entries are not supported", line, filename)
    try:
        draft.members.extend(canonical_members(draft.set_type, draft.family, member))
    except ValueError as err:
        raise _error(lineno, f"bad member {quote(member)} for {draft.set_type}: {err}", line,
                     filename) from None


def _finish(draft: _Draft) -> IpSet:
    unique = sorted(set(draft.members), key=lambda m: _sort_key(draft, m))
    return IpSet(name=draft.name, set_type=draft.set_type, members=tuple(unique),
                 family=draft.family, maxelem=draft.maxelem)


def _sort_key(draft: _Draft, member: str) -> tuple:
    if draft.family != "inet":
        return (member,)
    return tuple(_parse_dims(draft.set_type, member))


def _int(text: str, lineno: int, line: str, filename: str) -> int:
    try:
        return int(text, 0)
    except ValueError:
        raise _error(lineno, f"not a number: {quote(text)}", line, filename) from None


def _error(lineno: int, problem: str, line: str, filename: str) -> InputError:
    return InputError(f"line {lineno}: {problem} in: {line}", file=filename)


# ------------------------------------------------------------------- member spelling / values


def canonical_members(set_type: str, family: str, member: str) -> list[str]:
    """The member(s) ``ipset save`` would print after ``add SET member``.

    Raises ValueError on a malformed member. Ranges and CIDRs given for single-address
    dimensions expand to one member per address, as the kernel stores them.
    """
    dims = SET_TYPE_DIMS[set_type]
    parts = member.split(",")
    if len(parts) != len(dims):
        raise ValueError(f"expected {len(dims)} comma-separated part(s)")
    options: list[list[str]] = [_canonical_part(kind, part, family)
                                for kind, part in zip(dims, parts)]
    result = [""]
    for alternatives in options:
        result = [f"{head},{alt}" if head else alt for head in result for alt in alternatives]
        if len(result) > _MAX_EXPANSION:
            raise ValueError("range expands to too many members")
    return result


def _canonical_part(kind: str, part: str, family: str) -> list[str]:
    if kind == "net":
        net = ip_network(part, strict=False)
        _check_family(net.version, family)
        full = 32 if net.version == 4 else 128
        return [str(net.network_address) if net.prefixlen == full else str(net)]
    if kind == "ip":
        return [str(a) for a in _addresses(part, family)]
    if kind == "port":
        proto, ports = _proto_ports(part)
        name = _PROTO_NAME.get(proto, str(proto))
        if proto == _ICMP:
            return [f"icmp:{p >> 8}/{p & 0xFF}" for p in ports]
        return [f"{name}:{p}" for p in ports]
    if kind == "bport":
        lo, _, hi = part.partition("-")
        return [str(p) for p in range(int(lo), int(hi or lo) + 1)]
    raise ValueError(f"unknown dimension {kind}")


def _addresses(part: str, family: str) -> list:
    if "-" in part:
        lo_text, hi_text = part.split("-", 1)
        lo, hi = ip_address(lo_text), ip_address(hi_text)
        _check_family(lo.version, family)
        if int(hi) < int(lo) or int(hi) - int(lo) >= _MAX_EXPANSION:
            raise ValueError("bad or too large address range")
        return [type(lo)(n) for n in range(int(lo), int(hi) + 1)]
    net = ip_network(part, strict=False)
    _check_family(net.version, family)
    if net.num_addresses > _MAX_EXPANSION:
        raise ValueError("CIDR too large to expand")
    if net.num_addresses == 1:
        return [net.network_address]
    return list(net)                       # hash:ip stores every address of an added CIDR


def _check_family(version: int, family: str) -> None:
    if (version == 4) != (family == "inet"):
        raise ValueError(f"IPv{version} member in a family {family} set")


_PROTO_NAME = {6: "tcp", 17: "udp", 132: "sctp", 136: "udplite", 1: "icmp"}


def _proto_ports(part: str) -> tuple[int, list[int]]:
    proto_text, sep, port_text = part.partition(":")
    if not sep:                             # a bare port means TCP (ipset(8))
        proto_text, port_text = "tcp", part
    proto = PROTOCOL_NUMBERS.get(proto_text)
    if proto is None:
        proto = int(proto_text)
    if proto == _ICMP:
        icmp_type, _, code = port_text.partition("/")
        return proto, [(int(icmp_type) << 8) | int(code or 0)]
    lo, _, hi = port_text.partition("-")
    first, last = int(lo), int(hi or lo)
    if not 0 <= first <= last <= 65535:
        raise ValueError(f"bad port {quote(port_text)}")
    return proto, list(range(first, last + 1))


def _parse_dims(set_type: str, member: str) -> list[tuple[int, int]]:
    """A canonical IPv4 member as one (value, width) pair per dimension; for a port the pair
    is (protocol, port)."""
    values = []
    for kind, part in zip(SET_TYPE_DIMS[set_type], member.split(",")):
        if kind in ("ip", "net"):
            net = IPv4Network(part, strict=False)
            values.append((int(net.network_address), net.prefixlen))
        elif kind == "port":
            proto, ports = _proto_ports(part)
            values.append((proto, ports[0]))
        else:
            values.append((int(part), 0))
    return values


# ------------------------------------------------------------------------------------- writing


def format_ipsets(ipsets: dict[str, IpSet]) -> str:
    """``ipset save`` text (create + add lines) that ``ipset restore`` loads."""
    lines: list[str] = []
    for s in ipsets.values():
        if s.set_type.startswith("bitmap:port"):
            header = "range 0-65535"
        elif s.set_type.startswith("bitmap:"):
            raise ValueError(f"cannot write {s.set_type} set {s.name}: no range recorded")
        else:
            header = f"family {s.family} hashsize 1024 maxelem {s.maxelem}"
        lines.append(f"create {s.name} {s.set_type} {header}")
        lines.extend(f"add {s.name} {m}" for m in s.members)
    return "\n".join(lines) + ("\n" if lines else "")


# ---------------------------------------------------------------------------------- membership


@dataclass
class _SetLookup:
    dims: tuple[str, ...]
    # widths per dimension (prefix lengths; 0 for ports) -> set of masked value tuples
    groups: dict[tuple[int, ...], set[tuple[int, ...]]]


def _mask(value: int, prefix_len: int) -> int:
    return value & ((0xFFFFFFFF << (32 - prefix_len)) & 0xFFFFFFFF)


class IpSetIndex:
    """Membership tests on IPv4 sets by integer values.

    ``values`` holds one entry per dimension: an int address for ip/net dimensions, and for a
    port dimension either a ``(protocol, port)`` pair or a bare port together with the
    ``protocol`` argument. A port of None (a protocol without ports) counts as port 0, and an
    ICMP "port" is ``type << 8 | code``, as in ``ip_set_get_ip4_port``. IPv6 sets are kept but
    never match (the tracer's packets are IPv4).
    """

    def __init__(self, ipsets: Mapping[str, IpSet] | None = None):
        # Lookups are built on first use: a rendered node names thousands of sets and a
        # packet tests a few (the mapping may itself build each set's members lazily).
        self._ipsets: Mapping[str, IpSet] = ipsets if ipsets is not None else {}
        self._sets: dict[str, _SetLookup] = {}

    def _lookup(self, set_name: str) -> _SetLookup | None:
        lookup = self._sets.get(set_name)
        if lookup is None and set_name in self._ipsets:
            lookup = self._sets[set_name] = self._build(self._ipsets[set_name])
        return lookup

    @staticmethod
    def _build(ipset: IpSet) -> _SetLookup:
        dims = SET_TYPE_DIMS.get(ipset.set_type, ())
        groups: dict[tuple[int, ...], set[tuple[int, ...]]] = {}
        if ipset.family == "inet" and dims:
            for member in ipset.members:
                for canon in canonical_members(ipset.set_type, ipset.family, member):
                    pairs = _parse_dims(ipset.set_type, canon)
                    widths = tuple(w if kind in ("ip", "net") else 0
                                   for kind, (_, w) in zip(dims, pairs))
                    key = tuple(_flatten(kind, pair) for kind, pair in zip(dims, pairs))
                    groups.setdefault(widths, set()).add(key)
        return _SetLookup(dims, groups)

    def __contains__(self, set_name: str) -> bool:
        return set_name in self._ipsets

    def dims(self, set_name: str) -> tuple[str, ...]:
        lookup = self._lookup(set_name)
        if lookup is None:
            raise KeyError(set_name)
        return lookup.dims

    def groups(self, set_name: str) -> dict[tuple[int, ...], set[tuple[int, ...]]]:
        """The set's members as masked value tuples grouped by prefix lengths (a port
        dimension: ``protocol << 16 | port``, width 0): what a compiled lookup is built from."""
        lookup = self._lookup(set_name)
        if lookup is None:
            raise KeyError(set_name)
        return lookup.groups

    def contains(self, set_name: str, values: tuple, protocol: int | None = None) -> bool:
        lookup = self._lookup(set_name)
        if lookup is None or len(values) < len(lookup.dims):
            return False
        probe = []
        for kind, value in zip(lookup.dims, values):
            if kind in ("ip", "net"):
                probe.append(int(value))
            elif kind == "port":
                probe.append(_port_key(value, protocol))
            else:
                port = value[1] if isinstance(value, tuple) else value
                probe.append(-1 if port is None else int(port))
        for widths, members in lookup.groups.items():
            key = tuple(_mask(v, w) if kind in ("ip", "net") else v
                        for kind, v, w in zip(lookup.dims, probe, widths))
            if key in members:
                return True
        return False


def _flatten(kind: str, pair: tuple[int, int]) -> int:
    if kind == "port":
        return (pair[0] << 16) | pair[1]
    return pair[0]


def _port_key(value, protocol: int | None) -> int:
    if isinstance(value, tuple):
        protocol, port = value
    else:
        port = value
    if protocol is None:
        return -1
    if protocol not in _PORT_PROTOCOLS and protocol != _ICMP:
        port = 0
    return (protocol << 16) | (0 if port is None else int(port))


def address(text: str) -> int:
    """``"10.0.0.1"`` -> int; a small helper for callers building lookup values."""
    return int(IPv4Address(text))
