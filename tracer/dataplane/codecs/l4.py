"""Layer-4 matches: ``-m tcp|udp|sctp|udplite`` (single ports, TCP flags), ``-m multiport``
and ``-m icmp``. The single-port options of one rule print as one ``-m tcp`` block in the
order ``--sport --dport --tcp-flags`` (iptables-nft merges adjacent ones); ``rank`` gives that
order and ``format_block`` writes one block."""

from __future__ import annotations

from tracer.dataplane.codecs.base import (CodecError, MatchCodec, Option, format_ports, neg,
                                          port_range)
from tracer.dataplane.ir import IcmpMatch, Match, PortMatch, ProtocolModuleMatch, TcpFlagsMatch
from tracer.protocols import ICMP, SCTP, TCP, TCP_FLAG_BITS, UDP, UDPLITE

# The module ``-p PROTO --dport`` loads implicitly, per protocol number.
PROTOCOL_MODULES = {TCP: "tcp", UDP: "udp", SCTP: "sctp", UDPLITE: "udplite", ICMP: "icmp"}
PORT_MODULES = {n: m for n, m in PROTOCOL_MODULES.items() if n != ICMP}

TCP_FLAGS = tuple(TCP_FLAG_BITS.items())
_TCP_FLAG_ALIASES = {"ALL": 0x3F, "NONE": 0}

_PORT_OPTIONS = (Option("sport", 1, True, ("source-port",)),
                 Option("dport", 1, True, ("destination-port",)))


class L4PortCodec(MatchCodec):
    """``-m tcp|udp|sctp|udplite [--sport P[:Q]] [--dport P[:Q]] [--tcp-flags M C] [--syn]``;
    a bare ``-m tcp`` (kube-proxy writes one before its DNAT) is a ProtocolModuleMatch."""

    modules = ("tcp", "udp", "sctp", "udplite")
    options = _PORT_OPTIONS + (Option("tcp-flags", 2, True), Option("syn", 0, True))
    ir = (PortMatch, TcpFlagsMatch, ProtocolModuleMatch)

    def owns(self, match: object) -> bool:
        return isinstance(match, self.ir) and not getattr(match, "multiport", False)

    def parse(self, module: str, options) -> list[Match]:
        if not options:
            return [ProtocolModuleMatch(module)]
        matches: list[Match] = []
        for name, negated, args in options:
            if name in ("tcp-flags", "syn") and module != "tcp":
                raise CodecError(f"unsupported option '--{name}' for '-m {module}'")
            if name in ("sport", "dport"):
                matches.append(PortMatch("src" if name == "sport" else "dst",
                                         (port_range(args[0]),), negated, multiport=False))
            elif name == "syn":
                matches.append(TcpFlagsMatch(0x17, 0x02, negated))
            else:
                matches.append(TcpFlagsMatch(tcp_flags(args[0]), tcp_flags(args[1]), negated))
        return matches

    @staticmethod
    def rank(match: object) -> int | None:
        """Position inside one ``-m tcp`` block, or None if ``match`` is not such an option."""
        if isinstance(match, PortMatch) and not match.multiport:
            return 0 if match.direction == "src" else 1
        if isinstance(match, TcpFlagsMatch):
            return 2
        return None

    def format(self, m: ProtocolModuleMatch) -> str:
        return f"-m {m.module}"

    @staticmethod
    def format_block(block: list[Match], protocol: int | None) -> str:
        module = PORT_MODULES.get(protocol if protocol is not None else -1)
        if module is None:
            raise ValueError("a --sport/--dport/--tcp-flags match needs "
                             "'-p tcp|udp|sctp|udplite'")
        words = [f"-m {module}"]
        for match in block:
            if isinstance(match, PortMatch):
                opt = "--sport" if match.direction == "src" else "--dport"
                words.append(f"{neg(match.negated)}{opt} {format_ports(match.ranges[0])}")
            else:
                words.append(f"{neg(match.negated)}--tcp-flags {flag_names(match.mask)} "
                             f"{flag_names(match.comp)}")
        return " ".join(words)


def tcp_flags(value: str) -> int:
    bits = 0
    names = dict(TCP_FLAGS) | _TCP_FLAG_ALIASES
    for name in value.upper().split(","):
        if name not in names:
            raise CodecError(f"unknown TCP flag {name!r}")
        bits |= names[name]
    return bits


def flag_names(bits: int) -> str:
    names = [name for name, bit in TCP_FLAGS if bits & bit]
    return ",".join(names) if names else "NONE"


class MultiportCodec(MatchCodec):
    """``-m multiport --dports 80,8000:8080`` (xt_multiport: 15 slots, a range takes two)."""

    modules = ("multiport",)
    options = (Option("dports", 1, True, ("destination-ports",)),
               Option("sports", 1, True, ("source-ports",)))
    ir = (PortMatch,)

    def owns(self, match: object) -> bool:
        return isinstance(match, PortMatch) and match.multiport

    def parse(self, module: str, options) -> list[Match]:
        if len(options) != 1:
            raise CodecError("-m multiport needs exactly one of --dports/--sports")
        name, negated, (value,) = options[0]
        ranges = tuple(port_range(part) for part in value.split(","))
        if sum(1 if lo == hi else 2 for lo, hi in ranges) > 15:
            raise CodecError("too many ports for multiport (15 slots)")
        return [PortMatch("dst" if name == "dports" else "src", ranges, negated,
                          multiport=True)]

    def format(self, m: PortMatch) -> str:
        opt = "--sports" if m.direction == "src" else "--dports"
        return (f"-m multiport {neg(m.negated)}{opt} "
                f"{','.join(format_ports(r) for r in m.ranges)}")


# libipt_icmp.c: name -> (type, code or None for "any code").
ICMP_NAMES: dict[str, tuple[int, int | None]] = {
    "echo-reply": (0, None), "pong": (0, None), "destination-unreachable": (3, None),
    "network-unreachable": (3, 0), "host-unreachable": (3, 1), "protocol-unreachable": (3, 2),
    "port-unreachable": (3, 3), "fragmentation-needed": (3, 4), "source-route-failed": (3, 5),
    "network-unknown": (3, 6), "host-unknown": (3, 7), "network-prohibited": (3, 9),
    "host-prohibited": (3, 10), "TOS-network-unreachable": (3, 11),
    "TOS-host-unreachable": (3, 12), "communication-prohibited": (3, 13),
    "host-precedence-violation": (3, 14), "precedence-cutoff": (3, 15),
    "source-quench": (4, None), "redirect": (5, None), "network-redirect": (5, 0),
    "host-redirect": (5, 1), "TOS-network-redirect": (5, 2), "TOS-host-redirect": (5, 3),
    "echo-request": (8, None), "ping": (8, None), "router-advertisement": (9, None),
    "router-solicitation": (10, None), "time-exceeded": (11, None),
    "ttl-exceeded": (11, None), "ttl-zero-during-transit": (11, 0),
    "ttl-zero-during-reassembly": (11, 1), "parameter-problem": (12, None),
    "ip-header-bad": (12, 0), "required-option-missing": (12, 1),
    "timestamp-request": (13, None), "timestamp-reply": (14, None),
    "address-mask-request": (17, None), "address-mask-reply": (18, None),
}


class IcmpCodec(MatchCodec):
    """``-m icmp --icmp-type T[/C]|NAME|any``; printed back as numbers."""

    modules = ("icmp",)
    options = (Option("icmp-type", 1, True),)
    ir = (IcmpMatch,)

    def parse(self, module: str, options) -> list[Match]:
        if len(options) != 1:
            raise CodecError("-m icmp needs --icmp-type")
        _name, negated, (value,) = options[0]
        if value == "any":
            return [IcmpMatch(None, None, negated)]
        if value in ICMP_NAMES:
            icmp_type, code = ICMP_NAMES[value]
        else:
            type_text, sep, code_text = value.partition("/")
            try:
                icmp_type, code = int(type_text), (int(code_text) if sep else None)
            except ValueError:
                raise CodecError(f"unknown ICMP type {value!r}") from None
        return [IcmpMatch(icmp_type, code, negated)]

    def format(self, m: IcmpMatch) -> str:
        if m.icmp_type is None:
            spec = "any"
        else:
            spec = str(m.icmp_type) if m.icmp_code is None else f"{m.icmp_type}/{m.icmp_code}"
        return f"-m icmp {neg(m.negated)}--icmp-type {spec}"
