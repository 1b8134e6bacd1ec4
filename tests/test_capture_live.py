"""Fresh captures of real traffic (root): tests/make_captures.py run again into a temporary
directory, and the reader held to tshark on every frame of what it captured."""

from __future__ import annotations

import os

import pytest

import make_captures
from capture_tshark import assert_agrees_with_tshark
from tracer.kernel.cleanup import lab_namespaces

pytestmark = pytest.mark.root


def test_fresh_captures_of_real_traffic_agree_with_tshark(tmp_path):
    assert os.geteuid() == 0, "needs root for network namespaces (CI runs as root)"
    make_captures.main(str(tmp_path))
    made = sorted(p.name for p in tmp_path.iterdir())
    assert made == sorted(["tcp-handshake.pcap", "denied.pcapng", "icmp-error.pcap",
                           "stray-ack.pcap", "service-dnat-sll2.pcap", "service-dnat-sll.pcap",
                           "vxlan-underlay.pcap", "fragments.pcapng"])
    for name in made:
        assert_agrees_with_tshark(tmp_path / name)
    assert not lab_namespaces(os.getpid())              # every namespace removed
