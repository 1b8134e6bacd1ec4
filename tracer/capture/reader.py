"""Read a capture into a packet batch and its capture columns: the one entry point.

Stages, each over all rows at once, in the order the receiving kernel applies them:

    records (containers) -> link layer (link) -> IPv4/L4 headers (headers)
      -> reassembly of fragments (defrag, as conntrack's defrag before any table)
      -> tunnels: VXLAN/IPIP decapsulation, WireGuard decryption (tunnels, wgkeys)
      -> inner headers -> reassembly of inner fragments

A row's current datagram lives either in the file's bytes or, once reassembled or
decrypted, in a small pool of new bytes; every stage reads through :class:`_Where` so it
treats both alike.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np

from tracer import protocols as p
from tracer.capture import columns as c
from tracer.capture import containers, headers, link, tunnels, wgkeys
from tracer.capture.containers import Interface
from tracer.capture.defrag import IPFRAG_TIME_NS, Defragmenter
from tracer.dataplane.batch import PACKET_DTYPE
from tracer.errors import InputError

FILE, POOL = 0, 1
CHUNK = 1 << 15                 # rows decoded per pass: header blocks of 640 KiB


@dataclass
class Capture:
    """What a capture file holds: ``packets`` (PACKET_DTYPE) and ``meta`` (CAPTURE_DTYPE),
    aligned row for row; frames that are not rows are in ``skipped`` (SKIP_DTYPE)."""

    path: str
    packets: np.ndarray
    meta: np.ndarray
    skipped: np.ndarray
    interfaces: tuple[Interface, ...]
    warnings: tuple[str, ...]
    frames: int                                   # records read from the file
    _where: "_Where" = field(repr=False, default=None)   # type: ignore[assignment]

    def __len__(self) -> int:
        return len(self.packets)

    def skipped_counts(self) -> dict[str, int]:
        kinds, counts = np.unique(self.skipped["reason"], return_counts=True)
        return {c.SKIPS[c.Skip(k)]: int(n) for k, n in zip(kinds, counts)}

    def reason_counts(self) -> dict[str, int]:
        """Rows that are not ordinary packets, by reason text."""
        kinds, counts = np.unique(self.meta["reason"], return_counts=True)
        return {c.REASONS[c.Reason(k)][1]: int(n) for k, n in zip(kinds, counts) if k}

    def datagram(self, row: int) -> bytes:
        """The IPv4 datagram row ``row`` describes (the inner one after decapsulation), as far
        as the capture holds it."""
        return self._where.bytes_of(row)

    def frame(self, row: int) -> bytes:
        """The row's frame exactly as the file holds it (outer headers and all)."""
        m = self.meta[row]
        return self._where.file[m["offset"]:m["offset"] + m["caplen"]].tobytes()


@dataclass
class _Where:
    """Where each row's current datagram is: source (file or pool), offset, bytes held,
    bytes on the wire."""

    file: np.ndarray
    src: np.ndarray
    l3: np.ndarray
    cap: np.ndarray
    wire: np.ndarray
    pool: bytearray = field(default_factory=bytearray)

    def buffers(self) -> list[tuple[int, np.ndarray]]:
        pool = np.frombuffer(bytes(self.pool), np.uint8) if self.pool else np.zeros(1, np.uint8)
        return [(FILE, self.file), (POOL, pool)]

    def put(self, row: int, datagram: bytes) -> None:
        self.src[row], self.l3[row] = POOL, len(self.pool)
        self.cap[row] = self.wire[row] = len(datagram)
        self.pool += datagram

    def bytes_of(self, row: int, start: int = 0) -> bytes:
        buf = self.file if self.src[row] == FILE else self.pool
        lo = int(self.l3[row]) + start
        return bytes(buf[lo:int(self.l3[row]) + max(int(self.cap[row]), start)])

    def compact(self, keep: np.ndarray) -> None:
        self.src, self.l3 = self.src[keep], self.l3[keep]
        self.cap, self.wire = self.cap[keep], self.wire[keep]


def read_capture(path: str, *, vxlan_port: int = p.VXLAN_DEFAULT_PORT,
                 wireguard_port: int = p.WIREGUARD_DEFAULT_PORT,
                 keylog: str | wgkeys.KeyLog | None = None,
                 frag_timeout: float = IPFRAG_TIME_NS / 1e9) -> Capture:
    """Read a pcap or pcapng file. Bad files raise :class:`InputError`; a file cut short gives
    the packets before the cut and a warning in ``Capture.warnings``."""
    try:
        # Mapped, not read: the page cache's own pages, no copy into fresh memory.
        size = os.path.getsize(path)
        buf = (np.memmap(path, dtype=np.uint8, mode="r") if size
               else np.zeros(0, np.uint8))
    except (OSError, ValueError) as err:
        raise InputError(f"cannot read capture: {err}", file=str(path)) from None
    rec = containers.scan(buf, str(path))
    log = _keylog(keylog, rec)
    return _Reader(str(path), buf, rec, vxlan_port, wireguard_port, log,
                   int(frag_timeout * 1e9)).run()


def _keylog(keylog, rec: containers.Records) -> wgkeys.KeyLog | None:
    log = wgkeys.read_keylog(keylog) if isinstance(keylog, str) else keylog
    for kind, data in rec.secrets:
        if kind == containers.SECRETS_WIREGUARD:
            embedded = wgkeys.parse_keylog(data.decode("utf-8", "replace"),
                                           "pcapng decryption secrets block")
            log = log or wgkeys.KeyLog()
            log.merge(embedded)
    return log


class _Reader:
    def __init__(self, path: str, buf: np.ndarray, rec: containers.Records, vxlan_port: int,
                 wireguard_port: int, log: wgkeys.KeyLog | None, frag_timeout_ns: int):
        self.path, self.buf, self.rec = path, buf, rec
        self.vxlan_port, self.wireguard_port = vxlan_port, wireguard_port
        self.wg = wgkeys.Decryptor(log)
        self.frag_timeout_ns = frag_timeout_ns

    def run(self) -> Capture:
        rec = self.rec
        kinds = np.array([i.linktype for i in rec.interfaces] or [0], np.int64)
        bigs = np.array([i.big_endian for i in rec.interfaces] or [False])
        linktype, big = kinds[rec.interface], bigs[rec.interface]
        ll = link.decode(self.buf, rec.data_offset, rec.caplen, linktype, big)
        rows = np.flatnonzero(ll.skip == 0)
        skips = [_skip_records(np.flatnonzero(ll.skip), ll.skip, ll.ethertype, linktype)]
        meta = self.meta = _meta(rec, ll, rows, linktype)
        l3 = ll.l3_offset[rows]
        wire = np.maximum(rec.wire_len[rows], rec.caplen[rows])
        self.where = _Where(self.buf, np.zeros(len(rows), np.int8),
                            rec.data_offset[rows] + l3, rec.caplen[rows] - l3, wire - l3)
        self.packets = np.empty(len(rows), PACKET_DTYPE)    # the decode writes every field
        self.alive = np.ones(len(rows), bool)
        self.frag = np.zeros(len(rows), np.int64)          # flags + offset word
        self.ip_id = np.zeros(len(rows), np.int64)
        self._parse(np.arange(len(rows)))
        self._defrag()
        if self._decapsulate():
            self._defrag()                  # inner fragments, after the node decapsulates
        self.packets["tstamp"] = meta["ts_ns"] / 1e9
        meta["ip_id"], meta["frag_off"] = self.ip_id, self.frag
        gone = np.flatnonzero(~self.alive)
        skips.append(np.array([(meta["frame"][r], c.Skip.FRAGMENT_QUEUED, c.ETH_P_IP,
                                meta["linktype"][r]) for r in gone], c.SKIP_DTYPE))
        packets = self.packets
        if len(gone):                                # structured copies are dear: only if needed
            packets, meta = packets[self.alive], meta[self.alive]
            self.where.compact(self.alive)
        skipped = np.concatenate(skips)
        skipped.sort(order="frame")
        return Capture(self.path, packets, meta, skipped,
                       tuple(rec.interfaces), tuple(rec.warnings), len(rec.data_offset),
                       self.where)

    # ---------------------------------------------------------------- stages
    def _parse(self, rows: np.ndarray) -> None:
        """(Re)read the headers of ``rows`` at their current datagram."""
        w = self.where
        if not hasattr(self, "l4"):
            self.l4, self.l4_cap, self.l4_len = (np.zeros(len(w.l3), np.int64) for _ in range(3))
        for src, buf in w.buffers():
            sel = rows[w.src[rows] == src]
            if not len(sel):
                continue
            if len(sel) == len(w.l3):
                # Every row in order: decode straight into the batch, a cache-sized chunk at a
                # time, so the gathered header blocks never leave the cache.
                for start in range(0, len(sel), CHUNK):
                    part = slice(start, start + CHUNK)
                    self._keep(part, headers.parse_ipv4(buf, w.l3[part], w.cap[part],
                                                        w.wire[part], out=self.packets[part]))
            else:
                parsed = headers.parse_ipv4(buf, w.l3[sel], w.cap[sel], w.wire[sel])
                self.packets[sel] = parsed.packets
                self._keep(sel, parsed)

    def _keep(self, sel, parsed: headers.Parsed) -> None:
        self.meta["reason"][sel] = parsed.reason
        self.frag[sel], self.ip_id[sel] = parsed.frag_off, parsed.ip_id
        self.l4[sel], self.l4_cap[sel], self.l4_len[sel] = (parsed.l4, parsed.l4_cap,
                                                            parsed.l4_len)

    def _defrag(self) -> None:
        meta = self.meta
        is_frag = (self.frag & (headers.IP_MF | headers.IP_OFFSET)) != 0
        rows = np.flatnonzero(self.alive & is_frag & (meta["reason"] == 0))
        snapped = rows[self.where.cap[rows] < self.packets["tot_len"][rows]]
        meta["reason"][snapped] = c.Reason.SNAPPED
        rows = np.setdiff1d(rows, snapped)
        if not len(rows):
            return
        ts = meta["ts_ns"]
        defrag = Defragmenter(self.frag_timeout_ns)
        pk = self.packets
        for r in rows:
            key = (int(pk["saddr"][r]), int(pk["daddr"][r]), int(self.ip_id[r]),
                   int(pk["protocol"][r]), int(meta["interface"][r]),
                   int(meta["sll_ifindex"][r]), int(meta["tunnel"][r]))
            datagram = self.where.bytes_of(r)[:int(pk["tot_len"][r])]
            defrag.add(key, int(r), int(ts[r]), datagram)
        outcome = defrag.finish(int(ts.max()) if len(ts) else 0)
        for r, why in outcome.failed.items():
            meta["reason"][r] = why
        done = []
        for d in outcome.datagrams:
            self.where.put(d.row, d.datagram)
            meta["frags"][d.row] = len(d.rows)
            meta["first_frame"][d.row] = meta["frame"][d.first_row]
            self.alive[[r for r in d.rows if r != d.row]] = False
            done.append(d.row)
        if done:
            self._parse(np.array(done, np.int64))

    def _decapsulate(self) -> bool:
        """Open the tunnels (one level: Calico never nests them); True if any opened."""
        meta, pk, w = self.meta, self.packets, self.where
        cand = self.alive & (meta["reason"] == 0) & ((self.frag & 0x3FFF) == 0)
        cand &= meta["tunnel"] == c.Tunnel.NONE
        proto, sport, dport = pk["protocol"], pk["sport"], pk["dport"]
        udp = (proto == p.UDP) & ((dport == self.vxlan_port) | (dport == self.wireguard_port)
                                  | (sport == self.wireguard_port))
        rows = np.flatnonzero(cand & ((proto == p.IPIP) | udp))
        changed: list[np.ndarray] = []
        for src, buf in w.buffers():
            sel = rows[w.src[rows] == src]
            if not len(sel):
                continue
            found = tunnels.find(buf, pk["protocol"][sel], pk["dport"][sel], self.l4[sel],
                                 self.l4_cap[sel], self.l4_len[sel], self.vxlan_port)
            hit = found.tunnel != c.Tunnel.NONE
            opened = sel[hit & (found.reason == 0)]
            meta["reason"][sel[hit]] = found.reason[hit]
            self._keep_outer(sel[hit], found.tunnel[hit], found.vni[hit])
            ok = hit & (found.reason == 0)
            w.l3[opened], w.cap[opened], w.wire[opened] = (found.l3[ok], found.cap[ok],
                                                           found.wire[ok])
            changed.append(opened)
        changed.append(self._wireguard(rows))
        opened = np.concatenate(changed) if changed else np.zeros(0, np.int64)
        if len(opened):
            self._parse(opened)
        return bool(len(opened))

    def _wireguard(self, rows: np.ndarray) -> np.ndarray:
        pk, meta, w = self.packets, self.meta, self.where
        port = self.wireguard_port
        rows = rows[(pk["protocol"][rows] == p.UDP) & (meta["tunnel"][rows] == c.Tunnel.NONE)
                    & ((pk["sport"][rows] == port) | (pk["dport"][rows] == port))]
        opened = []
        for r in rows:
            start = int(self.l4[r] - w.l3[r]) + tunnels.UDP_HLEN
            payload = w.bytes_of(r, start)[:max(int(pk["payload_len"][r]), 0)]
            if not wgkeys.is_wireguard(payload):
                continue
            why, inner = self.wg.message(payload)
            self._keep_outer(np.array([r]), np.array([c.Tunnel.WIREGUARD]), np.array([-1]))
            meta["reason"][r] = why
            if inner is not None:
                w.put(r, inner)
                opened.append(r)
        return np.array(opened, np.int64)

    def _keep_outer(self, rows: np.ndarray, kind: np.ndarray, vni: np.ndarray) -> None:
        meta, pk = self.meta, self.packets
        meta["tunnel"][rows], meta["vni"][rows] = kind, vni
        meta["outer_saddr"][rows], meta["outer_daddr"][rows] = pk["saddr"][rows], pk["daddr"][rows]
        meta["outer_sport"][rows], meta["outer_dport"][rows] = pk["sport"][rows], pk["dport"][rows]
        meta["outer_ttl"][rows], meta["outer_tot_len"][rows] = pk["ttl"][rows], pk["tot_len"][rows]


def _meta(rec: containers.Records, ll: link.LinkLayer, rows: np.ndarray,
          linktype: np.ndarray) -> np.ndarray:
    meta = np.zeros(len(rows), c.CAPTURE_DTYPE)
    meta["frame"] = rows + 1
    meta["ts_ns"] = rec.ts_ns[rows]
    meta["caplen"], meta["wire_len"] = rec.caplen[rows], rec.wire_len[rows]
    meta["interface"], meta["linktype"] = rec.interface[rows], linktype[rows]
    meta["offset"], meta["l3_offset"] = rec.data_offset[rows], ll.l3_offset[rows]
    meta["vlan"], meta["vlan_inner"] = ll.vlan[rows], ll.vlan_inner[rows]
    meta["pkttype"], meta["sll_ifindex"] = ll.pkttype[rows], ll.sll_ifindex[rows]
    meta["outer_sport"] = meta["outer_dport"] = meta["vni"] = -1
    return meta


def _skip_records(idx: np.ndarray, skip: np.ndarray, ethertype: np.ndarray,
                  linktype: np.ndarray) -> np.ndarray:
    out = np.zeros(len(idx), c.SKIP_DTYPE)
    out["frame"], out["reason"] = idx + 1, skip[idx]
    out["ethertype"], out["linktype"] = ethertype[idx], linktype[idx]
    return out


