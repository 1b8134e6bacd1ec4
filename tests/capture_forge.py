"""Capture files forged byte by byte for tests: every pcap and pcapng variant the reader must
take (both byte orders, nanosecond and Kuznetsov pcap, several sections and interfaces,
Simple and obsolete Packet Blocks, unknown blocks, ``if_tsresol``/``if_tsoffset``), and
the packets inside them built with scapy (test code: the edges)."""

from __future__ import annotations

import struct


def pcap(records, *, big: bool = False, nano: bool = False, kuznetsov: bool = False,
         linktype: int = 1, snaplen: int = 262144) -> bytes:
    """``records``: (ts_ns, frame bytes[, wire length])."""
    o = ">" if big else "<"
    magic = 0xA1B2CD34 if kuznetsov else (0xA1B23C4D if nano else 0xA1B2C3D4)
    out = [struct.pack(o + "IHHiIII", magic, 2, 4, 0, 0, snaplen, linktype)]
    for rec in records:
        ts, data = rec[0], rec[1]
        wire = rec[2] if len(rec) > 2 else len(data)
        frac = ts % 1_000_000_000 if nano else (ts % 1_000_000_000) // 1000
        out.append(struct.pack(o + "IIII", ts // 1_000_000_000, frac, len(data), wire))
        if kuznetsov:
            out.append(struct.pack(o + "iHBB", 0, 0, 0, 0))
        out.append(data)
    return b"".join(out)


def _pad(data: bytes) -> bytes:
    return data + bytes(-len(data) % 4)


def _block(big: bool, kind: int, body: bytes) -> bytes:
    o = ">" if big else "<"
    body = _pad(body)
    return struct.pack(o + "II", kind, len(body) + 12) + body + struct.pack(o + "I", len(body) + 12)


def _options(big: bool, options: list[tuple[int, bytes]]) -> bytes:
    if not options:
        return b""
    o = ">" if big else "<"
    out = b"".join(struct.pack(o + "HH", code, len(v)) + _pad(v) for code, v in options)
    return out + struct.pack(o + "HH", 0, 0)


def shb(big: bool = False) -> bytes:
    o = ">" if big else "<"
    return _block(big, 0x0A0D0D0A, struct.pack(o + "IHHq", 0x1A2B3C4D, 1, 0, -1))


def idb(big: bool = False, linktype: int = 1, snaplen: int = 0, name: str | None = None,
        tsresol: int | None = None, tsoffset: int | None = None) -> bytes:
    o = ">" if big else "<"
    opts = []
    if name is not None:
        opts.append((2, name.encode()))
    if tsresol is not None:
        opts.append((9, bytes([tsresol])))
    if tsoffset is not None:
        opts.append((14, struct.pack(o + "q", tsoffset)))
    return _block(big, 1, struct.pack(o + "HHI", linktype, 0, snaplen) + _options(big, opts))


def epb(big: bool, iface: int, ts_units: int, data: bytes, wire: int | None = None,
        comment: str | None = None) -> bytes:
    o = ">" if big else "<"
    head = struct.pack(o + "IIIII", iface, ts_units >> 32, ts_units & 0xFFFFFFFF, len(data),
                       len(data) if wire is None else wire)
    opts = _options(big, [(1, comment.encode())] if comment else [])
    return _block(big, 6, head + _pad(data) + opts)


def spb(big: bool, data: bytes, wire: int | None = None) -> bytes:
    o = ">" if big else "<"
    return _block(big, 3, struct.pack(o + "I", len(data) if wire is None else wire) + data)


def pb(big: bool, iface: int, ts_units: int, data: bytes) -> bytes:
    o = ">" if big else "<"
    head = struct.pack(o + "HHIIII", iface, 0, ts_units >> 32, ts_units & 0xFFFFFFFF,
                       len(data), len(data))
    return _block(big, 2, head + data)


def unknown(big: bool, kind: int = 0x0BAD, body: bytes = b"ignore me") -> bytes:
    return _block(big, kind, body)


def dsb(big: bool, kind: int, data: bytes) -> bytes:
    o = ">" if big else "<"
    return _block(big, 0x0A, struct.pack(o + "II", kind, len(data)) + data)
