"""Target extensions: verdicts, REJECT, MARK, CONNMARK, LOG, NFLOG, NOTRACK/CT, the NAT targets
and TRACE. A name no codec claims is a jump to a user chain; extensions we do not model are
named in :data:`UNMODELLED_TARGETS` so the error says "unsupported target", not "jump to an
undefined chain"."""

from __future__ import annotations

from ipaddress import IPv4Address

from tracer.dataplane.codecs.base import (CodecError, Option, TargetCodec, format_ports,
                                          quote_word, value_mask)
from tracer.dataplane.ir import (ConnMarkTarget, Dnat, Log, Masquerade, Nflog, NoTrack, Reject,
                                 SetMark, Snat, Target, TraceTarget, Verdict)
from tracer.errors import quote

UNMODELLED_TARGETS = frozenset({
    "QUEUE", "NFQUEUE", "REDIRECT", "TPROXY", "TCPMSS", "CHECKSUM", "CLASSIFY", "DSCP", "TOS",
    "TTL", "ECN", "SET", "AUDIT", "HMARK", "CLUSTERIP", "NETMAP", "IDLETIMER", "LED",
    "SECMARK", "CONNSECMARK", "TEE", "SYNPROXY", "ULOG", "RATEEST"})


class VerdictCodec(TargetCodec):
    names = ("ACCEPT", "DROP", "RETURN")
    ir = (Verdict,)

    def parse(self, name, options) -> Target:
        return Verdict(name)    # type: ignore[arg-type]

    def format(self, t: Verdict) -> str:
        return f"-j {t.name}"


class TraceCodec(TargetCodec):
    names = ("TRACE",)
    ir = (TraceTarget,)

    def parse(self, name, options) -> Target:
        return TraceTarget()

    def format(self, t) -> str:
        return "-j TRACE"


class NoTrackCodec(TargetCodec):
    """``-j NOTRACK`` and ``-j CT --notrack`` (the only CT form modelled)."""

    names = ("NOTRACK", "CT")
    options = (Option("notrack", 0),)
    ir = (NoTrack,)

    def parse(self, name, options) -> Target:
        if name == "CT" and "notrack" not in options:
            raise CodecError("unsupported target '-j CT' without --notrack")
        return NoTrack(ct=name == "CT")

    def format(self, t: NoTrack) -> str:
        return "-j CT --notrack" if t.ct else "-j NOTRACK"


_REJECT_ALIASES = {"net-unreach": "icmp-net-unreachable", "host-unreach": "icmp-host-unreachable",
                   "proto-unreach": "icmp-proto-unreachable",
                   "port-unreach": "icmp-port-unreachable",
                   "net-prohib": "icmp-net-prohibited", "host-prohib": "icmp-host-prohibited",
                   "admin-prohib": "icmp-admin-prohibited", "tcp-rst": "tcp-reset"}
REJECT_WITH = frozenset({*_REJECT_ALIASES.values(), "tcp-reset"})


class RejectCodec(TargetCodec):
    names = ("REJECT",)
    options = (Option("reject-with", 1),)
    ir = (Reject,)

    def parse(self, name, options) -> Target:
        with_ = options.get("reject-with") or "icmp-port-unreachable"
        with_ = _REJECT_ALIASES.get(with_, with_)
        if with_ not in REJECT_WITH:
            raise CodecError(f"unsupported --reject-with {with_!r}")
        return Reject(with_)

    def format(self, t: Reject) -> str:
        return f"-j REJECT --reject-with {t.with_}"


class MarkTargetCodec(TargetCodec):
    """``-j MARK --set-xmark|--set-mark|--and-mark|--or-mark|--xor-mark``, all stored (and
    printed) as ``--set-xmark value/mask`` the way libxt_MARK does."""

    names = ("MARK",)
    options = tuple(Option(n) for n in ("set-xmark", "set-mark", "and-mark", "or-mark",
                                        "xor-mark"))
    ir = (SetMark,)

    def parse(self, name, options) -> Target:
        if len(options) != 1:
            raise CodecError("-j MARK needs exactly one of --set-xmark/--set-mark/--and-mark/...")
        (option, value), = options.items()
        if option in ("set-xmark", "set-mark"):
            mark, mask = value_mask(value)
            # libxt_MARK: --set-mark v/m is stored as xmark v/(v|m).
            return SetMark(mark, mask if option == "set-xmark" else (mark | mask))
        bits = value_mask(value)[0]
        if option == "and-mark":
            return SetMark(0, ~bits & 0xFFFFFFFF)
        if option == "or-mark":
            return SetMark(bits, bits)
        return SetMark(bits, 0)                    # xor-mark

    def format(self, t: SetMark) -> str:
        return f"-j MARK --set-xmark 0x{t.value:x}/0x{t.mask:x}"


class ConnMarkTargetCodec(TargetCodec):
    names = ("CONNMARK",)
    options = (Option("save-mark", 0), Option("restore-mark", 0), Option("set-xmark"),
               Option("set-mark"), Option("nfmask"), Option("ctmask"), Option("mask"))
    ir = (ConnMarkTarget,)

    def parse(self, name, options) -> Target:
        masks = {"nfmask": 0xFFFFFFFF, "ctmask": 0xFFFFFFFF}
        if "mask" in options:
            masks["nfmask"] = masks["ctmask"] = value_mask(options["mask"])[0]
        for key in ("nfmask", "ctmask"):
            if key in options:
                masks[key] = value_mask(options[key])[0]
        if "save-mark" in options or "restore-mark" in options:
            mode = "save" if "save-mark" in options else "restore"
            return ConnMarkTarget(mode, nfmask=masks["nfmask"], ctmask=masks["ctmask"])
        for key in ("set-xmark", "set-mark"):
            if key in options:
                mark, mask = value_mask(options[key])
                return ConnMarkTarget("set", mark, mask if key == "set-xmark" else (mark | mask))
        raise CodecError("-j CONNMARK needs --save-mark, --restore-mark or --set-xmark")

    def format(self, t: ConnMarkTarget) -> str:
        if t.mode == "set":
            return f"-j CONNMARK --set-xmark 0x{t.value:x}/0x{t.mask:x}"
        return f"-j CONNMARK --{t.mode}-mark --nfmask 0x{t.nfmask:x} --ctmask 0x{t.ctmask:x}"


_LOG_LEVELS = {"emerg": 0, "alert": 1, "crit": 2, "error": 3, "err": 3, "warning": 4,
               "warn": 4, "notice": 5, "info": 6, "debug": 7}
_LOG_DEFAULT_LEVEL = 4


class LogCodec(TargetCodec):
    names = ("LOG",)
    options = (Option("log-prefix"), Option("log-level"))
    ir = (Log,)

    def parse(self, name, options) -> Target:
        level = None
        if "log-level" in options:
            text = (options["log-level"] or "").lower()
            level = int(text) if text.isdigit() else _LOG_LEVELS.get(text)
            if level is None or level > 7:
                raise CodecError(f"bad log level {options['log-level']!r}")
            if level == _LOG_DEFAULT_LEVEL:
                level = None
        return Log(prefix=options.get("log-prefix") or "", level=level)

    def format(self, t: Log) -> str:
        words = ["-j LOG"]
        if t.prefix:
            words.append(f"--log-prefix {quote_word(t.prefix)}")
        if t.level is not None and t.level != _LOG_DEFAULT_LEVEL:
            words.append(f"--log-level {t.level}")
        return " ".join(words)


class NflogCodec(TargetCodec):
    """``-j NFLOG``; ``--nflog-range`` is accepted and dropped, as iptables 1.8.9 does."""

    names = ("NFLOG",)
    options = (Option("nflog-group"), Option("nflog-prefix"), Option("nflog-size"),
               Option("nflog-range"))
    ir = (Nflog,)

    def parse(self, name, options) -> Target:
        for key, high in (("nflog-group", 0xFFFF), ("nflog-size", 0xFFFFFFFF)):
            value = options.get(key)
            if value is not None and not (value.isdigit() and int(value) <= high):
                raise CodecError(f"--{key}: expected a number 0-{high}, got {quote(value)}")
        size = options.get("nflog-size")
        return Nflog(group=int(options.get("nflog-group") or 0),
                     prefix=options.get("nflog-prefix") or "",
                     size=int(size) if size is not None else None)

    def format(self, t: Nflog) -> str:
        words = ["-j NFLOG"]
        if t.prefix:
            words.append(f"--nflog-prefix {quote_word(t.prefix)}")
        if t.group:
            words.append(f"--nflog-group {t.group}")
        if t.size is not None:
            words.append(f"--nflog-size {t.size}")
        return " ".join(words)


def _flags(random: bool, random_fully: bool) -> list[str]:
    return (["--random"] if random else []) + (["--random-fully"] if random_fully else [])


class MasqueradeCodec(TargetCodec):
    names = ("MASQUERADE",)
    options = (Option("to-ports"), Option("random", 0), Option("random-fully", 0))
    ir = (Masquerade,)

    def parse(self, name, options) -> Target:
        ports = nat_ports(options["to-ports"], "--to-ports") if "to-ports" in options else None
        return Masquerade(ports, random_fully="random-fully" in options,
                          random="random" in options)

    def format(self, t: Masquerade) -> str:
        words = ["-j MASQUERADE"]
        if t.to_ports is not None:
            words.append(f"--to-ports {format_ports(t.to_ports, '-')}")
        return " ".join(words + _flags(t.random, t.random_fully))


class SnatCodec(TargetCodec):
    names = ("SNAT",)
    options = (Option("to-source"), Option("random", 0), Option("random-fully", 0))
    ir = (Snat,)

    def parse(self, name, options) -> Target:
        to = nat_range(_require(options, "to-source", name), "--to-source")
        return Snat(to, random_fully="random-fully" in options, random="random" in options)

    def format(self, t: Snat) -> str:
        return " ".join(["-j SNAT", f"--to-source {t.to_source}",
                         *_flags(t.random, t.random_fully)])


class DnatCodec(TargetCodec):
    names = ("DNAT",)
    options = (Option("to-destination"),)
    ir = (Dnat,)

    def parse(self, name, options) -> Target:
        return Dnat(nat_range(_require(options, "to-destination", name), "--to-destination",
                              port_ranges=False))

    def format(self, t: Dnat) -> str:
        return f"-j DNAT --to-destination {t.to_destination}"


def _require(options, key: str, target: str) -> str:
    if not options.get(key):
        raise CodecError(f"-j {target} needs --{key}")
    return options[key]


def nat_range(value: str, what: str, *, port_ranges: bool = True) -> str:
    """Check ``A[:P[-Q]]`` the way libxt_DNAT's parse_to does, and return it as written.

    iptables also takes an address range (``A-B``) and DNAT a port range; the tracer binds
    one address and port per connection, so those are refused as not modelled rather than
    guessed at during a trace."""
    address, sep, ports = value.partition(":")
    if not address:
        raise CodecError(f"empty address in {what} {quote(value)}")
    if "-" in address:
        raise CodecError(f"{what} {quote(value)}: address ranges are not modelled")
    try:
        IPv4Address(address)
    except ValueError:
        raise CodecError(f"{what}: bad IPv4 address {quote(address)}") from None
    if sep:
        lo, hi = nat_ports(ports, what)
        if lo != hi and not port_ranges:
            raise CodecError(f"{what} {quote(value)}: port ranges are not modelled")
    return value


def nat_ports(value: str, what: str) -> tuple[int, int]:
    """``PORT[-PORT]`` of a NAT target (libxt_NAT, libxt_MASQUERADE), 1-65535."""
    lo_text, _, hi_text = value.partition("-")
    if not lo_text.isdigit() or not (hi_text or lo_text).isdigit():
        raise CodecError(f"{what}: bad port range {quote(value)}")
    lo, hi = int(lo_text), int(hi_text or lo_text)
    if not 1 <= lo <= hi <= 65535:
        raise CodecError(f"{what}: port range {quote(value)} outside 1-65535")
    return lo, hi
