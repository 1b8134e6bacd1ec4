"""The decision cache (tracer.replay.decisions) against the full walk: replaying with it must give
the same per-packet and per-flow tables, row for row and column for column, as walking every
packet through the pipeline — on the bundled captures of real traffic, on the tests' generated
captures, and on hypothesis-generated packet streams (handshakes, stray ACKs, RSTs, FINs, ICMP
echoes and errors, packets over the MTU, low TTLs, denied flows, Service DNAT, conntrack
timeouts)."""

from __future__ import annotations

import tempfile
from functools import lru_cache
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.l2 import Ether
from scapy.utils import wrpcap

from replay_traffic import (BACKEND_FROM_FRONTEND, MULTINODE_VXLAN, SERVICE_CLUSTERIP,
                            many_flows_capture, mixed_capture, pod_ips, service_capture,
                            vxlan_capture)
from tracer.capture import read_capture
from tracer.model.loader import load_cluster
from tracer.policy.felix.versions import resolve_version
from tracer.replay.runner import replay_captures
from tracer.replay.tables import flow_frame, packet_frame
from tracer.trace.assemble import build_dataplane

DATA = Path(__file__).resolve().parent / "data"
CAPTURES = DATA / "captures"
LAB = DATA / "replay" / "two-node-lab.yaml"
T0 = 1_700_000_000.0


@lru_cache(maxsize=None)
def dataplane(manifests: Path):
    cluster = load_cluster([manifests])
    return build_dataplane(cluster, version=resolve_version(cluster, None))


def both(manifests: Path, paths: list[Path], **options):
    """The packet and flow tables with and without the decision cache; the cached run."""
    captures = [read_capture(str(p)) for p in paths]
    walked = replay_captures(dataplane(manifests), captures, fast=False, **options)
    cached = replay_captures(dataplane(manifests), captures, fast=True, **options)
    tables = []
    for result in (walked, cached):
        packets = packet_frame(result)
        tables.append((packets, flow_frame(packets, result)))
    return tables, cached


def assert_same(tables) -> None:
    (packets_a, flows_a), (packets_b, flows_b) = tables
    pd.testing.assert_frame_equal(packets_a, packets_b)
    pd.testing.assert_frame_equal(flows_a, flows_b)


@pytest.mark.parametrize("files", [
    ["tcp-handshake.pcap", "denied.pcapng", "vxlan-underlay.pcap", "icmp-error.pcap",
     "stray-ack.pcap", "fragments.pcapng"],
    ["service-dnat-sll2.pcap", "service-dnat-sll.pcap"]])
def test_bundled_captures_of_real_traffic(files):
    tables, cached = both(LAB, [CAPTURES / f for f in files])
    assert_same(tables)
    assert cached.fast_path.startswith("on")


def test_generated_captures(tmp_path):
    cases = [(BACKEND_FROM_FRONTEND, mixed_capture(tmp_path / "mixed.pcap")),
             (BACKEND_FROM_FRONTEND, many_flows_capture(tmp_path / "many.pcap", flows=40)),
             (MULTINODE_VXLAN, vxlan_capture(tmp_path / "vxlan.pcap")),
             (SERVICE_CLUSTERIP, service_capture(tmp_path / "service.pcap"))]
    for manifests, path in cases:
        tables, _ = both(manifests, [path])
        assert_same(tables)


def test_the_cache_serves_the_later_packets_of_a_flow(tmp_path):
    """Forty connections between two pairs of pods: all but the first walks of each kind of
    packet come from the cache (the ephemeral port is not in the key: no rule reads it)."""
    tables, cached = both(BACKEND_FROM_FRONTEND,
                          [many_flows_capture(tmp_path / "many.pcap", flows=40)])
    assert_same(tables)
    hits = int(cached.fast_path.split(":")[1].split()[0].replace(",", ""))
    assert hits > len(tables[0][0]) / 2, cached.fast_path


def test_hops_turns_the_cache_off_and_says_why(tmp_path):
    path = mixed_capture(tmp_path / "mixed.pcap")
    result = replay_captures(dataplane(BACKEND_FROM_FRONTEND), [read_capture(str(path))],
                             hops=True)
    assert result.fast_path.startswith("off: --hops")


# ---------------------------------------------------------------------- generated streams

FLAGS = ["S", "SA", "A", "PA", "FA", "R", "RA", "F", ""]
# A whole connection, in order (reply?, flags, seq, ack): its packets walk conntrack's states.
SCRIPT = [(False, "S", 1000, 0), (True, "SA", 5000, 1001), (False, "A", 1001, 5001),
          (False, "PA", 1001, 5001), (True, "A", 5001, 1001), (False, "FA", 1001, 5001),
          (True, "FA", 5001, 1002), (False, "A", 1002, 5002)]


def _ends(scenario: Path) -> list[str]:
    ips = list(pod_ips(scenario).values())
    extra = {SERVICE_CLUSTERIP: ["10.96.0.50"]}.get(scenario, [])
    return ips + extra + ["203.0.113.7"]


@st.composite
def streams(draw, scenario: Path):
    """A few connections' worth of packets: each packet picks a flow of a small pool, a
    direction, a kind and header values, so flows repeat (the cache hits) and their packets
    disagree (the cache must notice)."""
    ends = _ends(scenario)
    pods = list(pod_ips(scenario).values())
    pool = draw(st.lists(st.tuples(st.sampled_from(pods), st.sampled_from(ends),
                                   st.sampled_from([40000, 40001, 51000]),
                                   st.sampled_from([80, 8080, 6379, 53, 9999]),
                                   st.sampled_from(["tcp", "tcp", "udp", "icmp"]))
                         .filter(lambda f: f[0] != f[1]), min_size=1, max_size=4))
    frames, t = [], T0
    steps = [0] * len(pool)
    for _ in range(draw(st.integers(12, 40))):
        which = draw(st.integers(0, len(pool) - 1))
        src, dst, sport, dport, proto = pool[which]
        scripted = proto == "tcp" and draw(st.booleans())
        if scripted:                                 # the connection's next packet
            reply, flags, seq, ack = SCRIPT[steps[which] % len(SCRIPT)]
            steps[which] += 1
        else:
            reply = draw(st.booleans())
        if reply:                                    # the answer
            src, dst, sport, dport = dst, src, dport, sport
        ttl = draw(st.sampled_from([64, 64, 64, 2, 1]))
        size = draw(st.sampled_from([0, 0, 10, 1500, 3000]))
        df = draw(st.booleans())
        ip = IP(src=src, dst=dst, ttl=ttl, flags="DF" if df else 0)
        kind = draw(st.sampled_from(["plain", "plain", "plain", "icmp-error"]))
        if scripted:
            l4 = TCP(sport=sport, dport=dport, flags=flags, seq=seq, ack=ack)
            size = 0 if flags != "PA" else size
        elif proto == "tcp":
            l4 = TCP(sport=sport, dport=dport, flags=draw(st.sampled_from(FLAGS)),
                     seq=draw(st.sampled_from([1000, 1001, 5000, 5001, 77777])),
                     ack=draw(st.sampled_from([0, 1001, 5001, 99])),
                     window=draw(st.sampled_from([0, 512, 64240])))
        elif proto == "udp":
            l4 = UDP(sport=sport, dport=dport)
        else:
            l4 = ICMP(type=draw(st.sampled_from([8, 0])), id=sport % 7)
        packet = ip / l4 / (b"x" * size)
        if kind == "icmp-error":                     # the destination answers: unreachable
            packet = IP(src=dst, dst=src) / ICMP(type=3, code=draw(st.sampled_from([3, 4]))) \
                / bytes(packet)[:28]
        frame = Ether() / packet
        t += draw(st.sampled_from([0.001, 0.001, 0.5, 200.0]))      # 200 s: UDP/ICMP expire
        frame.time = t
        frames.append(frame)
    return frames


def _check_stream(scenario: Path, frames) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "stream.pcap"
        wrpcap(str(path), frames)
        tables, _ = both(scenario, [path])
        assert_same(tables)
        tables, _ = both(scenario, [path], tcp_loose=False)
        assert_same(tables)


FAST = settings(max_examples=15, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@FAST
@given(streams(BACKEND_FROM_FRONTEND))
def test_streams_one_node_with_denied_flows(frames):
    _check_stream(BACKEND_FROM_FRONTEND, frames)


@FAST
@given(streams(SERVICE_CLUSTERIP))
def test_streams_through_service_dnat(frames):
    _check_stream(SERVICE_CLUSTERIP, frames)


@FAST
@given(streams(MULTINODE_VXLAN))
def test_streams_across_nodes_through_vxlan(frames):
    _check_stream(MULTINODE_VXLAN, frames)


# ---------------------------------------------------------------------- the command line

def test_cli_says_whether_the_cache_ran(tmp_path, capsys):
    from tracer.cli import main

    path = str(mixed_capture(tmp_path / "mixed.pcap"))
    scenario = str(BACKEND_FROM_FRONTEND)
    main(["replay", "--no-cache", "-f", scenario, path, "--verbose"])
    assert "replay: decision cache on: " in capsys.readouterr().err
    main(["replay", "--no-cache", "-f", scenario, path])            # on and quiet: no line
    assert "decision cache" not in capsys.readouterr().err
    main(["replay", "--no-cache", "-f", scenario, path, "--out", str(tmp_path / "o"), "--hops"])
    assert "replay: decision cache off: --hops" in capsys.readouterr().err
    main(["replay", "--no-cache", "-f", scenario, path, "--no-decision-cache", "--verbose"])
    assert "decision cache off: not asked for" in capsys.readouterr().err


def test_row_packets_equal_from_row(tmp_path):
    """The chunked row reader replay uses gives the packets from_row gives, row for row."""
    import numpy as np

    from tracer.dataplane.batch import from_row
    from tracer.replay.rows import RowPackets

    paths = [CAPTURES / p for p in sorted(p.name for p in CAPTURES.glob("*.pcap*"))]
    paths += [mixed_capture(tmp_path / "m.pcap"), vxlan_capture(tmp_path / "v.pcap")]
    for path in paths:
        capture = read_capture(str(path))
        rows = np.arange(len(capture.packets))[::-1]
        packets = RowPackets(capture.packets, rows, {})
        assert [packets[j] for j in range(len(rows))] == \
            [from_row(capture.packets[r]) for r in rows], path
