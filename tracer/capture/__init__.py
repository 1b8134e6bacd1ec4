"""Captures and flow logs in, annotated captures out: the input/output edge of ``replay``.

Public API::

    read_capture(path, *, vxlan_port=4789, wireguard_port=51820, keylog=None,
                 frag_timeout=30.0) -> Capture                     # tracer.capture.reader
        Capture.packets   PACKET_DTYPE rows (tracer.dataplane.batch), the inner packet of a tunnel
        Capture.meta      CAPTURE_DTYPE rows aligned with packets (frame, time, lengths, link
                          type, interface, VLANs, SLL packet type/ifindex, reason, tunnel and
                          outer header, IP id/frag_off, fragments reassembled)
        Capture.skipped   SKIP_DTYPE: frames that are not rows, with a Skip reason
        Capture.interfaces, .warnings, .frames, .datagram(row), .frame(row),
        .skipped_counts(), .reason_counts()
    Reason, REASONS, category(reason), Skip, SKIPS, Tunnel       # tracer.capture.columns
    read_flow_logs(path) -> pandas.DataFrame (COLUMNS)            # tracer.capture.flowlogs
    write_pcapng(path, frames, *, linktype=LINKTYPE_RAW), Frame    # tracer.capture.writer
    read_keylog(path), parse_keylog(text, source) -> KeyLog       # tracer.capture.wgkeys

Nothing in ``tracer.dataplane`` imports this package; it reads ``tracer.dataplane.batch``,
``tracer.encap`` (VXLAN constants, Noise/WireGuard primitives), ``tracer.protocols`` and
``tracer.errors``.
"""

from __future__ import annotations

from tracer.capture.columns import (CAPTURE_DTYPE, LINKTYPE_RAW, REASONS, SKIP_DTYPE, SKIPS,
                                    Reason, Skip, Tunnel, category)
from tracer.capture.flowlogs import COLUMNS as FLOW_COLUMNS
from tracer.capture.flowlogs import read_flow_logs
from tracer.capture.reader import Capture, read_capture
from tracer.capture.wgkeys import KeyLog, parse_keylog, read_keylog
from tracer.capture.writer import Frame, write_pcapng

__all__ = ["read_capture", "Capture", "CAPTURE_DTYPE", "SKIP_DTYPE", "Reason", "REASONS",
           "Skip", "SKIPS", "Tunnel", "category", "read_flow_logs", "FLOW_COLUMNS",
           "write_pcapng", "Frame", "LINKTYPE_RAW", "KeyLog", "parse_keylog", "read_keylog"]
