"""What a codec is: one iptables match module or target extension, declared once.

A codec names the module (``-m NAME``) or target (``-j NAME``) it reads, declares its options
the way the extension's ``xt_option_entry`` table does (name, number of arguments, whether
``!`` may precede it), the IR type(s) it produces, and two methods side by side: ``parse``
(options -> IR) and ``format`` (IR -> iptables-save words). The parser and the writer in
``iptables_save`` only dispatch; what an extension means lives here (scapy declares a header's
fields once and every layer reads that declaration; this is the same idea for xtables).
"""

from __future__ import annotations

import socket
from dataclasses import dataclass
from typing import ClassVar


class CodecError(Exception):
    """A problem in one rule; the rule parser adds the line number and the file."""


@dataclass(frozen=True)
class Option:
    """One ``--option`` of an extension: how many arguments it takes, whether ``!`` may
    negate it, and other spellings iptables accepts for it."""

    name: str
    arity: int = 1
    invertible: bool = False
    aliases: tuple[str, ...] = ()


# One parsed option: (canonical name, negated, arguments).
Parsed = tuple[str, bool, list[str]]


class MatchCodec:
    """A ``-m MODULE`` match. Subclasses declare ``modules``, ``options`` and ``ir``."""

    modules: ClassVar[tuple[str, ...]] = ()
    options: ClassVar[tuple[Option, ...]] = ()
    ir: ClassVar[tuple[type, ...]] = ()

    def option(self, word: str) -> Option | None:
        for opt in self.options:
            if word == opt.name or word in opt.aliases:
                return opt
        return None

    def owns(self, match: object) -> bool:
        """Whether this codec writes ``match`` (some IR types have two spellings)."""
        return isinstance(match, self.ir)

    def parse(self, module: str, options: list[Parsed]) -> list:
        raise NotImplementedError

    def format(self, match) -> str:
        raise NotImplementedError


class TargetCodec:
    """A ``-j TARGET`` extension. Subclasses declare ``names``, ``options`` and ``ir``."""

    names: ClassVar[tuple[str, ...]] = ()
    options: ClassVar[tuple[Option, ...]] = ()
    ir: ClassVar[tuple[type, ...]] = ()

    def option(self, word: str) -> Option | None:
        for opt in self.options:
            if word == opt.name or word in opt.aliases:
                return opt
        return None

    def owns(self, target: object) -> bool:
        return isinstance(target, self.ir)

    def parse(self, name: str, options: dict[str, str | None]):
        raise NotImplementedError

    def format(self, target) -> str:
        raise NotImplementedError


# ----------------------------------------------------------------------------- shared helpers


def neg(flag: bool) -> str:
    return "! " if flag else ""


def quote_word(value: str) -> str:
    """``xtables_save_string``: bare if only ``[A-Za-z0-9_-]``, else double-quoted with
    ``"``, ``\\`` and ``'`` backslash-escaped."""
    if value and all(c.isascii() and (c.isalnum() or c in "_-") for c in value):
        return value
    escaped = "".join("\\" + c if c in "\"\\'" else c for c in value)
    return f'"{escaped}"'


def value_mask(text: str) -> tuple[int, int]:
    """``0x4000/0x4000`` or ``16384``: (value, mask), mask all ones when absent."""
    value_text, sep, mask_text = text.partition("/")
    try:
        value = int(value_text, 0)
        mask = int(mask_text, 0) if sep else 0xFFFFFFFF
    except ValueError:
        raise CodecError(f"bad mark {text!r}") from None
    if not (0 <= value <= 0xFFFFFFFF and 0 <= mask <= 0xFFFFFFFF):
        raise CodecError(f"mark out of range {text!r}")
    return value, mask


def hex_mask(value: int, mask: int) -> str:
    return f"0x{value:x}" if mask == 0xFFFFFFFF else f"0x{value:x}/0x{mask:x}"


def port(text: str) -> int:
    if text.isdigit():
        number = int(text)
        if number > 65535:
            raise CodecError(f"bad port {text!r}")
        return number
    try:
        return socket.getservbyname(text)
    except OSError:
        raise CodecError(f"unknown port {text!r}") from None


def port_range(value: str, sep: str = ":") -> tuple[int, int]:
    lo_text, found, hi_text = value.partition(sep)
    lo = port(lo_text) if lo_text else 0
    hi = (port(hi_text) if hi_text else 65535) if found else lo
    if lo > hi:
        raise CodecError(f"bad port range {value!r}")
    return lo, hi


def format_ports(ports: tuple[int, int], sep: str = ":") -> str:
    lo, hi = ports
    return str(lo) if lo == hi else f"{lo}{sep}{hi}"


def name_set(value: str, allowed: tuple[str, ...], what: str) -> frozenset[str]:
    names = frozenset(v.strip().upper() for v in value.split(","))
    unknown = names - set(allowed)
    if unknown:
        raise CodecError(f"unknown {what} {sorted(unknown)[0]!r}")
    return names


def ordered(names: frozenset[str], order: tuple[str, ...]) -> str:
    return ",".join(n for n in order if n in names)
