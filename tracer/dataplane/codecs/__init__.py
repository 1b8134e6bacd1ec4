"""One codec per iptables match module and target extension: parse, format and IR side by side.

The registry below is the one place that lists them (no registration at import time, STYLE
anti-pattern 4); ``tracer.dataplane.iptables_save`` dispatches through it.
"""

from __future__ import annotations

from tracer.dataplane.codecs.base import CodecError, MatchCodec, Option, TargetCodec, quote_word
from tracer.dataplane.codecs.header import HEADER_CODECS, HeaderCodec
from tracer.dataplane.codecs.l4 import IcmpCodec, L4PortCodec, MultiportCodec
from tracer.dataplane.codecs.matches import (AddrTypeCodec, CommentCodec, ConntrackCodec,
                                             IpvsCodec, LimitCodec, MarkCodec, RpfilterCodec,
                                             SetCodec, StatisticCodec)
from tracer.dataplane.codecs.targets import (UNMODELLED_TARGETS, ConnMarkTargetCodec,
                                             DnatCodec, LogCodec, MarkTargetCodec,
                                             MasqueradeCodec, NflogCodec, NoTrackCodec,
                                             RejectCodec, SnatCodec, TraceCodec, VerdictCodec)

L4_CODEC = L4PortCodec()
COMMENT_CODEC = CommentCodec()

MATCH_CODECS: tuple[MatchCodec, ...] = (
    L4_CODEC, MultiportCodec(), IcmpCodec(), COMMENT_CODEC, ConntrackCodec(), MarkCodec(),
    SetCodec(), AddrTypeCodec(), RpfilterCodec(), LimitCodec(), StatisticCodec(), IpvsCodec(),
)
TARGET_CODECS: tuple[TargetCodec, ...] = (
    VerdictCodec(), RejectCodec(), MarkTargetCodec(), ConnMarkTargetCodec(), LogCodec(),
    NflogCodec(), NoTrackCodec(), MasqueradeCodec(), SnatCodec(), DnatCodec(), TraceCodec(),
)

MATCH_BY_MODULE: dict[str, MatchCodec] = {m: c for c in MATCH_CODECS for m in c.modules}
TARGET_BY_NAME: dict[str, TargetCodec] = {n: c for c in TARGET_CODECS for n in c.names}
HEADER_BY_FLAG: dict[str, HeaderCodec] = {f: c for c in HEADER_CODECS for f in c.flags}


def match_codec(match: object) -> MatchCodec | HeaderCodec:
    """The codec that writes ``match``."""
    for codec in (*HEADER_CODECS, *MATCH_CODECS):
        if codec.owns(match):
            return codec
    raise TypeError(f"no codec writes match {match!r}")


def target_codec(target: object) -> TargetCodec:
    for codec in TARGET_CODECS:
        if codec.owns(target):
            return codec
    raise TypeError(f"no codec writes target {target!r}")


__all__ = ["COMMENT_CODEC", "CodecError", "HEADER_BY_FLAG", "HEADER_CODECS", "L4_CODEC",
           "MATCH_BY_MODULE", "MATCH_CODECS", "MatchCodec", "Option", "TARGET_BY_NAME",
           "TARGET_CODECS", "TargetCodec", "UNMODELLED_TARGETS", "match_codec", "quote_word",
           "target_codec"]
