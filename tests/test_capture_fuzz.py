"""Fuzzing the readers: mutated and cut real captures, random frames, mutated flow logs and key
logs. The only exception allowed is InputError; whatever is read keeps its invariants."""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import capture_forge as forge
from tracer.capture import Reason, Skip, read_capture
from tracer.capture.containers import scan
from tracer.capture.flowlogs import read_flow_logs
from tracer.capture.wgkeys import parse_keylog
from tracer.errors import InputError

DATA = Path(__file__).resolve().parent / "data"
CAPTURES = sorted((DATA / "captures").glob("*.pcap*"))
FLOWLOGS = sorted((DATA / "flowlogs").glob("*"))
FUZZ = settings(max_examples=int(os.environ.get("CAPTURE_FUZZ_EXAMPLES", "60")), deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture])


def check(path: Path):
    """Read ``path``; any outcome but a Capture or an InputError fails."""
    try:
        cap = read_capture(str(path))
    except InputError as err:
        assert str(err).startswith(f"{path}: ")
        return None
    assert len(cap.packets) == len(cap.meta)
    assert set(np.unique(cap.meta["reason"])) <= {int(r) for r in Reason}
    assert set(np.unique(cap.skipped["reason"])) <= {int(s) for s in Skip}
    frames = np.concatenate([cap.meta["frame"], cap.skipped["frame"]])
    assert len(frames) == len(set(frames.tolist())) == cap.frames
    assert all(w.startswith(f"{path}: ") for w in cap.warnings)
    for row in range(min(len(cap), 5)):
        cap.datagram(row)
        cap.frame(row)
    return cap


@pytest.mark.parametrize("source", CAPTURES, ids=lambda p: p.name)
@FUZZ
@given(data=st.data())
def test_mutated_real_captures(tmp_path, source, data):
    blob = bytearray(source.read_bytes())
    for _ in range(data.draw(st.integers(1, 8))):
        at = data.draw(st.integers(0, len(blob) - 1))
        blob[at] = data.draw(st.integers(0, 255))
    path = tmp_path / source.name
    path.write_bytes(bytes(blob))
    check(path)


@pytest.mark.parametrize("source", CAPTURES, ids=lambda p: p.name)
@FUZZ
@given(cut=st.integers(0, 10_000))
def test_real_captures_cut_anywhere(tmp_path, source, cut):
    blob = source.read_bytes()
    cut = min(cut, len(blob))
    path = tmp_path / source.name
    path.write_bytes(blob[:cut])
    cap = check(path)
    if cap is not None and cut < len(blob) and cut >= 32:
        whole = read_capture(str(source))
        assert len(cap) + len(cap.skipped) <= len(whole) + len(whole.skipped) + 4
        if not cap.warnings and source.suffix == ".pcap":   # cut on a record boundary
            rec = scan(np.fromfile(source, np.uint8), str(source))
            ends = {24, *(rec.data_offset + rec.caplen).tolist()}
            assert cut in ends and cap.frames < whole.frames


frames = st.binary(min_size=0, max_size=120)


@FUZZ
@given(linktype=st.sampled_from([0, 1, 101, 108, 113, 228, 229, 276, 147]),
       payloads=st.lists(frames, max_size=12), big=st.booleans())
def test_random_frames_in_every_link_type(tmp_path, linktype, payloads, big):
    path = tmp_path / "r.pcap"
    path.write_bytes(forge.pcap([(i, p) for i, p in enumerate(payloads)], linktype=linktype,
                                big=big))
    cap = check(path)
    assert cap is not None and cap.frames == len(payloads)


ip_headers = st.builds(
    lambda ver_ihl, tot, frag, proto, body: struct.pack(
        "!BBHHHBBH4s4s", ver_ihl, 0, tot, 1, frag, 64, proto, 0, b"\x0a\0\0\1",
        b"\x0a\0\0\2") + body,
    st.integers(0, 255), st.integers(0, 200), st.integers(0, 0xFFFF),
    st.sampled_from([1, 4, 6, 17, 132, 136, 47]), st.binary(max_size=80))


@FUZZ
@given(packets=st.lists(ip_headers, min_size=1, max_size=20))
def test_random_ipv4_headers_become_rows_with_reasons(tmp_path, packets):
    path = tmp_path / "ip.pcap"
    path.write_bytes(forge.pcap([(i, p) for i, p in enumerate(packets)], linktype=228))
    cap = check(path)
    assert cap is not None
    # every frame is a row, a fragment taken into a datagram, or nothing else
    assert set(cap.skipped["reason"].tolist()) <= {Skip.FRAGMENT_QUEUED}
    ok = cap.meta["reason"] == Reason.OK
    assert (cap.packets["tot_len"][ok] >= 20).all()


@FUZZ
@given(data=st.data())
def test_mutated_pcapng_blocks(tmp_path, data):
    blocks = forge.shb() + forge.idb(name="x", tsresol=data.draw(st.integers(0, 255)))
    blocks += forge.epb(False, 0, 5, bytes(40)) + forge.spb(False, bytes(30))
    blob = bytearray(blocks)
    for _ in range(data.draw(st.integers(1, 6))):
        blob[data.draw(st.integers(0, len(blob) - 1))] = data.draw(st.integers(0, 255))
    path = tmp_path / "m.pcapng"
    path.write_bytes(bytes(blob))
    check(path)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**40, 2**40) | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner,
                                                                max_size=3), max_leaves=6)


@pytest.mark.parametrize("source", FLOWLOGS, ids=lambda p: p.name)
@FUZZ
@given(data=st.data())
def test_mutated_flow_logs(tmp_path, source, data):
    text = source.read_text()
    records = json.loads(text) if text.lstrip().startswith("[") else [
        json.loads(line) for line in text.splitlines() if line.strip()]
    record = records[data.draw(st.integers(0, len(records) - 1))]
    target = record.get("flow", record)
    target = target.get("Key", target.get("key", target)) if data.draw(st.booleans()) else target
    field = data.draw(st.sampled_from(sorted(target)))
    target[field] = data.draw(json_values)
    path = tmp_path / source.name
    path.write_text("\n".join(json.dumps(r) for r in records) + "\n")
    try:
        table = read_flow_logs(str(path))
    except InputError as err:
        assert str(err).startswith(f"{path}: line ")
    else:
        assert len(table) == len(records)


@FUZZ
@given(text=st.text(max_size=200))
def test_flow_log_garbage(tmp_path, text):
    path = tmp_path / "g.log"
    path.write_text(text)
    try:
        read_flow_logs(str(path))
    except InputError as err:
        assert str(err).startswith(f"{path}: ")


@FUZZ
@given(text=st.text(max_size=200))
def test_keylog_garbage(text):
    try:
        parse_keylog(text, "k")
    except InputError as err:
        assert str(err).startswith("k: line ")
