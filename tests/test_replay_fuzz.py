"""Replay never crashes on damaged captures: bytes flipped anywhere in the packets (headers,
lengths, tunnel framing) give rows with verdicts, one per frame the reader found."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from replay_traffic import BACKEND_FROM_FRONTEND, MULTINODE_VXLAN, mixed_capture, vxlan_capture
from tracer.capture import read_capture
from tracer.errors import InputError
from tracer.model.loader import load_cluster
from tracer.policy.felix.versions import resolve_version
from tracer.replay.runner import replay_captures
from tracer.replay.tables import flow_frame, packet_frame
from tracer.trace.assemble import build_dataplane

PCAP_HEADER = 24
VERDICTS = {"allowed", "dropped", "not parsed", "not modelled"}


def _dataplane(scenario: Path):
    cluster = load_cluster([scenario])
    return build_dataplane(cluster, version=resolve_version(cluster, None))


@pytest.fixture(scope="module")
def cases(tmp_path_factory):
    folder = tmp_path_factory.mktemp("fuzz")
    return [(mixed_capture(folder / "m.pcap").read_bytes(), _dataplane(BACKEND_FROM_FRONTEND)),
            (vxlan_capture(folder / "v.pcap").read_bytes(), _dataplane(MULTINODE_VXLAN))]


@settings(max_examples=15, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(which=st.integers(0, 1),
       flips=st.lists(st.tuples(st.integers(0, 10_000), st.integers(1, 255)), min_size=1,
                      max_size=8))
def test_flipped_bytes_become_verdicts(cases, tmp_path, which, flips):
    data, dataplane = cases[which]
    damaged = bytearray(data)
    for offset, xor in flips:
        damaged[PCAP_HEADER + offset % (len(data) - PCAP_HEADER)] ^= xor
    path = tmp_path / "damaged.pcap"
    path.write_bytes(bytes(damaged))
    try:
        capture = read_capture(str(path))
    except InputError:
        return                              # the reader refused the file: one line, exit 2
    result = replay_captures(dataplane, [capture])
    packets = packet_frame(result)
    assert len(packets) == len(capture) + len(capture.skipped)
    assert set(packets["verdict"]) <= VERDICTS
    assert not (packets["reason"] == "internal-error").any()
    flow_frame(packets, result)
