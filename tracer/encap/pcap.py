"""Classic libpcap files (microsecond timestamps), so tshark/tcpdump can judge our framing.

Link types: Ethernet (1), raw IP (101, the packet starts at the IP header) and IPv4 (228).
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from dataclasses import dataclass
from os import PathLike

from tracer.errors import InputError

LINKTYPE_ETHERNET = 1
LINKTYPE_RAW = 101
LINKTYPE_IPV4 = 228
PCAP_MAGIC = 0xA1B2C3D4
SNAPLEN = 262144
_GLOBAL = struct.Struct("<IHHiIII")
_RECORD = struct.Struct("<IIII")


@dataclass(frozen=True)
class PcapRecord:
    """One captured packet."""

    timestamp: float
    data: bytes
    linktype: int


def write_pcap(path: str | PathLike[str],
               packets: Iterable[tuple[float, bytes, int]]) -> int:
    """Write ``(timestamp, bytes, linktype)`` tuples; returns the packet count.

    A classic pcap file has one link type, so all packets must share it.
    """
    rows = list(packets)
    linktypes = {lt for _, _, lt in rows}
    if len(linktypes) > 1:
        raise InputError(f"one link type per pcap file, got {sorted(linktypes)}", file=str(path))
    linktype = linktypes.pop() if linktypes else LINKTYPE_RAW
    with open(path, "wb") as out:
        out.write(_GLOBAL.pack(PCAP_MAGIC, 2, 4, 0, 0, SNAPLEN, linktype))
        for ts, data, _ in rows:
            sec = int(ts)
            usec = int(round((ts - sec) * 1_000_000))
            if usec >= 1_000_000:
                sec, usec = sec + 1, usec - 1_000_000
            out.write(_RECORD.pack(sec, usec, len(data), len(data)))
            out.write(data)
    return len(rows)


def read_pcap(path: str | PathLike[str]) -> list[PcapRecord]:
    """Read a classic pcap file (either byte order, micro- or nanosecond timestamps)."""
    with open(path, "rb") as fh:
        blob = fh.read()
    if len(blob) < _GLOBAL.size:
        raise InputError("not a pcap file (too short)", file=str(path))
    endian, scale = _byte_order(blob[:4], str(path))
    magic, _, _, _, _, _, linktype = struct.unpack(endian + "IHHiIII", blob[:_GLOBAL.size])
    records: list[PcapRecord] = []
    pos = _GLOBAL.size
    while pos + _RECORD.size <= len(blob):
        sec, frac, incl, _orig = struct.unpack(endian + "IIII", blob[pos:pos + _RECORD.size])
        pos += _RECORD.size
        if pos + incl > len(blob):
            raise InputError(f"truncated pcap record at byte {pos}", file=str(path))
        records.append(PcapRecord(sec + frac / scale, blob[pos:pos + incl], linktype))
        pos += incl
    return records


def _byte_order(magic: bytes, path: str) -> tuple[str, float]:
    for endian in ("<", ">"):
        (value,) = struct.unpack(endian + "I", magic)
        if value == 0xA1B2C3D4:
            return endian, 1e6
        if value == 0xA1B23C4D:
            return endian, 1e9
    raise InputError("not a classic pcap file (bad magic; pcapng is not read here)", file=path)
