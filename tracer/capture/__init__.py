"""Captures and flow logs in, annotated captures out: the input/output edge of ``replay``.

Public API::

    read_capture(path, *, vxlan_port=4789, wireguard_port=51820, keylog=None,
                 frag_timeout=30.0) -> Capture          # tracer.capture.reader
    Capture.packets (PACKET_DTYPE) / .meta (CAPTURE_DTYPE) / .skipped (SKIP_DTYPE)
    CAPTURE_DTYPE, SKIP_DTYPE, Reason, REASONS, Skip, SKIPS, Tunnel   # tracer.capture.columns
"""

from __future__ import annotations

from tracer.capture.columns import (CAPTURE_DTYPE, REASONS, SKIP_DTYPE, SKIPS, Reason, Skip,
                                    Tunnel, category)
from tracer.capture.reader import Capture, read_capture

__all__ = ["read_capture", "Capture", "CAPTURE_DTYPE", "SKIP_DTYPE", "Reason", "REASONS",
           "Skip", "SKIPS", "Tunnel", "category"]
