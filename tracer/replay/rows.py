"""Capture rows as :class:`~tracer.dataplane.packet.Packet` records, a chunk at a time.

``tracer.dataplane.batch.from_row`` reads one structured row field by field (a numpy scalar
access each, the slowest part of a cached replay); here each field of a chunk of rows is turned
into a Python list once, and addresses are interned, so a row costs one dataclass. The result
equals ``from_row``'s for every row (tests/test_replay_fastpath.py).
"""

from __future__ import annotations

from ipaddress import IPv4Address

import numpy as np

from tracer.dataplane.batch import NO_PORT
from tracer.dataplane.packet import Packet

FIELDS = ("saddr", "daddr", "protocol", "sport", "dport", "icmp_type", "icmp_code", "tcp_flags",
          "ttl", "tot_len", "df", "seq", "ack_seq", "window", "payload_len", "icmp_id",
          "has_inner", "inner_saddr", "inner_daddr", "inner_protocol", "inner_sport",
          "inner_dport")


class RowPackets:
    """The packets of ``rows`` (indices into ``packets``), by position in ``rows``."""

    def __init__(self, packets: np.ndarray, rows: np.ndarray, addresses: dict):
        chunk = packets[rows]
        self._cols = {name: chunk[name].tolist() for name in FIELDS}
        self._addresses = addresses

    def _ip(self, value: int) -> IPv4Address:
        address = self._addresses.get(value)
        if address is None:
            address = self._addresses[value] = IPv4Address(value)
        return address

    def __getitem__(self, j: int) -> Packet:
        c = self._cols
        inner = None
        if c["has_inner"][j]:
            inner = Packet(self._ip(c["inner_saddr"][j]), self._ip(c["inner_daddr"][j]),
                           c["inner_protocol"][j], sport=_none(c["inner_sport"][j]),
                           dport=_none(c["inner_dport"][j]))
        return Packet(self._ip(c["saddr"][j]), self._ip(c["daddr"][j]), c["protocol"][j],
                      sport=_none(c["sport"][j]), dport=_none(c["dport"][j]),
                      icmp_type=_none(c["icmp_type"][j]), icmp_code=_none(c["icmp_code"][j]),
                      tcp_flags=_none(c["tcp_flags"][j]), ttl=c["ttl"][j],
                      length=c["tot_len"][j], df=bool(c["df"][j]), seq=c["seq"][j],
                      ack_seq=c["ack_seq"][j], window=c["window"][j],
                      payload_len=c["payload_len"][j], icmp_id=c["icmp_id"][j], inner=inner)


def _none(value: int) -> int | None:
    return None if value == NO_PORT else value
