"""Find the records of a pcap or pcapng file: one compiled walk over the bytes, no per-packet
Python.

Formats, from their specifications:

- pcap (libpcap ``pcap-savefile(5)``, draft-ietf-opsawg-pcap): a 24-byte file header whose
  magic gives the byte order and the timestamp unit (``a1b2c3d4`` microseconds, ``a1b23c4d``
  nanoseconds; ``a1b2cd34`` is the old Kuznetsov variant whose record headers carry 8 more
  bytes), then records of ts_sec, ts_frac, incl_len, orig_len. The link type's upper bits
  may carry an FCS length (the spec's LinkType and additional information field); they are
  masked off.
- pcapng (draft-ietf-opsawg-pcapng): blocks of type, total length, body, total length.
  Each Section Header Block sets the byte order of its section (byte-order magic
  ``1a2b3c4d``) and restarts interface numbering. Interface Description Blocks give each
  interface its link type, snap length and options (``if_name``, ``if_tsresol``,
  ``if_tsoffset``). Packets come in Enhanced (6), Simple (3, interface 0, no timestamp) and
  obsolete Packet (2) blocks; Decryption Secrets Blocks (0x0a) are noted; every other block
  is skipped by its length.

A file cut short (mid-record or mid-block) or whose structure breaks part-way yields the
records before the break and a warning naming the file and the byte offset. A file that is
not a capture at all is an :class:`~tracer.errors.InputError`.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import numba
import numpy as np

from tracer.errors import InputError

PCAPNG_SHB = 0x0A0D0D0A
BLOCK_IDB, BLOCK_PB, BLOCK_SPB, BLOCK_EPB, BLOCK_DSB = 1, 2, 3, 6, 0x0A
PCAP_MAGICS = {  # first four bytes -> (big endian, ns per timestamp unit, record header size)
    bytes.fromhex("d4c3b2a1"): (False, 1000, 16), bytes.fromhex("a1b2c3d4"): (True, 1000, 16),
    bytes.fromhex("4d3cb2a1"): (False, 1, 16), bytes.fromhex("a1b23c4d"): (True, 1, 16),
    bytes.fromhex("34cdb2a1"): (False, 1000, 24), bytes.fromhex("a1b2cd34"): (True, 1000, 24),
}
PCAP_HEADER_LEN = 24
MAX_SNAPLEN = 262144            # libpcap's MAXIMUM_SNAPLEN: larger records are corrupt
LINKTYPE_MASK = 0x03FFFFFF
OPT_ENDOFOPT, OPT_IF_NAME, OPT_IF_TSRESOL, OPT_IF_TSOFFSET = 0, 2, 9, 14
SECRETS_WIREGUARD = 0x57474B4C  # "WGKL": a WireGuard key log in a Decryption Secrets Block

# walk status
DONE, TRUNCATED, CORRUPT = 0, 1, 2
# record kinds
KIND_TIMED, KIND_UNTIMED = 0, 1


@dataclass(frozen=True)
class Interface:
    """A capture interface: a pcap file has one, a pcapng file one per IDB."""

    linktype: int
    snaplen: int
    name: str = ""
    tsresol: tuple[int, int] = (10, 6)      # (base, exponent): units of base**-exponent s
    tsoffset: int = 0                       # seconds added to every timestamp
    big_endian: bool = False                # byte order of its section (for NULL link type)


@dataclass
class Records:
    """Where each record's bytes are, and what its header said."""

    data_offset: np.ndarray      # int64, file offset of the frame's first byte
    caplen: np.ndarray           # int64
    wire_len: np.ndarray         # int64
    ts_ns: np.ndarray            # int64
    interface: np.ndarray        # int32, index into ``interfaces``
    interfaces: list[Interface]
    warnings: list[str]
    secrets: list[tuple[int, bytes]]   # (secrets type, data) from Decryption Secrets Blocks


@numba.njit(cache=True, inline="always")
def _u16(buf, pos, big):
    if big:
        return (np.int64(buf[pos]) << 8) | np.int64(buf[pos + 1])
    return np.int64(buf[pos]) | (np.int64(buf[pos + 1]) << 8)


@numba.njit(cache=True, inline="always")
def _u32(buf, pos, big):
    if big:
        return ((np.int64(buf[pos]) << 24) | (np.int64(buf[pos + 1]) << 16)
                | (np.int64(buf[pos + 2]) << 8) | np.int64(buf[pos + 3]))
    return (np.int64(buf[pos]) | (np.int64(buf[pos + 1]) << 8)
            | (np.int64(buf[pos + 2]) << 16) | (np.int64(buf[pos + 3]) << 24))


@numba.njit(cache=True)
def _walk_pcap(buf, pos, big, hdr_len, ns_per_unit, limit, fill, offs, caps, wires, stamps):
    """Count (fill False) or fill the records; returns (count, status, stop offset)."""
    n = 0
    size = buf.shape[0]
    while pos < size:
        if pos + hdr_len > size:
            return n, TRUNCATED, pos
        caplen = _u32(buf, pos + 8, big)
        if caplen > limit:
            return n, CORRUPT, pos
        if pos + hdr_len + caplen > size:
            return n, TRUNCATED, pos
        if fill:
            offs[n] = pos + hdr_len
            caps[n] = caplen
            wires[n] = _u32(buf, pos + 12, big)
            stamps[n] = _u32(buf, pos, big) * 1_000_000_000 + _u32(buf, pos + 4, big) * ns_per_unit
        n += 1
        pos += hdr_len + caplen
    return n, DONE, pos


@numba.njit(cache=True)
def _walk_pcapng(buf, fill, offs, caps, wires, stamps, ifaces, kinds, idbs, idb_big, dsbs,
                 dsb_big):
    """One pass over the blocks. Returns (records, idbs, dsbs, status, stop offset).

    In counting mode (fill False) nothing is written; ``idbs``/``dsbs`` are written in both
    modes only while they have room, so the counting pass sizes them too.
    """
    size = buf.shape[0]
    pos = 0
    big = False
    n = 0
    n_idb = 0
    n_dsb = 0
    base = 0                    # global index of the section's interface 0
    while pos < size:
        if pos + 12 > size:
            return n, n_idb, n_dsb, TRUNCATED, pos
        if (buf[pos] == 0x0A and buf[pos + 1] == 0x0D and buf[pos + 2] == 0x0D
                and buf[pos + 3] == 0x0A):
            if buf[pos + 8] == 0x1A and buf[pos + 9] == 0x2B and buf[pos + 10] == 0x3C \
                    and buf[pos + 11] == 0x4D:
                big = True
            elif buf[pos + 8] == 0x4D and buf[pos + 9] == 0x3C and buf[pos + 10] == 0x2B \
                    and buf[pos + 11] == 0x1A:
                big = False
            else:
                return n, n_idb, n_dsb, CORRUPT, pos
            base = n_idb
        elif pos == 0:
            return n, n_idb, n_dsb, CORRUPT, pos
        btype = _u32(buf, pos, big)
        blen = _u32(buf, pos + 4, big)
        if blen < 12 or blen % 4 != 0:
            return n, n_idb, n_dsb, CORRUPT, pos
        if pos + blen > size:
            return n, n_idb, n_dsb, TRUNCATED, pos
        if _u32(buf, pos + blen - 4, big) != blen:
            return n, n_idb, n_dsb, CORRUPT, pos
        if btype == BLOCK_IDB:
            if blen < 20:
                return n, n_idb, n_dsb, CORRUPT, pos
            if n_idb < idbs.shape[0]:
                idbs[n_idb] = pos
                idb_big[n_idb] = big
            n_idb += 1
        elif btype == BLOCK_DSB:
            if n_dsb < dsbs.shape[0]:
                dsbs[n_dsb] = pos
                dsb_big[n_dsb] = big
            n_dsb += 1
        elif btype == BLOCK_EPB or btype == BLOCK_PB:
            if blen < 32:
                return n, n_idb, n_dsb, CORRUPT, pos
            if btype == BLOCK_EPB:
                local = _u32(buf, pos + 8, big)
            else:
                local = _u16(buf, pos + 8, big)
            caplen = _u32(buf, pos + 20, big)
            if base + local >= n_idb or 28 + caplen > blen - 4:
                return n, n_idb, n_dsb, CORRUPT, pos
            if fill:
                offs[n] = pos + 28
                caps[n] = caplen
                wires[n] = _u32(buf, pos + 24, big)
                stamps[n] = (_u32(buf, pos + 12, big) << 32) | _u32(buf, pos + 16, big)
                ifaces[n] = base + local
                kinds[n] = KIND_TIMED
            n += 1
        elif btype == BLOCK_SPB:
            if blen < 16 or base >= n_idb:
                return n, n_idb, n_dsb, CORRUPT, pos
            if fill:
                wire = _u32(buf, pos + 8, big)
                offs[n] = pos + 12
                caps[n] = min(wire, blen - 16)
                wires[n] = wire
                stamps[n] = 0
                ifaces[n] = base
                kinds[n] = KIND_UNTIMED
            n += 1
        pos += blen
    return n, n_idb, n_dsb, DONE, pos


def _magic_error(path: str, head: bytes) -> InputError:
    if not head:
        return InputError("empty file, not a capture", file=path)
    return InputError(f"not a pcap or pcapng capture (file starts with {head[:4].hex()})",
                      file=path)


def scan(buf: np.ndarray, path: str) -> Records:
    """The records of the capture in ``buf`` (the whole file as uint8)."""
    head = buf[:4].tobytes()
    if head == bytes.fromhex("0a0d0d0a"):
        return _scan_pcapng(buf, path)
    if head in PCAP_MAGICS:
        return _scan_pcap(buf, path, *PCAP_MAGICS[head])
    raise _magic_error(path, head)


def _warning(path: str, status: int, stop: int, count: int) -> list[str]:
    if status == DONE:
        return []
    what = "file is cut short" if status == TRUNCATED else "corrupt record or block"
    return [f"{path}: {what} at byte {stop}; read the {count} packets before it"]


def _scan_pcap(buf: np.ndarray, path: str, big: bool, ns_per_unit: int,
               hdr_len: int) -> Records:
    if len(buf) < PCAP_HEADER_LEN:
        return Records(*(np.zeros(0, np.int64) for _ in range(4)), np.zeros(0, np.int32),
                       [], [f"{path}: file is cut short at byte {len(buf)} (inside the pcap "
                            f"file header); no packets"], [])
    order = ">" if big else "<"
    _, major, _, _, _, snaplen, linktype = struct.unpack(order + "IHHiIII",
                                                         buf[:PCAP_HEADER_LEN].tobytes())
    if major != 2:
        raise InputError(f"pcap major version {major}, expected 2", file=path)
    limit = max(snaplen, MAX_SNAPLEN)
    empty = np.zeros(0, np.int64)
    n, _, _ = _walk_pcap(buf, PCAP_HEADER_LEN, big, hdr_len, ns_per_unit, limit, False,
                         empty, empty, empty, empty)
    arrays = [np.empty(n, np.int64) for _ in range(4)]
    n, status, stop = _walk_pcap(buf, PCAP_HEADER_LEN, big, hdr_len, ns_per_unit, limit, True,
                                 *arrays)
    iface = Interface(linktype=linktype & LINKTYPE_MASK, snaplen=snaplen,
                      tsresol=(10, 6 if ns_per_unit == 1000 else 9), big_endian=big)
    return Records(*arrays, np.zeros(n, np.int32), [iface], _warning(path, status, stop, n), [])


def _scan_pcapng(buf: np.ndarray, path: str) -> Records:
    none64, none8 = np.zeros(0, np.int64), np.zeros(0, np.uint8)
    n, n_idb, n_dsb, _, _ = _walk_pcapng(buf, False, none64, none64, none64, none64,
                                         np.zeros(0, np.int32), none8, none64,
                                         np.zeros(0, np.bool_), none64, np.zeros(0, np.bool_))
    offs, caps, wires, stamps = (np.empty(n, np.int64) for _ in range(4))
    ifaces, kinds = np.empty(n, np.int32), np.empty(n, np.uint8)
    idbs, idb_big = np.empty(n_idb, np.int64), np.empty(n_idb, np.bool_)
    dsbs, dsb_big = np.empty(n_dsb, np.int64), np.empty(n_dsb, np.bool_)
    n, n_idb, n_dsb, status, stop = _walk_pcapng(buf, True, offs, caps, wires, stamps, ifaces,
                                                 kinds, idbs, idb_big, dsbs, dsb_big)
    if n == 0 and n_idb == 0 and status == CORRUPT and stop == 0:
        raise InputError("not a pcapng capture (bad section header block)", file=path)
    interfaces = [_interface(buf, int(p), bool(b)) for p, b in zip(idbs, idb_big)]
    ts_ns = _pcapng_times(stamps, ifaces, kinds, interfaces)
    for i, iface in enumerate(interfaces):       # SPB: caplen is also bounded by the snaplen
        if iface.snaplen:
            sel = (ifaces == i) & (kinds == KIND_UNTIMED)
            caps[sel] = np.minimum(caps[sel], iface.snaplen)
    secrets = [_secret(buf, int(p), bool(b)) for p, b in zip(dsbs, dsb_big)]
    return Records(offs, caps, wires, ts_ns, ifaces, interfaces,
                   _warning(path, status, stop, n), secrets)


def _options(buf: np.ndarray, start: int, end: int, big: bool) -> list[tuple[int, bytes]]:
    order = ">" if big else "<"
    out = []
    pos = start
    while pos + 4 <= end:
        code, length = struct.unpack(order + "HH", buf[pos:pos + 4].tobytes())
        if code == OPT_ENDOFOPT:
            break
        value = buf[pos + 4:min(pos + 4 + length, end)].tobytes()
        out.append((code, value))
        pos += 4 + length + (-length % 4)
    return out


def _interface(buf: np.ndarray, pos: int, big: bool) -> Interface:
    order = ">" if big else "<"
    blen, linktype, _, snaplen = struct.unpack(order + "IHHI", buf[pos + 4:pos + 16].tobytes())
    name, resol, offset = "", (10, 6), 0
    for code, value in _options(buf, pos + 16, pos + blen - 4, big):
        if code == OPT_IF_NAME:
            name = value.decode("utf-8", "replace")
        elif code == OPT_IF_TSRESOL and value:
            resol = (2, value[0] & 0x7F) if value[0] & 0x80 else (10, value[0])
        elif code == OPT_IF_TSOFFSET and len(value) == 8:
            (offset,) = struct.unpack(order + "q", value)
    return Interface(linktype=linktype, snaplen=snaplen, name=name, tsresol=resol,
                     tsoffset=offset, big_endian=big)


def _secret(buf: np.ndarray, pos: int, big: bool) -> tuple[int, bytes]:
    order = ">" if big else "<"
    blen, kind, length = struct.unpack(order + "III", buf[pos + 4:pos + 16].tobytes())
    return kind, buf[pos + 16:min(pos + 16 + length, pos + blen - 4)].tobytes()


def _pcapng_times(raw: np.ndarray, ifaces: np.ndarray, kinds: np.ndarray,
                  interfaces: list[Interface]) -> np.ndarray:
    """Timestamps in ns: units of base**-exponent seconds, per interface, plus its offset."""
    ts = np.zeros(len(raw), np.int64)
    units = raw.astype(np.uint64)
    for i, iface in enumerate(interfaces):
        sel = (ifaces == i) & (kinds == KIND_TIMED)
        if not sel.any():
            continue
        base, exp = iface.tsresol
        u = units[sel]
        if base == 10 and exp <= 9:
            ns = u * np.uint64(10 ** (9 - exp))
        elif base == 10 and exp - 9 < 20:
            ns = u // np.uint64(10 ** (exp - 9))
        elif base == 10:                   # finer than 1e-28 s: every 64-bit count is < 1 ns
            ns = np.zeros(len(u), np.uint64)
        else:
            exp = min(exp, 63)
            sec = u >> np.uint64(exp)
            frac = u & np.uint64((1 << exp) - 1)
            if exp > 30:                   # keep frac * 1e9 inside 64 bits
                frac, exp2 = frac >> np.uint64(exp - 30), 30
            else:
                exp2 = exp
            ns = sec * np.uint64(1_000_000_000) + ((frac * np.uint64(1_000_000_000))
                                                   >> np.uint64(exp2))
        ts[sel] = ns.astype(np.int64) + iface.tsoffset * 1_000_000_000
    return ts
