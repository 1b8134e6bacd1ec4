"""The rule header: ``-p``, ``-s``/``-d``, ``-i``/``-o``. These are not ``-m`` modules but live
in ``struct ipt_ip``; iptables-save prints them first, in the order
``-s -d -i -o -p`` (``print_ip`` in iptables' nft-ipv4.c)."""

from __future__ import annotations

import socket
from ipaddress import IPv4Network
from typing import ClassVar

from tracer.dataplane.codecs.base import CodecError, neg
from tracer.dataplane.ir import AddressMatch, Cidr, InterfaceMatch, Match, ProtocolMatch
from tracer.protocols import PROTOCOL_NUMBERS

# Names iptables prints for protocol numbers (getprotobynumber on Debian's /etc/protocols).
PROTO_PRINT = {1: "icmp", 2: "igmp", 4: "ipencap", 6: "tcp", 17: "udp", 47: "gre", 50: "esp",
               51: "ah", 58: "ipv6-icmp", 132: "sctp", 136: "udplite"}
# Every name seen in real dumps: Debian's, RHEL's ("-p ipv4" is protocol 4), numbers, "all".
PROTO_PARSE = {**PROTOCOL_NUMBERS, **{v: k for k, v in PROTO_PRINT.items()}, "all": 0}


class HeaderCodec:
    """One header field: its long and short flags, its rank in print order."""

    kind: ClassVar[str]
    flags: ClassVar[tuple[str, ...]]
    rank: ClassVar[int]
    ir: ClassVar[type]

    def owns(self, match: object) -> bool:
        return isinstance(match, self.ir) and _kind(match) == self.kind

    def parse(self, value: str, negated: bool) -> Match | None:
        """The match, or None when the kernel keeps nothing for it (``-p all``, ``/0``)."""
        raise NotImplementedError

    def format(self, match) -> str:
        raise NotImplementedError


def _kind(match) -> str:
    return "protocol" if isinstance(match, ProtocolMatch) else match.direction


class ProtocolCodec(HeaderCodec):
    kind, flags, rank, ir = "protocol", ("-p", "--protocol"), 4, ProtocolMatch

    def parse(self, value: str, negated: bool) -> Match | None:
        number = protocol_number(value)
        if number == 0 and not negated:        # "-p all" is no match at all
            return None
        return ProtocolMatch(number, negated)

    def format(self, m: ProtocolMatch) -> str:
        return f"{neg(m.negated)}-p {PROTO_PRINT.get(m.protocol, str(m.protocol))}"


def protocol_number(value: str) -> int:
    if value.isdigit():
        number = int(value)
        if number > 255:
            raise CodecError(f"bad protocol {value!r}")
        return number
    number = PROTO_PARSE.get(value.lower())
    if number is None:
        try:
            number = socket.getprotobyname(value)
        except OSError:
            raise CodecError(f"unknown protocol {value!r}") from None
    return number


class AddressCodec(HeaderCodec):
    ir = AddressMatch

    def __init__(self, kind: str, flags: tuple[str, ...], rank: int, letter: str):
        self.kind, self.flags, self.rank, self.letter = kind, flags, rank, letter

    def parse(self, value: str, negated: bool) -> Match | None:
        if "," in value:
            raise CodecError(f"address list {value!r} expands to several rules; not supported")
        try:
            cidr = Cidr.parse(value)
        except ValueError:
            raise CodecError(f"bad address {value!r}") from None
        if cidr.prefix_len == 0 and not negated:   # 0.0.0.0/0 is not printed back
            return None
        return AddressMatch(self.kind, cidr, negated)   # type: ignore[arg-type]

    def format(self, m: AddressMatch) -> str:
        net = IPv4Network((m.cidr.network, m.cidr.prefix_len))
        return f"{neg(m.negated)}{self.letter} {net.network_address}/{net.prefixlen}"


class InterfaceCodec(HeaderCodec):
    ir = InterfaceMatch

    def __init__(self, kind: str, flags: tuple[str, ...], rank: int, letter: str):
        self.kind, self.flags, self.rank, self.letter = kind, flags, rank, letter

    def parse(self, value: str, negated: bool) -> Match | None:
        if not value or len(value) > 15:           # IFNAMSIZ - 1
            raise CodecError(f"bad interface name {value!r}")
        return InterfaceMatch(self.kind, value, negated)   # type: ignore[arg-type]

    def format(self, m: InterfaceMatch) -> str:
        return f"{neg(m.negated)}{self.letter} {m.name}"


HEADER_CODECS: tuple[HeaderCodec, ...] = (
    AddressCodec("src", ("-s", "--source", "--src"), 0, "-s"),
    AddressCodec("dst", ("-d", "--destination", "--dst"), 1, "-d"),
    InterfaceCodec("in", ("-i", "--in-interface"), 2, "-i"),
    InterfaceCodec("out", ("-o", "--out-interface"), 3, "-o"),
    ProtocolCodec(),
)
