"""``iptables-save`` text <-> :class:`~tracer.dataplane.ir.Ruleset`.

The parser reads what a real node prints (felix, kube-proxy, Docker chains), what felix feeds
``iptables-restore`` (``--jump``, ``--set-mark``, ``--in-interface``) and the rule text of the
kernel's trace (``-4 -t filter -A FORWARD ...``). The writer prints rules the way
``iptables-save`` (1.8.x, checked against the nf_tables backend) prints them back: ``-s -d -i
-o -p`` first, then the match modules in order, then the target; ``/32`` always written;
``--set-mark`` as ``--set-xmark``; ``--dport`` inside an explicit ``-m tcp``; defaults dropped
(``--log-level 4``, ``--limit-burst 5``). Parsing normalises to that same form, so parsing a
fixture and parsing the kernel's dump of it give equal rules.
"""

from __future__ import annotations

import math
import socket
from dataclasses import dataclass, field, replace
from ipaddress import IPv4Address, IPv4Network

from tracer.dataplane.ir import (
    BUILTIN_CHAINS, AddressMatch, AddrTypeMatch, Chain, Cidr, ConnmarkMatch,
    ConnMarkTarget, ConntrackMatch, Dnat, Goto, IcmpMatch, InterfaceMatch, IpSet, Jump,
    LimitMatch, Log, MarkMatch, Masquerade, Match, Nflog, NoTrack, PortMatch, ProtocolMatch,
    ProtocolModuleMatch, Reject, RpfilterMatch, Rule, Ruleset, SetMark, SetMatch, Snat,
    StatisticMatch, Table, Target, TcpFlagsMatch, TraceTarget, Verdict,
)
from tracer.dataplane.interpreter import MAX_DEPTH as MAX_JUMP_DEPTH
from tracer.errors import InputError, quote, shorten
from tracer.protocols import PROTOCOL_NUMBERS

# ----------------------------------------------------------------------------- name tables

# Names iptables prints for protocol numbers (getprotobynumber on Debian's /etc/protocols).
_PROTO_PRINT = {1: "icmp", 2: "igmp", 4: "ipencap", 6: "tcp", 17: "udp", 47: "gre", 50: "esp",
                51: "ah", 58: "ipv6-icmp", 132: "sctp", 136: "udplite"}
_PROTO_PARSE = {**PROTOCOL_NUMBERS, **{v: k for k, v in _PROTO_PRINT.items()}, "all": 0}
_PORT_MODULES = {6: "tcp", 17: "udp", 132: "sctp", 136: "udplite"}

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

TCP_FLAGS = (("FIN", 0x01), ("SYN", 0x02), ("RST", 0x04), ("PSH", 0x08), ("ACK", 0x10),
             ("URG", 0x20))
_TCP_FLAG_ALIASES = {"ALL": 0x3F, "NONE": 0}

CT_STATES = ("INVALID", "NEW", "RELATED", "ESTABLISHED", "UNTRACKED", "SNAT", "DNAT")
CT_STATUSES = ("EXPECTED", "SEEN_REPLY", "ASSURED", "CONFIRMED")
ADDR_TYPES = ("UNSPEC", "UNICAST", "LOCAL", "BROADCAST", "ANYCAST", "MULTICAST", "BLACKHOLE",
              "UNREACHABLE", "PROHIBIT", "THROW", "NAT", "XRESOLVE")

_REJECT_ALIASES = {"net-unreach": "icmp-net-unreachable", "host-unreach": "icmp-host-unreachable",
                   "proto-unreach": "icmp-proto-unreachable",
                   "port-unreach": "icmp-port-unreachable",
                   "net-prohib": "icmp-net-prohibited", "host-prohib": "icmp-host-prohibited",
                   "admin-prohib": "icmp-admin-prohibited", "tcp-rst": "tcp-reset"}
REJECT_WITH = frozenset({*_REJECT_ALIASES.values(), "tcp-reset"})

_LOG_LEVELS = {"emerg": 0, "alert": 1, "crit": 2, "error": 3, "err": 3, "warning": 4,
               "warn": 4, "notice": 5, "info": 6, "debug": 7}
_LOG_DEFAULT_LEVEL = 4
_LIMIT_SCALE = 10000
_LIMIT_UNITS = (("day", _LIMIT_SCALE * 86400), ("hour", _LIMIT_SCALE * 3600),
                ("min", _LIMIT_SCALE * 60), ("sec", _LIMIT_SCALE))
_LIMIT_DEFAULT_BURST = 5

# Target extensions we do not model: named so the error says "unsupported target", not
# "jump to undefined chain".
_OTHER_TARGETS = frozenset({
    "QUEUE", "NFQUEUE", "REDIRECT", "TPROXY", "TCPMSS", "CHECKSUM", "CLASSIFY", "DSCP", "TOS",
    "TTL", "ECN", "SET", "AUDIT", "HMARK", "CLUSTERIP", "NETMAP", "IDLETIMER", "LED",
    "SECMARK", "CONNSECMARK", "TEE", "SYNPROXY", "ULOG", "RATEEST", "CT"})

_HEADER_ORDER = {"src": 0, "dst": 1, "in": 2, "out": 3}


# ----------------------------------------------------------------------------- tokenizing


def split_words(line: str) -> list[str]:
    """Split a rule line the way iptables-restore does: whitespace separates, double quotes
    group, and inside quotes a backslash escapes the next character."""
    words: list[str] = []
    current: list[str] = []
    in_word = quoted = escaped = False
    for ch in line:
        if quoted:
            if escaped:
                current.append(ch)
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                quoted = False
            else:
                current.append(ch)
        elif ch == '"':
            quoted = in_word = True
        elif ch in " \t\r\n":
            if in_word:
                words.append("".join(current))
                current, in_word = [], False
        else:
            current.append(ch)
            in_word = True
    if quoted:
        raise ValueError("unterminated quote")
    if in_word:
        words.append("".join(current))
    return words


def quote_word(value: str) -> str:
    """``xtables_save_string``: bare if only ``[A-Za-z0-9_-]``, else double-quoted with
    ``"``, ``\\`` and ``'`` backslash-escaped."""
    if value and all(c.isascii() and (c.isalnum() or c in "_-") for c in value):
        return value
    escaped = "".join("\\" + c if c in "\"\\'" else c for c in value)
    return f'"{escaped}"'


# ----------------------------------------------------------------------------- rule parsing


class _RuleError(Exception):
    """A problem in one rule; the caller adds the line number and file."""


@dataclass
class _Cursor:
    words: list[str]
    pos: int = 0

    def peek(self, offset: int = 0) -> str | None:
        i = self.pos + offset
        return self.words[i] if i < len(self.words) else None

    def take(self, what: str) -> str:
        word = self.peek()
        if word is None:
            raise _RuleError(f"missing {what}")
        self.pos += 1
        return word


@dataclass
class _Draft:
    header: list[Match] = field(default_factory=list)
    body: list[Match] = field(default_factory=list)
    comments: list[str] = field(default_factory=list)
    comment_at: int | None = None
    target: Target | None = None
    protocol: int | None = None
    proto_modules: list[str] = field(default_factory=list)


# Module options: canonical name -> (number of arguments, may be negated with "!").
_MODULE_OPTIONS: dict[str, dict[str, tuple[int, bool]]] = {
    "comment": {"comment": (1, False)},
    "conntrack": {"ctstate": (1, True), "ctstatus": (1, True)},
    "state": {"state": (1, True)},
    "set": {"match-set": (2, True)},
    "multiport": {"dports": (1, True), "sports": (1, True)},
    "tcp": {"sport": (1, True), "dport": (1, True), "tcp-flags": (2, True), "syn": (0, True)},
    "udp": {"sport": (1, True), "dport": (1, True)},
    "sctp": {"sport": (1, True), "dport": (1, True)},
    "udplite": {"sport": (1, True), "dport": (1, True)},
    "icmp": {"icmp-type": (1, True)},
    "addrtype": {"src-type": (1, True), "dst-type": (1, True), "limit-iface-in": (0, False),
                 "limit-iface-out": (0, False)},
    "rpfilter": {"loose": (0, False), "validmark": (0, False), "accept-local": (0, False),
                 "invert": (0, False)},
    "mark": {"mark": (1, True)},
    "connmark": {"mark": (1, True)},
    "limit": {"limit": (1, False), "limit-burst": (1, False)},
    "statistic": {"mode": (1, False), "probability": (1, True), "every": (1, True),
                  "packet": (1, False)},
}
_OPTION_ALIASES = {"destination-ports": "dports", "source-ports": "sports",
                   "destination-port": "dport", "source-port": "sport"}

_TARGET_OPTIONS: dict[str, dict[str, int]] = {
    "ACCEPT": {}, "DROP": {}, "RETURN": {}, "TRACE": {}, "NOTRACK": {},
    "REJECT": {"reject-with": 1},
    "MARK": {"set-xmark": 1, "set-mark": 1, "and-mark": 1, "or-mark": 1, "xor-mark": 1},
    "CONNMARK": {"save-mark": 0, "restore-mark": 0, "set-xmark": 1, "set-mark": 1,
                 "nfmask": 1, "ctmask": 1, "mask": 1},
    "LOG": {"log-prefix": 1, "log-level": 1},
    "NFLOG": {"nflog-group": 1, "nflog-prefix": 1, "nflog-size": 1, "nflog-range": 1},
    "CT": {"notrack": 0},
    "MASQUERADE": {"to-ports": 1, "random": 0, "random-fully": 0},
    "SNAT": {"to-source": 1, "random": 0, "random-fully": 0},
    "DNAT": {"to-destination": 1},
}

_TOP_LEVEL = {"-p": "protocol", "--protocol": "protocol", "-s": "src", "--source": "src",
              "--src": "src", "-d": "dst", "--destination": "dst", "--dst": "dst",
              "-i": "in", "--in-interface": "in", "-o": "out", "--out-interface": "out",
              "-m": "match", "--match": "match", "-j": "jump", "--jump": "jump",
              "-g": "goto", "--goto": "goto", "-c": "counters", "--set-counters": "counters",
              "-f": "fragment", "--fragment": "fragment"}


def parse_rule(line: str, *, filename: str = "<input>", lineno: int = 1) -> tuple[str, Rule]:
    """Parse one ``-A CHAIN ...`` line (also felix's long spellings and the kernel trace's
    ``-4 -t TABLE -A CHAIN ...``) into (chain, Rule)."""
    _table, chain, rule = _parse_line(line, filename, lineno)
    return chain, rule


def _parse_line(line: str, filename: str, lineno: int) -> tuple[str | None, str, Rule]:
    try:
        words = split_words(line)
        cur = _Cursor(words)
        table = None
        if cur.peek() and cur.peek().startswith("[") and cur.peek().endswith("]"):
            cur.pos += 1                       # "[packets:bytes]" from iptables-save -c
        while cur.peek() in ("-4", "-6", "-t", "--table"):
            word = cur.take("option")
            if word == "-6":
                raise _RuleError("IPv6 rules are not supported")
            if word in ("-t", "--table"):
                table = cur.take("table name")
        command = cur.take("command")
        if command not in ("-A", "--append"):
            raise _RuleError(f"unsupported command {command!r} (only -A)")
        chain = cur.take("chain name")
        return table, chain, _parse_body(cur)
    except (_RuleError, ValueError) as err:
        raise InputError(f"line {lineno}: {err} in: {line.strip()}", file=filename) from None


def _parse_body(cur: _Cursor) -> Rule:
    draft = _Draft()
    while cur.peek() is not None:
        negated = False
        if cur.peek() == "!":
            cur.pos += 1
            negated = True
        word = cur.take("option")
        kind = _TOP_LEVEL.get(word)
        if kind is None and word.startswith("--") and draft.protocol in (1, 6, 17, 132, 136):
            # iptables loads the protocol's own module for an unknown option (-p tcp --dport).
            cur.pos -= 2 if negated else 1
            module = "icmp" if draft.protocol == 1 else _PORT_MODULES[draft.protocol]
            loaded = ProtocolModuleMatch(module)
            at = draft.body.index(loaded) if loaded in draft.body else None
            start = len(draft.body)
            _parse_module(cur, module, draft)
            if at is not None:
                # "-m tcp -p tcp --dport 80": the options extend the module already loaded.
                added = draft.body[start:]
                del draft.body[start:]
                draft.body[at:at + 1] = added
                draft.proto_modules.pop()
            continue
        if kind is None:
            raise _RuleError(f"unsupported option {word!r}")
        if negated and kind not in ("protocol", "src", "dst", "in", "out"):
            raise _RuleError(f"'!' cannot negate {word}")
        if kind == "match":
            _parse_module(cur, cur.take("match name"), draft)
        elif kind in ("jump", "goto"):
            if draft.target is not None:
                raise _RuleError("more than one target")
            name = cur.take("target")
            draft.target = Goto(name) if kind == "goto" else _parse_target(name, cur)
        elif kind == "counters":
            cur.take("packet count"), cur.take("byte count")
        elif kind == "fragment":
            raise _RuleError("unsupported option '-f'")
        else:
            _parse_header(kind, cur.take(word), negated, draft)
    return _finish_rule(draft)


def _parse_header(kind: str, value: str, negated: bool, draft: _Draft) -> None:
    if any(isinstance(m, _HEADER_TYPES[kind]) and _header_key(m) == kind for m in draft.header):
        raise _RuleError(f"more than one {kind} option")
    if kind == "protocol":
        proto = _protocol_number(value)
        draft.protocol = proto if not negated else None
        if proto != 0 or negated:              # "-p all" is no match at all
            draft.header.append(ProtocolMatch(proto, negated))
    elif kind in ("src", "dst"):
        if "," in value:
            raise _RuleError(f"address list {value!r} expands to several rules; not supported")
        try:
            cidr = Cidr.parse(value)
        except ValueError:
            raise _RuleError(f"bad address {value!r}") from None
        if cidr.prefix_len != 0 or negated:    # 0.0.0.0/0 is not printed back
            draft.header.append(AddressMatch(kind, cidr, negated))
    else:
        if not value or len(value) > 15:
            raise _RuleError(f"bad interface name {value!r}")
        draft.header.append(InterfaceMatch(kind, value, negated))


_HEADER_TYPES = {"protocol": ProtocolMatch, "src": AddressMatch, "dst": AddressMatch,
                 "in": InterfaceMatch, "out": InterfaceMatch}


def _header_key(match: Match) -> str:
    if isinstance(match, ProtocolMatch):
        return "protocol"
    return match.direction


def _protocol_number(value: str) -> int:
    if value.isdigit():
        number = int(value)
        if number > 255:
            raise _RuleError(f"bad protocol {value!r}")
        return number
    number = _PROTO_PARSE.get(value.lower())
    if number is None:
        try:
            number = socket.getprotobyname(value)
        except OSError:
            raise _RuleError(f"unknown protocol {value!r}") from None
    return number


def _parse_module(cur: _Cursor, module: str, draft: _Draft) -> None:
    known = _MODULE_OPTIONS.get(module)
    if known is None:
        raise _RuleError(f"unsupported match '-m {module}'")
    options: list[tuple[str, bool, list[str]]] = []
    while cur.peek() is not None:
        negated = cur.peek() == "!"
        word = cur.peek(1 if negated else 0)
        if word is None or not word.startswith("--") or word in _TOP_LEVEL:
            break
        name = _OPTION_ALIASES.get(word[2:], word[2:])
        if name not in known:
            raise _RuleError(f"unsupported option {word!r} for '-m {module}'")
        arity, invertible = known[name]
        if negated and not invertible:
            raise _RuleError(f"'!' cannot negate {word}")
        cur.pos += 2 if negated else 1
        options.append((name, negated, [cur.take(f"argument of {word}") for _ in range(arity)]))
    if module == "comment":
        if not options:
            raise _RuleError("-m comment without --comment")
        if draft.comment_at is None:
            draft.comment_at = len(draft.body)
        draft.comments.extend(args[0] for _, _, args in options)
        return
    if module in ("tcp", "udp", "sctp", "udplite", "icmp"):
        draft.proto_modules.append(module)
    draft.body.extend(_MODULE_BUILDERS[module](options, module))


# -- module builders: options -> matches --------------------------------------------------


def _build_conntrack(options, module) -> list[Match]:
    states: frozenset[str] = frozenset()
    negated = False
    statuses = None
    status_negated = False
    for name, neg, (value,) in options:
        if name in ("ctstate", "state"):
            states, negated = _name_set(value, CT_STATES, "state"), neg
        else:
            statuses = _name_set(value, CT_STATUSES + ("NONE",), "status") - {"NONE"}
            status_negated = neg
    if not options:
        raise _RuleError(f"-m {module} without options")
    return [ConntrackMatch(states, negated, statuses, status_negated, module=module)]


def _name_set(value: str, allowed: tuple[str, ...], what: str) -> frozenset[str]:
    names = frozenset(v.strip().upper() for v in value.split(","))
    unknown = names - set(allowed)
    if unknown:
        raise _RuleError(f"unknown {what} {sorted(unknown)[0]!r}")
    return names


def _build_set(options, module) -> list[Match]:
    matches: list[Match] = []
    for _name, neg, (set_name, flags) in options:
        dirs = tuple(flags.split(","))
        if not dirs or any(d not in ("src", "dst") for d in dirs) or len(dirs) > 6:
            raise _RuleError(f"bad ipset flags {flags!r}")
        matches.append(SetMatch(set_name, dirs, neg))  # type: ignore[arg-type]
    if not matches:
        raise _RuleError("-m set without --match-set")
    return matches


def _build_multiport(options, module) -> list[Match]:
    if len(options) != 1:
        raise _RuleError("-m multiport needs exactly one of --dports/--sports")
    name, neg, (value,) = options[0]
    ranges = tuple(_port_range(part) for part in value.split(","))
    if sum(1 if lo == hi else 2 for lo, hi in ranges) > 15:
        raise _RuleError("too many ports for multiport (15 slots)")
    return [PortMatch("dst" if name == "dports" else "src", ranges, neg, multiport=True)]


def _build_l4(options, module) -> list[Match]:
    if not options:
        return [ProtocolModuleMatch(module)]
    matches: list[Match] = []
    for name, neg, args in options:
        if name in ("sport", "dport"):
            matches.append(PortMatch("src" if name == "sport" else "dst",
                                     (_port_range(args[0]),), neg, multiport=False))
        elif name == "syn":
            matches.append(TcpFlagsMatch(0x17, 0x02, neg))
        else:
            matches.append(TcpFlagsMatch(_tcp_flags(args[0]), _tcp_flags(args[1]), neg))
    return matches


def _tcp_flags(value: str) -> int:
    bits = 0
    names = dict(TCP_FLAGS) | _TCP_FLAG_ALIASES
    for name in value.upper().split(","):
        if name not in names:
            raise _RuleError(f"unknown TCP flag {name!r}")
        bits |= names[name]
    return bits


def _port_range(value: str) -> tuple[int, int]:
    lo_text, sep, hi_text = value.partition(":")
    lo = _port(lo_text) if lo_text else 0
    hi = (_port(hi_text) if hi_text else 65535) if sep else lo
    if lo > hi:
        raise _RuleError(f"bad port range {value!r}")
    return lo, hi


def _port(text: str) -> int:
    if text.isdigit():
        port = int(text)
        if port > 65535:
            raise _RuleError(f"bad port {text!r}")
        return port
    try:
        return socket.getservbyname(text)
    except OSError:
        raise _RuleError(f"unknown port {text!r}") from None


def _build_icmp(options, module) -> list[Match]:
    if len(options) != 1:
        raise _RuleError("-m icmp needs --icmp-type")
    _name, neg, (value,) = options[0]
    if value == "any":
        return [IcmpMatch(None, None, neg)]
    if value in ICMP_NAMES:
        icmp_type, code = ICMP_NAMES[value]
    else:
        type_text, sep, code_text = value.partition("/")
        try:
            icmp_type, code = int(type_text), (int(code_text) if sep else None)
        except ValueError:
            raise _RuleError(f"unknown ICMP type {value!r}") from None
    return [IcmpMatch(icmp_type, code, neg)]


def _build_addrtype(options, module) -> list[Match]:
    fields: dict = {}
    for name, neg, args in options:
        if name == "src-type":
            fields.update(src_type=_type_list(args[0]), src_negated=neg)
        elif name == "dst-type":
            fields.update(dst_type=_type_list(args[0]), dst_negated=neg)
        else:
            fields["limit_iface"] = "in" if name == "limit-iface-in" else "out"
    if "src_type" not in fields and "dst_type" not in fields:
        raise _RuleError("-m addrtype needs --src-type or --dst-type")
    return [AddrTypeMatch(**fields)]


def _type_list(value: str) -> str:
    names = _name_set(value, ADDR_TYPES, "address type")
    return ",".join(t for t in ADDR_TYPES if t in names)


def _build_rpfilter(options, module) -> list[Match]:
    flags = {name.replace("-", "_"): True for name, _, _ in options}
    return [RpfilterMatch(**flags)]


def _build_mark(options, module) -> list[Match]:
    if len(options) != 1:
        raise _RuleError(f"-m {module} needs --mark")
    _name, neg, (value,) = options[0]
    mark, mask = _value_mask(value)
    cls = MarkMatch if module == "mark" else ConnmarkMatch
    return [cls(mark, mask, neg)]


def _build_limit(options, module) -> list[Match]:
    rate, burst = "3/hour", None
    for name, _, (value,) in options:
        if name == "limit":
            rate = _limit_rate(value)
        else:
            burst = int(value)
    return [LimitMatch(rate, None if burst == _LIMIT_DEFAULT_BURST else burst)]


def _limit_rate(value: str) -> str:
    """Normalise a rate as libxt_limit's parse_rate + print_rate would (60/min -> 1/sec)."""
    count_text, _, unit = value.partition("/")
    if not count_text.isdigit() or int(count_text) == 0:
        raise _RuleError(f"bad rate {value!r}")
    mult = _LIMIT_SCALE
    if unit:
        for full, scale in (("second", 1), ("minute", 60), ("hour", 3600), ("day", 86400)):
            if full.startswith(unit.lower()):
                mult = _LIMIT_SCALE * scale
                break
        else:
            raise _RuleError(f"bad rate unit {value!r}")
    period = mult // int(count_text)
    if period == 0:
        raise _RuleError(f"rate too fast {value!r}")
    i = 1
    while i < len(_LIMIT_UNITS):
        scale = _LIMIT_UNITS[i][1]
        if period > scale or scale // period < scale % period:
            break
        i += 1
    name, scale = _LIMIT_UNITS[i - 1]
    return f"{scale // period}/{name}"


def _build_statistic(options, module) -> list[Match]:
    opts = {name: (neg, args[0]) for name, neg, args in options}
    mode = opts.get("mode", (False, None))[1]
    negated = any(neg for neg, _ in opts.values())
    if mode == "random" and "probability" in opts:
        scaled = math.floor(float(opts["probability"][1]) * 0x80000000 + 0.5)
        if not 0 <= scaled <= 0x80000000:
            raise _RuleError("probability must be between 0 and 1")
        return [StatisticMatch("random", probability=scaled / 0x80000000, negated=negated)]
    if mode == "nth" and "every" in opts:
        every = int(opts["every"][1])
        packet = int(opts.get("packet", (False, "0"))[1])
        if every < 1 or packet >= every:
            raise _RuleError("bad --every/--packet")
        return [StatisticMatch("nth", every=every, packet=packet, negated=negated)]
    raise _RuleError("-m statistic needs --mode random --probability or --mode nth --every")


_MODULE_BUILDERS = {
    "conntrack": _build_conntrack, "state": _build_conntrack, "set": _build_set,
    "multiport": _build_multiport, "tcp": _build_l4, "udp": _build_l4, "sctp": _build_l4,
    "udplite": _build_l4, "icmp": _build_icmp, "addrtype": _build_addrtype,
    "rpfilter": _build_rpfilter, "mark": _build_mark, "connmark": _build_mark,
    "limit": _build_limit, "statistic": _build_statistic,
}


def _value_mask(text: str) -> tuple[int, int]:
    value_text, sep, mask_text = text.partition("/")
    try:
        value = int(value_text, 0)
        mask = int(mask_text, 0) if sep else 0xFFFFFFFF
    except ValueError:
        raise _RuleError(f"bad mark {text!r}") from None
    if not (0 <= value <= 0xFFFFFFFF and 0 <= mask <= 0xFFFFFFFF):
        raise _RuleError(f"mark out of range {text!r}")
    return value, mask


# -- targets ------------------------------------------------------------------------------


def _parse_target(name: str, cur: _Cursor) -> Target:
    known = _TARGET_OPTIONS.get(name)
    if known is None:
        if name in _OTHER_TARGETS:
            raise _RuleError(f"unsupported target '-j {name}'")
        return Jump(name)
    opts: dict[str, str | None] = {}
    while cur.peek() is not None and cur.peek().startswith("--") and cur.peek() not in _TOP_LEVEL:
        word = cur.take("option")
        if word[2:] not in known:
            raise _RuleError(f"unsupported option {word!r} for '-j {name}'")
        opts[word[2:]] = cur.take(f"argument of {word}") if known[word[2:]] else None
    return _TARGET_BUILDERS[name](opts)


def _target_mark(opts) -> Target:
    if len(opts) != 1:
        raise _RuleError("-j MARK needs exactly one of --set-xmark/--set-mark/--and-mark/...")
    (name, value), = opts.items()
    if name in ("set-xmark", "set-mark"):
        mark, mask = _value_mask(value)
        # libxt_MARK: --set-mark v/m is stored as xmark v/(v|m).
        return SetMark(mark, mask if name == "set-xmark" else (mark | mask))
    bits = _value_mask(value)[0]
    if name == "and-mark":
        return SetMark(0, ~bits & 0xFFFFFFFF)
    if name == "or-mark":
        return SetMark(bits, bits)
    return SetMark(bits, 0)                    # xor-mark


def _target_connmark(opts) -> Target:
    masks = {"nfmask": 0xFFFFFFFF, "ctmask": 0xFFFFFFFF}
    if "mask" in opts:
        masks["nfmask"] = masks["ctmask"] = _value_mask(opts["mask"])[0]
    for key in ("nfmask", "ctmask"):
        if key in opts:
            masks[key] = _value_mask(opts[key])[0]
    if "save-mark" in opts or "restore-mark" in opts:
        mode = "save" if "save-mark" in opts else "restore"
        return ConnMarkTarget(mode, nfmask=masks["nfmask"], ctmask=masks["ctmask"])
    for key in ("set-xmark", "set-mark"):
        if key in opts:
            mark, mask = _value_mask(opts[key])
            return ConnMarkTarget("set", mark, mask if key == "set-xmark" else (mark | mask))
    raise _RuleError("-j CONNMARK needs --save-mark, --restore-mark or --set-xmark")


def _target_log(opts) -> Target:
    level = None
    if "log-level" in opts:
        text = opts["log-level"].lower()
        level = int(text) if text.isdigit() else _LOG_LEVELS.get(text)
        if level is None or level > 7:
            raise _RuleError(f"bad log level {opts['log-level']!r}")
        if level == _LOG_DEFAULT_LEVEL:
            level = None
    return Log(prefix=opts.get("log-prefix") or "", level=level)


def _target_nflog(opts) -> Target:
    # --nflog-range is accepted and dropped, as iptables 1.8.9 does ("has never worked").
    size = opts.get("nflog-size")
    for key, high in (("nflog-group", 0xFFFF), ("nflog-size", 0xFFFFFFFF)):
        value = opts.get(key)
        if value is not None and not (value.isdigit() and int(value) <= high):
            raise _RuleError(f"--{key}: expected a number 0-{high}, got {quote(value)}")
    return Nflog(group=int(opts.get("nflog-group") or 0), prefix=opts.get("nflog-prefix") or "",
                 size=int(size) if size is not None else None)


def _target_masquerade(opts) -> Target:
    ports = None
    if "to-ports" in opts:
        ports = _nat_ports(opts["to-ports"], "--to-ports")
    return Masquerade(ports, random_fully="random-fully" in opts, random="random" in opts)


def _nat_ports(text: str, option: str) -> tuple[int, int]:
    """``PORT[-PORT]`` of a NAT target (libxt_NAT/libxt_MASQUERADE), 1-65535."""
    lo_text, _, hi_text = text.partition("-")
    if not lo_text.isdigit() or not (hi_text or lo_text).isdigit():
        raise _RuleError(f"{option}: bad port range {quote(text)}")
    lo, hi = int(lo_text), int(hi_text or lo_text)
    if not 1 <= lo <= hi <= 65535:
        raise _RuleError(f"{option}: port range {quote(text)} outside 1-65535")
    return lo, hi


def _nat_to(text: str, target: str, option: str) -> str:
    """``ADDR[:PORT[-PORT]]`` of -j SNAT/DNAT, checked now: the trace reads it later.

    iptables also takes an address range (``ADDR-ADDR``) and DNAT a port range; the tracer
    binds one address and port per connection, so those are refused as not modelled."""
    address, sep, ports = text.partition(":")
    if "-" in address:
        raise _RuleError(f"-j {target} {option} {quote(text)}: address ranges are not modelled")
    try:
        IPv4Address(address)
    except ValueError:
        raise _RuleError(f"-j {target} {option}: bad IPv4 address {quote(address)}") from None
    if sep:
        lo, hi = _nat_ports(ports, option)
        if target == "DNAT" and lo != hi:
            raise _RuleError(f"-j DNAT {option} {quote(text)}: port ranges are not modelled")
    return text


def _target_reject(opts) -> Target:
    with_ = opts.get("reject-with", "icmp-port-unreachable")
    with_ = _REJECT_ALIASES.get(with_, with_)
    if with_ not in REJECT_WITH:
        raise _RuleError(f"unsupported --reject-with {with_!r}")
    return Reject(with_)


def _require(opts, key: str, target: str) -> str:
    if not opts.get(key):
        raise _RuleError(f"-j {target} needs --{key}")
    return opts[key]


_TARGET_BUILDERS = {
    "ACCEPT": lambda o: Verdict("ACCEPT"), "DROP": lambda o: Verdict("DROP"),
    "RETURN": lambda o: Verdict("RETURN"), "TRACE": lambda o: TraceTarget(),
    "NOTRACK": lambda o: NoTrack(),
    "CT": lambda o: NoTrack(ct=True) if "notrack" in o else _unsupported_ct(),
    "REJECT": _target_reject, "MARK": _target_mark, "CONNMARK": _target_connmark,
    "LOG": _target_log, "NFLOG": _target_nflog, "MASQUERADE": _target_masquerade,
    "SNAT": lambda o: Snat(_nat_to(_require(o, "to-source", "SNAT"), "SNAT", "--to-source"),
                           random_fully="random-fully" in o, random="random" in o),
    "DNAT": lambda o: Dnat(_nat_to(_require(o, "to-destination", "DNAT"), "DNAT",
                                   "--to-destination")),
}


def _unsupported_ct() -> Target:
    raise _RuleError("unsupported target '-j CT' without --notrack")


# -- normal form ----------------------------------------------------------------------------


def _finish_rule(draft: _Draft) -> Rule:
    for module in draft.proto_modules:
        if draft.protocol != (1 if module == "icmp" else PROTOCOL_NUMBERS[module]):
            raise _RuleError(f"'-m {module}' needs '-p {module}'")
    header = sorted(draft.header, key=_header_rank)
    body = _sort_l4_runs(draft.body)
    comment_at = len(header) + (draft.comment_at if draft.comment_at is not None else 0)
    return Rule(matches=tuple(header + body), target=draft.target,
                comments=tuple(draft.comments), comment_at=comment_at)


def _header_rank(match: Match) -> int:
    if isinstance(match, ProtocolMatch):
        return 4
    return _HEADER_ORDER[match.direction]


def _is_header(match: Match) -> bool:
    return isinstance(match, (ProtocolMatch, AddressMatch, InterfaceMatch))


def _is_stored_as_nothing(match: Match) -> bool:
    """``-s 0.0.0.0/0`` and ``-p all`` match everything: iptables keeps no match for them, so
    they never come back (felix does write ``--source 0.0.0.0/0`` for ``nets: [0.0.0.0/0]``)."""
    if isinstance(match, AddressMatch):
        return match.cidr.prefix_len == 0 and not match.negated
    return isinstance(match, ProtocolMatch) and match.protocol == 0 and not match.negated


def _l4_rank(match: Match) -> int | None:
    """Position inside one ``-m tcp`` block as iptables prints it, or None if not such an
    option. iptables-nft merges adjacent tcp/udp options into one block, in this order."""
    if isinstance(match, PortMatch) and not match.multiport:
        return 0 if match.direction == "src" else 1
    if isinstance(match, TcpFlagsMatch):
        return 2
    return None


def _sort_l4_runs(body: list[Match]) -> list[Match]:
    out: list[Match] = []
    run: list[Match] = []
    for match in body + [None]:  # type: ignore[list-item]
        if match is not None and _l4_rank(match) is not None:
            run.append(match)
            continue
        out.extend(sorted(run, key=_l4_rank))
        run = []
        if match is not None:
            out.append(match)
    return out


def normalise_rule(rule: Rule) -> Rule:
    """The rule as ``iptables-save`` would hand it back: header matches first in kernel order,
    tcp/udp options in print order, comments after the header. ``parse_rule(format_rule(r))``
    equals ``normalise_rule(r)``."""
    header = sorted((m for m in rule.matches if _is_header(m) and not _is_stored_as_nothing(m)),
                    key=_header_rank)
    body = _sort_l4_runs([m for m in rule.matches if not _is_header(m)])
    before = sum(1 for m in rule.matches[:rule.comment_at] if not _is_header(m))
    return replace(rule, matches=tuple(header + body), comment_at=len(header) + before)


# ----------------------------------------------------------------------------- rule writing


def format_rule(chain: str, rule: Rule) -> str:
    """``-A CHAIN <matches> -j TARGET`` in iptables-save's spelling."""
    norm = normalise_rule(rule)
    protocol = next((m.protocol for m in norm.matches
                     if isinstance(m, ProtocolMatch) and not m.negated), None)
    parts = ["-A", chain]
    comments = [f"-m comment --comment {quote_word(c)}" for c in norm.comments]
    block: list[Match] = []
    for index, match in enumerate(norm.matches):
        if index == norm.comment_at and comments:
            parts += _flush_l4(block, protocol)
            parts += comments
            comments = []
        rank = _l4_rank(match)
        if rank is not None:
            if block and _l4_rank(block[-1]) >= rank:
                parts += _flush_l4(block, protocol)
            block.append(match)
            continue
        parts += _flush_l4(block, protocol)
        parts.append(_format_match(match))
    parts += _flush_l4(block, protocol)
    parts += comments
    if norm.target is not None:
        parts.append(_format_target(norm.target))
    return " ".join(parts)


def _flush_l4(block: list[Match], protocol: int | None) -> list[str]:
    if not block:
        return []
    module = _PORT_MODULES.get(protocol or -1)
    if module is None:
        raise ValueError("a --sport/--dport/--tcp-flags match needs '-p tcp|udp|sctp|udplite'")
    words = [f"-m {module}"]
    for match in block:
        neg = "! " if match.negated else ""
        if isinstance(match, PortMatch):
            opt = "--sport" if match.direction == "src" else "--dport"
            words.append(f"{neg}{opt} {_ports(match.ranges[0])}")
        else:
            words.append(f"{neg}--tcp-flags {_flag_names(match.mask)} {_flag_names(match.comp)}")
    block.clear()
    return words


def _ports(port_range: tuple[int, int]) -> str:
    lo, hi = port_range
    return str(lo) if lo == hi else f"{lo}:{hi}"


def _flag_names(bits: int) -> str:
    names = [name for name, bit in TCP_FLAGS if bits & bit]
    return ",".join(names) if names else "NONE"


def _hex_mask(value: int, mask: int) -> str:
    return f"0x{value:x}" if mask == 0xFFFFFFFF else f"0x{value:x}/0x{mask:x}"


def _neg(flag: bool) -> str:
    return "! " if flag else ""


def _format_match(m: Match) -> str:
    if isinstance(m, ProtocolMatch):
        return f"{_neg(m.negated)}-p {_PROTO_PRINT.get(m.protocol, str(m.protocol))}"
    if isinstance(m, AddressMatch):
        flag = "-s" if m.direction == "src" else "-d"
        net = IPv4Network((m.cidr.network, m.cidr.prefix_len))
        return f"{_neg(m.negated)}{flag} {net.network_address}/{net.prefixlen}"
    if isinstance(m, InterfaceMatch):
        return f"{_neg(m.negated)}{'-i' if m.direction == 'in' else '-o'} {m.name}"
    if isinstance(m, PortMatch):             # multiport (single ports go through _flush_l4)
        opt = "--sports" if m.direction == "src" else "--dports"
        return f"-m multiport {_neg(m.negated)}{opt} {','.join(_ports(r) for r in m.ranges)}"
    if isinstance(m, IcmpMatch):
        if m.icmp_type is None:
            spec = "any"
        else:
            spec = str(m.icmp_type) if m.icmp_code is None else f"{m.icmp_type}/{m.icmp_code}"
        return f"-m icmp {_neg(m.negated)}--icmp-type {spec}"
    if isinstance(m, MarkMatch):
        return f"-m mark {_neg(m.negated)}--mark {_hex_mask(m.value, m.mask)}"
    if isinstance(m, ConnmarkMatch):
        return f"-m connmark {_neg(m.negated)}--mark {_hex_mask(m.value, m.mask)}"
    if isinstance(m, ConntrackMatch):
        return _format_conntrack(m)
    if isinstance(m, SetMatch):
        return f"-m set {_neg(m.negated)}--match-set {m.set_name} {','.join(m.flags)}"
    if isinstance(m, AddrTypeMatch):
        words = ["-m addrtype"]
        if m.src_type:
            words.append(f"{_neg(m.src_negated)}--src-type {m.src_type}")
        if m.dst_type:
            words.append(f"{_neg(m.dst_negated)}--dst-type {m.dst_type}")
        if m.limit_iface:
            words.append(f"--limit-iface-{m.limit_iface}")
        return " ".join(words)
    if isinstance(m, RpfilterMatch):
        flags = [name for name, on in (("--loose", m.loose), ("--validmark", m.validmark),
                                       ("--accept-local", m.accept_local),
                                       ("--invert", m.invert)) if on]
        return " ".join(["-m rpfilter", *flags])
    if isinstance(m, LimitMatch):
        burst = f" --limit-burst {m.burst}" if m.burst is not None else ""
        return f"-m limit --limit {m.rate}{burst}"
    if isinstance(m, StatisticMatch):
        if m.mode == "random":
            return (f"-m statistic --mode random {_neg(m.negated)}"
                    f"--probability {m.probability:.11f}")
        return f"-m statistic --mode nth {_neg(m.negated)}--every {m.every} --packet {m.packet}"
    if isinstance(m, ProtocolModuleMatch):
        return f"-m {m.module}"
    raise TypeError(f"cannot format match {m!r}")


def _format_conntrack(m: ConntrackMatch) -> str:
    if m.module == "state":
        return f"-m state {_neg(m.negated)}--state {_ordered(m.states, CT_STATES)}"
    words = ["-m conntrack"]
    if m.states:
        words.append(f"{_neg(m.negated)}--ctstate {_ordered(m.states, CT_STATES)}")
    if m.statuses is not None:
        words.append(f"{_neg(m.status_negated)}--ctstatus "
                     f"{_ordered(m.statuses, CT_STATUSES) or 'NONE'}")
    return " ".join(words)


def _ordered(names: frozenset[str], order: tuple[str, ...]) -> str:
    return ",".join(n for n in order if n in names)


def _format_target(t: Target) -> str:
    if isinstance(t, Verdict):
        return f"-j {t.name}"
    if isinstance(t, Jump):
        return f"-j {t.chain}"
    if isinstance(t, Goto):
        return f"-g {t.chain}"
    if isinstance(t, Reject):
        return f"-j REJECT --reject-with {t.with_}"
    if isinstance(t, SetMark):
        return f"-j MARK --set-xmark 0x{t.value:x}/0x{t.mask:x}"
    if isinstance(t, ConnMarkTarget):
        if t.mode == "set":
            return f"-j CONNMARK --set-xmark 0x{t.value:x}/0x{t.mask:x}"
        return (f"-j CONNMARK --{t.mode}-mark --nfmask 0x{t.nfmask:x} "
                f"--ctmask 0x{t.ctmask:x}")
    if isinstance(t, Log):
        words = ["-j LOG"]
        if t.prefix:
            words.append(f"--log-prefix {quote_word(t.prefix)}")
        if t.level is not None and t.level != _LOG_DEFAULT_LEVEL:
            words.append(f"--log-level {t.level}")
        return " ".join(words)
    if isinstance(t, Nflog):
        words = ["-j NFLOG"]
        if t.prefix:
            words.append(f"--nflog-prefix {quote_word(t.prefix)}")
        if t.group:
            words.append(f"--nflog-group {t.group}")
        if t.size is not None:
            words.append(f"--nflog-size {t.size}")
        return " ".join(words)
    if isinstance(t, NoTrack):
        return "-j CT --notrack" if t.ct else "-j NOTRACK"
    if isinstance(t, Masquerade):
        words = ["-j MASQUERADE"]
        if t.to_ports is not None:
            lo, hi = t.to_ports
            words.append(f"--to-ports {lo}" if lo == hi else f"--to-ports {lo}-{hi}")
        words += ["--random"] if t.random else []
        words += ["--random-fully"] if t.random_fully else []
        return " ".join(words)
    if isinstance(t, Snat):
        return " ".join(["-j SNAT", f"--to-source {t.to_source}",
                         *(["--random"] if t.random else []),
                         *(["--random-fully"] if t.random_fully else [])])
    if isinstance(t, Dnat):
        return f"-j DNAT --to-destination {t.to_destination}"
    if isinstance(t, TraceTarget):
        return "-j TRACE"
    raise TypeError(f"cannot format target {t!r}")


# ----------------------------------------------------------------------------- rulesets


@dataclass
class _TableDraft:
    table: Table
    lineno: int
    chains: dict[str, list[Rule]] = field(default_factory=dict)
    policies: dict[str, str | None] = field(default_factory=dict)
    rule_lines: dict[tuple[str, int], int] = field(default_factory=dict)


def parse_ruleset(text: str, *, filename: str = "<input>",
                  ipsets: dict[str, IpSet] | None = None) -> Ruleset:
    """Parse ``iptables-save`` output (any subset of the raw/mangle/nat/filter tables)."""
    tables: dict[Table, _TableDraft] = {}
    current: _TableDraft | None = None

    def fail(lineno: int, problem: str, line: str) -> InputError:
        return InputError(f"line {lineno}: {problem} in: {shorten(line.strip(), 120)}",
                          file=filename)

    for lineno, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.startswith("*"):
            if current is not None:
                raise fail(lineno, "table started before COMMIT", line)
            try:
                table = Table(stripped[1:])
            except ValueError:
                raise fail(lineno, f"unsupported table {stripped[1:]!r}", line) from None
            if table in tables:
                raise fail(lineno, f"table {table.value} appears twice", line)
            current = tables[table] = _TableDraft(table, lineno)
        elif current is None:
            raise fail(lineno, "line outside a *table ... COMMIT block", line)
        elif stripped == "COMMIT":
            _check_table(current, filename)
            current = None
        elif stripped.startswith(":"):
            _declare_chain(current, stripped, lineno, line, fail)
        else:
            rule_table, chain, rule = _parse_line(stripped, filename, lineno)
            if rule_table is not None and rule_table != current.table.value:
                raise fail(lineno, f"rule for table {rule_table} inside *{current.table.value}",
                           line)
            if chain not in current.chains:
                raise fail(lineno, f"chain {chain!r} was not declared", line)
            current.chains[chain].append(rule)
            current.rule_lines[(chain, len(current.chains[chain]))] = lineno
    if current is not None:
        raise InputError(f"line {current.lineno}: *{current.table.value} has no COMMIT",
                         file=filename)
    result = {t: {name: Chain(name, tuple(rules), d.policies[name])
                  for name, rules in d.chains.items()} for t, d in tables.items()}
    return Ruleset(tables=result, ipsets=dict(ipsets or {}))


def _declare_chain(draft: _TableDraft, stripped: str, lineno: int, line: str, fail) -> None:
    words = stripped[1:].split()
    if len(words) < 2:
        raise fail(lineno, "chain line needs a name and a policy", line)
    name, policy = words[0], words[1]
    builtin = name in BUILTIN_CHAINS[draft.table]
    if name in draft.chains:
        raise fail(lineno, f"chain {name!r} declared twice", line)
    if builtin and policy not in ("ACCEPT", "DROP"):
        raise fail(lineno, f"built-in chain {name} needs policy ACCEPT or DROP", line)
    if not builtin and policy != "-":
        raise fail(lineno, f"user chain {name} cannot have a policy", line)
    if len(name) > 28:
        raise fail(lineno, f"chain name {name!r} is longer than 28 characters", line)
    draft.chains[name] = []
    draft.policies[name] = policy if builtin else None


def _check_table(draft: _TableDraft, filename: str) -> None:
    """What iptables-restore refuses at COMMIT: jumps to missing or built-in chains, loops."""
    edges: dict[str, list[tuple[str, int]]] = {name: [] for name in draft.chains}
    for name, rules in draft.chains.items():
        for number, rule in enumerate(rules, 1):
            if not isinstance(rule.target, (Jump, Goto)):
                continue
            lineno = draft.rule_lines[(name, number)]
            target = rule.target.chain
            if target not in draft.chains:
                raise InputError(f"line {lineno}: {name} rule {number} jumps to undefined "
                                 f"chain {target!r} in table {draft.table.value}", file=filename)
            if target in BUILTIN_CHAINS[draft.table]:
                raise InputError(f"line {lineno}: {name} rule {number} jumps to built-in chain "
                                 f"{target}", file=filename)
            edges[name].append((target, lineno))
    _check_loops(edges, draft.table, filename)


def _check_loops(edges: dict[str, list[tuple[str, int]]], table: Table, filename: str) -> None:
    """Depth-first, with an explicit stack: a dump can chain thousands of jumps."""
    state: dict[str, int] = {}                 # 1 = on the DFS path, 2 = done
    for root in edges:
        if root in state:
            continue
        state[root] = 1
        path, stack = [root], [iter(edges[root])]
        while stack:
            step = next(stack[-1], None)
            if step is None:
                state[path.pop()] = 2
                stack.pop()
                continue
            target, lineno = step
            if state.get(target) == 1:
                cycle = " -> ".join(path[path.index(target):] + [target])
                raise InputError(f"line {lineno}: chain loop in table {table.value}: "
                                 f"{shorten(cycle, 200)}", file=filename)
            if state.get(target) is None:
                state[target] = 1
                path.append(target)
                stack.append(iter(edges[target]))
    _check_depth(edges, table, filename)


def _check_depth(edges: dict[str, list[tuple[str, int]]], table: Table, filename: str) -> None:
    """Refuse jumps nested deeper than the interpreter's stack (loops are already refused, so
    depths follow in one pass over the chains in reverse topological order)."""
    order: list[str] = []
    seen: set[str] = set()
    for root in edges:
        stack = [(root, False)]
        while stack:
            chain, done = stack.pop()
            if done:
                order.append(chain)
            elif chain not in seen:
                seen.add(chain)
                stack.append((chain, True))
                stack.extend((target, False) for target, _ in edges[chain])
    depth: dict[str, int] = {}
    for chain in order:                        # callees before callers
        depth[chain] = 1 + max((depth[t] for t, _ in edges[chain]), default=0)
        if depth[chain] > MAX_JUMP_DEPTH:
            lineno = edges[chain][0][1]
            raise InputError(f"line {lineno}: jumps from chain {chain!r} nest deeper than "
                             f"{MAX_JUMP_DEPTH} chains in table {table.value}", file=filename)


def format_ruleset(ruleset: Ruleset) -> str:
    """iptables-save text for ``iptables-restore``: tables raw, mangle, nat, filter."""
    lines: list[str] = []
    for table in (Table.RAW, Table.MANGLE, Table.NAT, Table.FILTER):
        chains = ruleset.tables.get(table)
        if chains is None:
            continue
        builtins = [c for c in BUILTIN_CHAINS[table] if c in chains]
        order = builtins + [name for name in chains if name not in BUILTIN_CHAINS[table]]
        lines.append(f"*{table.value}")
        for name in order:
            lines.append(f":{name} {chains[name].policy or 'ACCEPT'} [0:0]" if name in builtins
                         else f":{name} - [0:0]")
        for name in order:
            lines.extend(format_rule(name, rule) for rule in chains[name].rules)
        lines.append("COMMIT")
    return "\n".join(lines) + "\n"
