"""The packet of a trace as it is at each point of its path, as one pcap file.

Frames, in path order: what the source put on the wire, every underlay crossing (with its
tunnel framing, byte-exact from ``tracer.encap``), and what the destination received. Link
type is raw IPv4, which Wireshark and tshark dissect down to the inner packet of a tunnel.
"""

from __future__ import annotations

from tracer.dataplane.trace import DeliverRecord, EncapRecord
from tracer.trace.result import PacketTrace
from tracer.dataplane.wire import to_bytes
from tracer.encap.pcap import LINKTYPE_RAW, write_pcap

FRAME_SPACING = 0.000_1                # seconds between frames, so tools keep the order


def trace_frames(trace: PacketTrace) -> list[tuple[str, bytes]]:
    """(where, bytes) for each point of the path."""
    frames: list[tuple[str, bytes]] = []
    first = trace.hops[0] if trace.hops else None
    if first is not None:
        frames.append((f"sent by {trace.source}", to_bytes(first.packet)))
    for index, hop in enumerate(trace.hops):
        if index and hop.iif == "eth0" and hop.packet.inner is None:
            frames.append((f"underlay into {hop.node}", to_bytes(hop.packet)))
        for stage in hop.stages:
            if isinstance(stage, EncapRecord) and stage.wire:
                frames.extend((f"{what} from {stage.node}", data) for what, data in stage.preamble)
                frames.append((f"{stage.mode} on the underlay from {stage.node}", stage.wire))
            elif isinstance(stage, DeliverRecord) and index:
                frames.append((f"received by {stage.where}", to_bytes(stage.packet)))
    return frames


def write_trace_pcap(path: str, trace: PacketTrace) -> list[str]:
    """Write the pcap, and next to it ``<path>.keys`` when WireGuard keys are needed to read
    it (``tshark -o wg.keylog_file:<path>.keys``). Returns the files written."""
    frames = trace_frames(trace)
    write_pcap(path, [(1_700_000_000 + i * FRAME_SPACING, data, LINKTYPE_RAW)
                      for i, (_, data) in enumerate(frames)])
    written = [path]
    keylog = "".join(stage.keylog for hop in trace.hops for stage in hop.stages
                     if isinstance(stage, EncapRecord) and stage.keylog)
    if keylog:
        with open(f"{path}.keys", "w") as out:
            out.write(keylog)
        written.append(f"{path}.keys")
    return written
