"""The packet of a trace as it is at each point of its path, as one pcapng file.

Frames, in path order: what the source put on the wire, every underlay crossing (with its
tunnel framing, byte-exact from ``tracer.encap``), and what the destination received. Link
type is raw IPv4, which Wireshark and tshark dissect down to the inner packet of a tunnel.
Each frame is on an interface named after its hop and carries a comment saying where it is;
the last one also carries the verdict and the deciding rule (written by
:func:`tracer.capture.writer.write_pcapng`).
"""

from __future__ import annotations

from tracer.capture.writer import Frame, write_pcapng
from tracer.dataplane.trace import DeliverRecord, EncapRecord
from tracer.trace.result import PacketTrace
from tracer.dataplane.wire import to_bytes

FRAME_SPACING = 0.000_1                # seconds between frames, so tools keep the order
START = 1_700_000_000.0


def trace_frames(trace: PacketTrace) -> list[tuple[str, str, bytes]]:
    """(interface, where, bytes) for each point of the path."""
    frames: list[tuple[str, str, bytes]] = []
    first = trace.hops[0] if trace.hops else None
    if first is not None:
        frames.append((f"{trace.source} eth0", f"sent by {trace.source}",
                       to_bytes(first.packet)))
    for index, hop in enumerate(trace.hops):
        if index and hop.iif == "eth0" and hop.packet.inner is None:
            frames.append((f"{hop.node} eth0", f"underlay into {hop.node}",
                           to_bytes(hop.packet)))
        for stage in hop.stages:
            if isinstance(stage, EncapRecord) and stage.wire:
                frames.extend((f"{stage.node} eth0", f"{what} from {stage.node}", data)
                              for what, data in stage.preamble)
                frames.append((f"{stage.node} eth0",
                               f"{stage.mode} on the underlay from {stage.node}", stage.wire))
            elif isinstance(stage, DeliverRecord) and index:
                frames.append((f"{stage.where} eth0", f"received by {stage.where}",
                               to_bytes(stage.packet)))
    return frames


def verdict_comment(trace: PacketTrace) -> str:
    """The verdict line and the deciding rules, as the text renderer words them."""
    if trace.verdict == "dropped":
        lines = [f"VERDICT dropped [{trace.reason}]"]
    else:
        lines = [f"VERDICT allowed: delivered to {trace.delivered_to or trace.destination}"]
    lines += [f"decided by {d.node} {d.table}/{d.chain} rule {d.rule_number}: "
              f"{d.rule_text or ''}".rstrip() for d in trace.deciding]
    return "\n".join(lines)


def write_trace_pcap(path: str, trace: PacketTrace) -> list[str]:
    """Write the pcapng, and next to it ``<path>.keys`` when WireGuard keys are needed to
    read it (``tshark -o wg.keylog_file:<path>.keys``). Returns the files written."""
    frames = trace_frames(trace)
    last = len(frames) - 1
    write_pcapng(path, [Frame(data, iface, START + i * FRAME_SPACING,
                              where + ("\n" + verdict_comment(trace) if i == last else ""))
                        for i, (iface, where, data) in enumerate(frames)])
    written = [path]
    keylog = "".join(stage.keylog for hop in trace.hops for stage in hop.stages
                     if isinstance(stage, EncapRecord) and stage.keylog)
    if keylog:
        with open(f"{path}.keys", "w") as out:
            out.write(keylog)
        written.append(f"{path}.keys")
    return written
