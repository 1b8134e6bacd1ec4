"""The typed rule form shared by every producer and consumer of iptables rules.

Producers: the felix renderer (``tracer.policy.felix``) and the ``iptables-save`` parser.
Consumers: the reference interpreter, the ``iptables-save`` writer, and the array compiler of
the numba path. Everything here is a frozen dataclass holding plain values (ints, strings,
tuples), so a ruleset can be hashed, compared, and lowered to numpy arrays without a redesign.

Addresses are stored as (network int, prefix length) pairs rather than ``ipaddress`` objects:
that is what the array compiler wants, and ``ipaddress`` helpers convert at the edges.
"""

from __future__ import annotations

from collections.abc import Mapping

from dataclasses import dataclass, field
from enum import Enum
from ipaddress import IPv4Network, ip_network
from typing import Literal, Union

Direction = Literal["src", "dst"]
IfaceDirection = Literal["in", "out"]


class Table(str, Enum):
    RAW = "raw"
    MANGLE = "mangle"
    NAT = "nat"
    FILTER = "filter"


# Built-in chains per table, in the order iptables-save prints them.
BUILTIN_CHAINS: dict[Table, tuple[str, ...]] = {
    Table.RAW: ("PREROUTING", "OUTPUT"),
    Table.MANGLE: ("PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"),
    Table.NAT: ("PREROUTING", "INPUT", "OUTPUT", "POSTROUTING"),
    Table.FILTER: ("INPUT", "FORWARD", "OUTPUT"),
}


@dataclass(frozen=True)
class Cidr:
    """An IPv4 prefix as two ints: the network address and the prefix length."""

    network: int
    prefix_len: int

    @classmethod
    def parse(cls, text: str) -> "Cidr":
        net = ip_network(text, strict=False)
        return cls(int(net.network_address), net.prefixlen)

    @property
    def mask(self) -> int:
        return (0xFFFFFFFF << (32 - self.prefix_len)) & 0xFFFFFFFF

    def contains(self, addr: int) -> bool:
        return (addr & self.mask) == self.network

    def __str__(self) -> str:
        net = IPv4Network((self.network, self.prefix_len))
        return str(net.network_address) if self.prefix_len == 32 else str(net)


# ---------------------------------------------------------------------------------------------
# Matches. Each has ``negated``; the interpreter applies it after evaluating the positive test.
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ProtocolMatch:
    """``-p tcp`` / ``! -p 4``."""

    protocol: int
    negated: bool = False


@dataclass(frozen=True)
class AddressMatch:
    """``--source`` / ``--destination``."""

    direction: Direction
    cidr: Cidr
    negated: bool = False


@dataclass(frozen=True)
class InterfaceMatch:
    """``--in-interface`` / ``--out-interface``; a trailing ``+`` is a prefix wildcard."""

    direction: IfaceDirection
    name: str
    negated: bool = False

    def matches(self, ifname: str | None) -> bool:
        if ifname is None:
            return False
        if self.name.endswith("+"):
            return ifname.startswith(self.name[:-1])
        return ifname == self.name


@dataclass(frozen=True)
class PortMatch:
    """Ports: ``-m multiport --destination-ports 80,8000:8080`` or ``--dport 4789`` from -m udp.

    ``multiport`` only remembers which spelling to write back out.
    """

    direction: Direction
    ranges: tuple[tuple[int, int], ...]
    negated: bool = False
    multiport: bool = True

    def contains(self, port: int) -> bool:
        return any(lo <= port <= hi for lo, hi in self.ranges)


@dataclass(frozen=True)
class IcmpMatch:
    """``-m icmp --icmp-type T[/C]``; ``icmp_type`` None means "any"."""

    icmp_type: int | None
    icmp_code: int | None = None
    negated: bool = False


@dataclass(frozen=True)
class MarkMatch:
    """``-m mark --mark value/mask``: true when ``(skb->mark & mask) == value``."""

    value: int
    mask: int = 0xFFFFFFFF
    negated: bool = False


@dataclass(frozen=True)
class ConnmarkMatch:
    """``-m connmark --mark value/mask`` on the conntrack entry's mark."""

    value: int
    mask: int = 0xFFFFFFFF
    negated: bool = False


@dataclass(frozen=True)
class ConntrackMatch:
    """``-m conntrack --ctstate A,B`` (states) and/or ``--ctstatus`` style pseudo-states.

    States use the kernel's names: NEW, ESTABLISHED, RELATED, INVALID, UNTRACKED, plus the
    pseudo-states SNAT and DNAT (the entry's tuples differ by NAT).
    """

    states: frozenset[str]
    negated: bool = False
    # ``--ctstatus EXPECTED,SEEN_REPLY,ASSURED,CONFIRMED`` (None: option absent; empty: NONE).
    statuses: frozenset[str] | None = None
    status_negated: bool = False
    # ``-m state --state`` is the same test under an older module name; kept for printing.
    module: str = field(default="conntrack", compare=False)


@dataclass(frozen=True)
class SetMatch:
    """``-m set --match-set NAME src[,dst...]``."""

    set_name: str
    flags: tuple[Direction, ...]
    negated: bool = False


@dataclass(frozen=True)
class AddrTypeMatch:
    """``-m addrtype --src-type LOCAL`` / ``--dst-type LOCAL`` (+ ``--limit-iface-out/in``)."""

    src_type: str | None = None
    dst_type: str | None = None
    limit_iface: IfaceDirection | None = None
    src_negated: bool = False
    dst_negated: bool = False


@dataclass(frozen=True)
class RpfilterMatch:
    """``-m rpfilter [--invert] [--validmark] [--loose]``: reverse-path check on the source."""

    invert: bool = False
    validmark: bool = False
    loose: bool = False
    accept_local: bool = False


@dataclass(frozen=True)
class LimitMatch:
    """``-m limit --limit R --limit-burst B``. A single trace never exceeds a rate: always true."""

    rate: str
    burst: int | None = None


@dataclass(frozen=True)
class TcpFlagsMatch:
    """``-m tcp --tcp-flags MASK COMP`` (``--syn`` is ``FIN,SYN,RST,ACK SYN``):
    true when ``(tcp_flags & mask) == comp``. Bits: FIN 0x01 SYN 0x02 RST 0x04 PSH 0x08
    ACK 0x10 URG 0x20 (libxt_tcp knows no others)."""

    mask: int
    comp: int
    negated: bool = False


@dataclass(frozen=True)
class ProtocolModuleMatch:
    """A bare ``-m tcp`` / ``-m udp`` with no options, as kube-proxy writes before its DNAT.
    It only asks for that protocol's header, which the rule's ``-p`` already guarantees."""

    module: str


@dataclass(frozen=True)
class StatisticMatch:
    """``-m statistic --mode random --probability P`` or ``--mode nth --every N --packet K``.

    ``probability`` is already quantised the way xt_statistic stores it
    (``round(P * 2**31) / 2**31``), so it prints back exactly as ``iptables-save`` does.
    The interpreter asks its environment which way a random/nth choice falls.
    """

    mode: Literal["random", "nth"]
    probability: float = 0.0
    every: int = 0
    packet: int = 0
    negated: bool = False


@dataclass(frozen=True)
class IpvsMatch:
    """``-m ipvs --ipvs --vaddr A --vport P ...`` (kube-proxy IPVS mode): a test on the IPVS
    connection the packet belongs to. The kernel's IPVS table is not part of a dump, so the
    interpreter takes the packet as not IPVS's and says so. ``negated`` names the negated
    options."""

    ipvs: bool = False
    vproto: int | None = None
    vaddr: Cidr | None = None
    vport: int | None = None
    vdir: str | None = None
    vmethod: str | None = None
    vportctl: int | None = None
    negated: tuple[str, ...] = ()


Match = Union[ProtocolMatch, AddressMatch, InterfaceMatch, PortMatch, IcmpMatch, MarkMatch,
              ConnmarkMatch, ConntrackMatch, SetMatch, AddrTypeMatch, RpfilterMatch, LimitMatch,
              TcpFlagsMatch, ProtocolModuleMatch, StatisticMatch, IpvsMatch]


# ---------------------------------------------------------------------------------------------
# Targets
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Verdict:
    """A terminating built-in target: ACCEPT, DROP, RETURN, NOTRACK-free verdicts only."""

    name: Literal["ACCEPT", "DROP", "RETURN"]


@dataclass(frozen=True)
class Reject:
    with_: str = "icmp-port-unreachable"


@dataclass(frozen=True)
class Jump:
    chain: str


@dataclass(frozen=True)
class Goto:
    chain: str


@dataclass(frozen=True)
class SetMark:
    """``MARK --set-xmark value/mask``: ``mark = (mark & ~mask) ^ value``.

    felix writes ``--set-mark v/m`` (``(mark & ~m) | v``); with ``v`` inside ``m`` the two agree,
    and iptables-save prints both as ``--set-xmark``.
    """

    value: int
    mask: int = 0xFFFFFFFF


@dataclass(frozen=True)
class ConnMarkTarget:
    """``CONNMARK --save-mark|--restore-mark|--set-xmark``."""

    mode: Literal["save", "restore", "set"]
    value: int = 0
    mask: int = 0xFFFFFFFF
    # save: ctmark = (ctmark & ~ctmask) ^ (mark & nfmask); restore:
    # mark = (mark & ~nfmask) ^ (ctmark & ctmask)  (xt_connmark.c, connmark_tg_shift).
    nfmask: int = 0xFFFFFFFF
    ctmask: int = 0xFFFFFFFF


@dataclass(frozen=True)
class Log:
    prefix: str = ""
    level: int | None = None


@dataclass(frozen=True)
class Nflog:
    group: int
    prefix: str = ""
    size: int | None = None            # --nflog-size


@dataclass(frozen=True)
class NoTrack:
    """``-j NOTRACK`` or ``-j CT --notrack``. Not a verdict: xt_CT returns XT_CONTINUE."""

    ct: bool = field(default=False, compare=False)   # spelt ``-j CT --notrack``


@dataclass(frozen=True)
class Masquerade:
    to_ports: tuple[int, int] | None = None
    random_fully: bool = False
    random: bool = False


@dataclass(frozen=True)
class Snat:
    to_source: str
    random_fully: bool = False
    random: bool = False


@dataclass(frozen=True)
class Dnat:
    to_destination: str


@dataclass(frozen=True)
class TraceTarget:
    pass


Target = Union[Verdict, Reject, Jump, Goto, SetMark, ConnMarkTarget, Log, Nflog, NoTrack,
               Masquerade, Snat, Dnat, TraceTarget]

TERMINAL_TARGETS = (Verdict, Reject, Goto, Masquerade, Snat, Dnat)   # NOTRACK continues


# ---------------------------------------------------------------------------------------------
# Provenance: where a rule came from, so a verdict can name the Calico object behind it.
# ---------------------------------------------------------------------------------------------


# Why felix rendered a rule: the fixed vocabulary of Provenance.role.
PROVENANCE_ROLES = frozenset({
    "policy-rule", "policy-chain-comment", "tier-start", "tier-policy-jump", "tier-return",
    "tier-end-drop", "profile-jump", "profile-return", "profile-rule", "no-profile-drop",
    "conntrack-accept", "conntrack-invalid", "encap-drop", "tunnel-peer-drop", "dispatch",
    "unknown-interface", "rpf", "failsafe", "host-endpoint", "endpoint-to-host", "static",
    "nat-outgoing", "kube-proxy", "service-loop-prevention",
})


@dataclass(frozen=True)
class Provenance:
    """Why felix rendered this rule; ``role`` is one of :data:`PROVENANCE_ROLES`."""

    role: str
    policy: str | None = None          # "ns/name" or "name" for global objects
    policy_kind: str | None = None     # NetworkPolicy, GlobalNetworkPolicy, KubernetesNetworkPolicy
    tier: str | None = None
    direction: Literal["ingress", "egress"] | None = None
    rule_index: int | None = None      # index within the policy's ingress/egress list
    profile: str | None = None
    endpoint: str | None = None        # "ns/pod" of the workload the chain belongs to
    source: str | None = None          # felix function that renders it, e.g. "rules/endpoints.go"

    def __post_init__(self) -> None:
        if self.role not in PROVENANCE_ROLES:
            raise ValueError(f"unknown provenance role {self.role!r}")


@dataclass(frozen=True)
class Rule:
    matches: tuple[Match, ...] = ()
    target: Target | None = None       # None: a counter-only rule, e.g. felix's comment carrier
    comments: tuple[str, ...] = ()
    provenance: Provenance | None = field(default=None, compare=False, hash=False)
    # Where the ``-m comment`` matches stood among ``matches`` (index of the match they came
    # before), so a parsed dump prints back as written; felix puts them first (0).
    comment_at: int = field(default=0, compare=False, hash=False)


@dataclass(frozen=True)
class Chain:
    name: str
    rules: tuple[Rule, ...] = ()
    policy: Literal["ACCEPT", "DROP"] | None = None   # built-in chains only
    # Not in the dump it was read from (``--partial``): assumed empty, and a trace that
    # reaches it says so.
    placeholder: bool = False


@dataclass(frozen=True)
class IpSet:
    """An ipset. Members are stored in their ``ipset save`` spelling ("10.0.0.0/26",
    "10.0.0.5,tcp:8080"); the interpreter normalises them once into a lookup structure."""

    name: str
    set_type: str                      # hash:net, hash:ip, hash:ip,port
    members: tuple[str, ...] = ()
    family: str = "inet"
    maxelem: int = 1048576


@dataclass(frozen=True)
class Ruleset:
    """One node's netfilter state: tables of chains, plus its ipsets."""

    tables: dict[Table, Mapping[str, Chain]]       # may build chains lazily
    ipsets: Mapping[str, IpSet] = field(default_factory=dict)   # may build sets lazily
    # What reading a dump had to assume (absent chains, sets, tables): said to the user.
    warnings: tuple[str, ...] = ()

    def chain(self, table: Table, name: str) -> Chain:
        return self.tables[table][name]
