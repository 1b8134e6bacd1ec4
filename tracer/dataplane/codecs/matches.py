"""The other match modules felix and kube-proxy emit: conntrack/state, mark/connmark, set,
addrtype, rpfilter, limit, statistic, comment, and ipvs (kube-proxy's IPVS mode)."""

from __future__ import annotations

import math

from tracer.dataplane.codecs.base import (CodecError, MatchCodec, Option, hex_mask, name_set,
                                          neg, ordered, port_range, quote_word, value_mask)
from tracer.dataplane.codecs.header import protocol_number
from tracer.dataplane.ir import (AddrTypeMatch, Cidr, ConnmarkMatch, ConntrackMatch, IpvsMatch,
                                 LimitMatch, MarkMatch, Match, RpfilterMatch, SetMatch,
                                 StatisticMatch)

CT_STATES = ("INVALID", "NEW", "RELATED", "ESTABLISHED", "UNTRACKED", "SNAT", "DNAT")
CT_STATUSES = ("EXPECTED", "SEEN_REPLY", "ASSURED", "CONFIRMED")
ADDR_TYPES = ("UNSPEC", "UNICAST", "LOCAL", "BROADCAST", "ANYCAST", "MULTICAST", "BLACKHOLE",
              "UNREACHABLE", "PROHIBIT", "THROW", "NAT", "XRESOLVE")


class CommentCodec(MatchCodec):
    """``-m comment --comment TEXT``: no test, kept on the rule for printing and provenance."""

    modules = ("comment",)
    options = (Option("comment", 1),)

    def parse(self, module: str, options) -> list[str]:     # type: ignore[override]
        if not options:
            raise CodecError("-m comment without --comment")
        return [args[0] for _, _, args in options]

    def format(self, comment: str) -> str:                  # type: ignore[override]
        return f"-m comment --comment {quote_word(comment)}"


class ConntrackCodec(MatchCodec):
    """``-m conntrack --ctstate S [--ctstatus T]`` and its older spelling ``-m state``."""

    modules = ("conntrack", "state")
    options = (Option("ctstate", 1, True), Option("ctstatus", 1, True), Option("state", 1, True))
    ir = (ConntrackMatch,)

    def parse(self, module: str, options) -> list[Match]:
        if not options:
            raise CodecError(f"-m {module} without options")
        states: frozenset[str] = frozenset()
        negated = status_negated = False
        statuses = None
        for name, neg_, (value,) in options:
            if (name == "state") != (module == "state"):
                raise CodecError(f"unsupported option '--{name}' for '-m {module}'")
            if name in ("ctstate", "state"):
                states, negated = name_set(value, CT_STATES, "state"), neg_
            else:
                statuses = name_set(value, CT_STATUSES + ("NONE",), "status") - {"NONE"}
                status_negated = neg_
        return [ConntrackMatch(states, negated, statuses, status_negated, module=module)]

    def format(self, m: ConntrackMatch) -> str:
        if m.module == "state":
            return f"-m state {neg(m.negated)}--state {ordered(m.states, CT_STATES)}"
        words = ["-m conntrack"]
        if m.states:
            words.append(f"{neg(m.negated)}--ctstate {ordered(m.states, CT_STATES)}")
        if m.statuses is not None:
            words.append(f"{neg(m.status_negated)}--ctstatus "
                         f"{ordered(m.statuses, CT_STATUSES) or 'NONE'}")
        return " ".join(words)


class MarkCodec(MatchCodec):
    """``-m mark --mark V[/M]`` (skb mark) and ``-m connmark --mark V[/M]`` (conntrack mark)."""

    modules = ("mark", "connmark")
    options = (Option("mark", 1, True),)
    ir = (MarkMatch, ConnmarkMatch)

    def parse(self, module: str, options) -> list[Match]:
        if len(options) != 1:
            raise CodecError(f"-m {module} needs --mark")
        _name, negated, (value,) = options[0]
        mark, mask = value_mask(value)
        cls = MarkMatch if module == "mark" else ConnmarkMatch
        return [cls(mark, mask, negated)]

    def format(self, m: MarkMatch | ConnmarkMatch) -> str:
        module = "mark" if isinstance(m, MarkMatch) else "connmark"
        return f"-m {module} {neg(m.negated)}--mark {hex_mask(m.value, m.mask)}"


class SetCodec(MatchCodec):
    """``-m set --match-set NAME src[,dst...]``: one match per ``--match-set``."""

    modules = ("set",)
    options = (Option("match-set", 2, True),)
    ir = (SetMatch,)

    def parse(self, module: str, options) -> list[Match]:
        if not options:
            raise CodecError("-m set without --match-set")
        matches: list[Match] = []
        for _name, negated, (set_name, flags) in options:
            dirs = tuple(flags.split(","))
            if not dirs or any(d not in ("src", "dst") for d in dirs) or len(dirs) > 6:
                raise CodecError(f"bad ipset flags {flags!r}")
            matches.append(SetMatch(set_name, dirs, negated))   # type: ignore[arg-type]
        return matches

    def format(self, m: SetMatch) -> str:
        return f"-m set {neg(m.negated)}--match-set {m.set_name} {','.join(m.flags)}"


class AddrTypeCodec(MatchCodec):
    """``-m addrtype --src-type T --dst-type T [--limit-iface-in|out]``."""

    modules = ("addrtype",)
    options = (Option("src-type", 1, True), Option("dst-type", 1, True),
               Option("limit-iface-in", 0), Option("limit-iface-out", 0))
    ir = (AddrTypeMatch,)

    def parse(self, module: str, options) -> list[Match]:
        fields: dict = {}
        for name, negated, args in options:
            if name in ("src-type", "dst-type"):
                side = name[:3]
                names = name_set(args[0], ADDR_TYPES, "address type")
                fields.update({f"{side}_type": ordered(names, ADDR_TYPES),
                               f"{side}_negated": negated})
            else:
                fields["limit_iface"] = "in" if name == "limit-iface-in" else "out"
        if "src_type" not in fields and "dst_type" not in fields:
            raise CodecError("-m addrtype needs --src-type or --dst-type")
        return [AddrTypeMatch(**fields)]

    def format(self, m: AddrTypeMatch) -> str:
        words = ["-m addrtype"]
        if m.src_type:
            words.append(f"{neg(m.src_negated)}--src-type {m.src_type}")
        if m.dst_type:
            words.append(f"{neg(m.dst_negated)}--dst-type {m.dst_type}")
        if m.limit_iface:
            words.append(f"--limit-iface-{m.limit_iface}")
        return " ".join(words)


class RpfilterCodec(MatchCodec):
    """``-m rpfilter [--loose] [--validmark] [--accept-local] [--invert]``."""

    modules = ("rpfilter",)
    options = (Option("loose", 0), Option("validmark", 0), Option("accept-local", 0),
               Option("invert", 0))
    ir = (RpfilterMatch,)

    def parse(self, module: str, options) -> list[Match]:
        return [RpfilterMatch(**{name.replace("-", "_"): True for name, _, _ in options})]

    def format(self, m: RpfilterMatch) -> str:
        flags = [name for name, on in (("--loose", m.loose), ("--validmark", m.validmark),
                                       ("--accept-local", m.accept_local),
                                       ("--invert", m.invert)) if on]
        return " ".join(["-m rpfilter", *flags])


_LIMIT_SCALE = 10000
_LIMIT_UNITS = (("day", _LIMIT_SCALE * 86400), ("hour", _LIMIT_SCALE * 3600),
                ("min", _LIMIT_SCALE * 60), ("sec", _LIMIT_SCALE))
LIMIT_DEFAULT_BURST = 5


class LimitCodec(MatchCodec):
    """``-m limit --limit R --limit-burst B``; the rate normalised as libxt_limit prints it
    (60/min -> 1/sec), the default burst 5 dropped."""

    modules = ("limit",)
    options = (Option("limit", 1), Option("limit-burst", 1))
    ir = (LimitMatch,)

    def parse(self, module: str, options) -> list[Match]:
        rate, burst = "3/hour", None
        for name, _, (value,) in options:
            if name == "limit":
                rate = limit_rate(value)
            else:
                if not value.isdigit():
                    raise CodecError(f"bad --limit-burst {value!r}")
                burst = int(value)
        return [LimitMatch(rate, None if burst == LIMIT_DEFAULT_BURST else burst)]

    def format(self, m: LimitMatch) -> str:
        burst = f" --limit-burst {m.burst}" if m.burst is not None else ""
        return f"-m limit --limit {m.rate}{burst}"


def limit_rate(value: str) -> str:
    """Normalise a rate as libxt_limit's parse_rate + print_rate would (60/min -> 1/sec)."""
    count_text, _, unit = value.partition("/")
    if not count_text.isdigit() or int(count_text) == 0:
        raise CodecError(f"bad rate {value!r}")
    mult = _LIMIT_SCALE
    if unit:
        for full, scale in (("second", 1), ("minute", 60), ("hour", 3600), ("day", 86400)):
            if full.startswith(unit.lower()):
                mult = _LIMIT_SCALE * scale
                break
        else:
            raise CodecError(f"bad rate unit {value!r}")
    period = mult // int(count_text)
    if period == 0:
        raise CodecError(f"rate too fast {value!r}")
    i = 1
    while i < len(_LIMIT_UNITS):
        scale = _LIMIT_UNITS[i][1]
        if period > scale or scale // period < scale % period:
            break
        i += 1
    name, scale = _LIMIT_UNITS[i - 1]
    return f"{scale // period}/{name}"


class StatisticCodec(MatchCodec):
    """``-m statistic --mode random --probability P`` / ``--mode nth --every N --packet K``;
    the probability quantised as xt_statistic stores it (``round(P * 2**31)``)."""

    modules = ("statistic",)
    options = (Option("mode", 1), Option("probability", 1, True), Option("every", 1, True),
               Option("packet", 1))
    ir = (StatisticMatch,)

    def parse(self, module: str, options) -> list[Match]:
        opts = {name: (negated, args[0]) for name, negated, args in options}
        mode = opts.get("mode", (False, None))[1]
        negated = any(n for n, _ in opts.values())
        try:
            if mode == "random" and "probability" in opts:
                scaled = math.floor(float(opts["probability"][1]) * 0x80000000 + 0.5)
                if not 0 <= scaled <= 0x80000000:
                    raise CodecError("probability must be between 0 and 1")
                return [StatisticMatch("random", probability=scaled / 0x80000000,
                                       negated=negated)]
            if mode == "nth" and "every" in opts:
                every = int(opts["every"][1])
                packet = int(opts.get("packet", (False, "0"))[1])
                if every < 1 or not 0 <= packet < every:
                    raise CodecError("bad --every/--packet")
                return [StatisticMatch("nth", every=every, packet=packet, negated=negated)]
        except ValueError:
            raise CodecError("bad -m statistic number") from None
        raise CodecError("-m statistic needs --mode random --probability or --mode nth --every")

    def format(self, m: StatisticMatch) -> str:
        if m.mode == "random":
            return (f"-m statistic --mode random {neg(m.negated)}"
                    f"--probability {m.probability:.11f}")
        return f"-m statistic --mode nth {neg(m.negated)}--every {m.every} --packet {m.packet}"


IPVS_DIRECTIONS = ("ORIGINAL", "REPLY")
IPVS_METHODS = ("GATE", "IPIP", "MASQ")


class IpvsCodec(MatchCodec):
    """``-m ipvs [!] --ipvs [--vproto P] [--vaddr A[/M]] [--vport P] [--vdir D] [--vmethod M]
    [--vportctl P]`` (felix with kube-proxy in IPVS mode writes ``-m ipvs [!] --ipvs``).
    Parsed and printed back; the interpreter cannot know the kernel's IPVS table, so it takes
    the packet as not IPVS's and says so."""

    modules = ("ipvs",)
    options = (Option("ipvs", 0, True), Option("vproto", 1, True), Option("vaddr", 1, True),
               Option("vport", 1, True), Option("vdir", 1, True), Option("vmethod", 1, True),
               Option("vportctl", 1, True))
    ir = (IpvsMatch,)

    def parse(self, module: str, options) -> list[Match]:
        if not options:
            raise CodecError("-m ipvs without options")
        fields: dict = {}
        negated: list[str] = []
        for name, neg_, args in options:
            if neg_:
                negated.append(name)
            if name == "vproto":
                fields["vproto"] = protocol_number(args[0])
            elif name == "vaddr":
                try:
                    fields["vaddr"] = Cidr.parse(args[0])
                except ValueError:
                    raise CodecError(f"bad --vaddr {args[0]!r}") from None
            elif name in ("vport", "vportctl"):
                fields[name] = port_range(args[0])[0]
            elif name == "vdir":
                fields["vdir"] = _choice(args[0], IPVS_DIRECTIONS, "--vdir")
            elif name == "vmethod":
                fields["vmethod"] = _choice(args[0], IPVS_METHODS, "--vmethod")
            else:
                fields["ipvs"] = True
        return [IpvsMatch(**fields, negated=tuple(negated))]

    def format(self, m: IpvsMatch) -> str:
        words = ["-m ipvs"]
        for name, value in (("ipvs", m.ipvs), ("vproto", m.vproto), ("vaddr", m.vaddr),
                            ("vport", m.vport), ("vdir", m.vdir), ("vmethod", m.vmethod),
                            ("vportctl", m.vportctl)):
            if value is None or value is False:
                continue
            text = "" if value is True else f" {_ipvs_value(value)}"
            words.append(f"{neg(name in m.negated)}--{name}{text}")
        return " ".join(words)


def _ipvs_value(value) -> str:
    if isinstance(value, Cidr):                    # libxt_ipvs prints the mask always
        return f"{value}" if value.prefix_len != 32 else f"{value}/32"
    return str(value)


def _choice(value: str, allowed: tuple[str, ...], what: str) -> str:
    if value.upper() not in allowed:
        raise CodecError(f"bad {what} {value!r} (one of {', '.join(allowed)})")
    return value.upper()
