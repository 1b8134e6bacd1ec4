"""Packets as a numpy structured array: the one batch layout every fast path shares.

The capture readers fill it, the compiled engine reads and writes it, the live loop builds it
from TUN reads. Field names follow the kernel (``saddr``, ``daddr``, ``protocol``, ``tot_len``,
``mark``, ``iif``); a batch row and a :class:`~tracer.dataplane.packet.Packet` convert into
each other without loss for the fields both carry (:func:`to_batch`, :func:`from_row`).

``iif`` / ``oif`` are interface ids, interned per node by the dataplane's interface table;
``-1`` is "none" (a locally originated packet has no ``iif``). ``inner_*`` describe the packet
an ICMP error quotes or a tunnel carries (``has_inner``).
"""

from __future__ import annotations

from ipaddress import IPv4Address
from typing import Iterable

import numpy as np

from tracer.dataplane.packet import Packet

NO_PORT = -1                      # sport/dport/icmp fields of a packet that has none

PACKET_DTYPE = np.dtype([
    # IPv4 header
    ("saddr", np.uint32), ("daddr", np.uint32), ("protocol", np.uint8), ("ttl", np.uint8),
    ("tot_len", np.uint16), ("df", np.uint8),
    # L4 header (NO_PORT where the protocol has no such field)
    ("sport", np.int32), ("dport", np.int32), ("tcp_flags", np.int16),
    ("seq", np.uint32), ("ack_seq", np.uint32), ("window", np.uint16),
    ("payload_len", np.uint32), ("icmp_type", np.int16), ("icmp_code", np.int16),
    ("icmp_id", np.uint16),
    # the quoted / carried packet
    ("has_inner", np.uint8), ("inner_saddr", np.uint32), ("inner_daddr", np.uint32),
    ("inner_protocol", np.uint8), ("inner_sport", np.int32), ("inner_dport", np.int32),
    # metadata (sk_buff and the run)
    ("iif", np.int32), ("mark", np.uint32), ("tstamp", np.float64),
])


def _opt(value: int | None) -> int:
    return NO_PORT if value is None else int(value)


def to_batch(packets: Iterable[Packet], *, iif: int = -1, mark: int = 0,
             tstamp: float = 0.0) -> np.ndarray:
    """Rows for ``packets`` (all entering with the same metadata)."""
    items = list(packets)
    batch = np.zeros(len(items), dtype=PACKET_DTYPE)
    for row, p in zip(batch, items):
        row["saddr"], row["daddr"], row["protocol"] = int(p.src), int(p.dst), p.protocol
        row["ttl"], row["tot_len"], row["df"] = p.ttl, p.length, p.df
        row["sport"], row["dport"] = _opt(p.sport), _opt(p.dport)
        row["tcp_flags"] = _opt(p.tcp_flags)
        row["seq"], row["ack_seq"], row["window"] = p.seq, p.ack_seq, p.window
        row["payload_len"], row["icmp_id"] = p.payload_len, p.icmp_id
        row["icmp_type"], row["icmp_code"] = _opt(p.icmp_type), _opt(p.icmp_code)
        if p.inner is not None:
            row["has_inner"] = 1
            row["inner_saddr"], row["inner_daddr"] = int(p.inner.src), int(p.inner.dst)
            row["inner_protocol"] = p.inner.protocol
            row["inner_sport"], row["inner_dport"] = _opt(p.inner.sport), _opt(p.inner.dport)
        row["iif"], row["mark"], row["tstamp"] = iif, mark, tstamp
    return batch


def _none(value: int) -> int | None:
    return None if value == NO_PORT else int(value)


def from_row(row: np.void) -> Packet:
    """The :class:`Packet` a batch row describes (an inner packet keeps its 5-tuple only)."""
    inner = None
    if row["has_inner"]:
        inner = Packet(IPv4Address(int(row["inner_saddr"])), IPv4Address(int(row["inner_daddr"])),
                       int(row["inner_protocol"]), sport=_none(row["inner_sport"]),
                       dport=_none(row["inner_dport"]))
    return Packet(IPv4Address(int(row["saddr"])), IPv4Address(int(row["daddr"])),
                  int(row["protocol"]), sport=_none(row["sport"]), dport=_none(row["dport"]),
                  icmp_type=_none(row["icmp_type"]), icmp_code=_none(row["icmp_code"]),
                  tcp_flags=_none(row["tcp_flags"]), ttl=int(row["ttl"]),
                  length=int(row["tot_len"]), df=bool(row["df"]), seq=int(row["seq"]),
                  ack_seq=int(row["ack_seq"]), window=int(row["window"]),
                  payload_len=int(row["payload_len"]), icmp_id=int(row["icmp_id"]), inner=inner)
