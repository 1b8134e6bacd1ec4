"""pcapng out: what leaves each hop, with the verdict and deciding rule as the packet's comment.

Written with scapy's ``PcapNgWriter``, which supports what this needs: one Interface
Description Block per interface name (``if_name``, so Wireshark's ``frame.interface_name``
tells the hops apart), an ``opt_comment`` per Enhanced Packet Block (Wireshark shows it as
``frame.comment`` and in the packet list's comment column) and the ``epb_flags`` direction.
Frames are IPv4 datagrams (link type RAW, 101) unless the caller says otherwise: tunnel
framing is IP-level, so the underlay packet is written whole, outer headers included.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from os import PathLike

from scapy.packet import Raw
from scapy.utils import PcapNgWriter

from tracer.capture.columns import LINKTYPE_RAW
from tracer.errors import InputError

INBOUND, OUTBOUND = 1, 2          # epb_flags direction bits


@dataclass(frozen=True)
class Frame:
    """One packet as it left (or entered) a hop."""

    data: bytes
    interface: str                 # "node-1 eth0", "node-2 cali229626cbf41", ...
    timestamp: float               # seconds since the epoch
    comment: str = ""              # verdict, deciding rule; lines separated by "\n"
    direction: int | None = None   # INBOUND, OUTBOUND or None (unknown)


def write_pcapng(path: str | PathLike[str], frames: Iterable[Frame], *,
                 linktype: int = LINKTYPE_RAW) -> int:
    """Write ``frames`` in order; returns how many. All frames share ``linktype``."""
    count = 0
    try:
        writer = PcapNgWriter(str(path))
    except OSError as err:
        raise InputError(f"cannot write pcapng: {err.strerror}", file=str(path)) from None
    writer.linktype = linktype          # scapy cannot guess it from raw bytes
    with writer:
        writer.write_header(None)
        for frame in frames:
            packet = Raw(frame.data)
            packet.time = frame.timestamp
            packet.sniffed_on = frame.interface
            if frame.comment:
                packet.comments = [frame.comment.encode()]
            if frame.direction is not None:
                packet.direction = frame.direction
            writer.write_packet(packet)
            count += 1
    return count
