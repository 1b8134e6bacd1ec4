"""tshark's dissection of a capture, per frame, in the terms of our batch columns.

The reference the capture reader is held to: every row's addresses, ports, flags, lengths,
ICMP fields, the inner packet of a tunnel and reassembled fragments, as Wireshark reads
them. tshark is required (``make test`` installs it); a missing tshark fails, not skips.
"""

from __future__ import annotations

import shutil
import subprocess
from ipaddress import IPv4Address

import pytest

from tracer.capture import Reason, Skip, Tunnel, read_capture

FIELDS = ("frame.number", "frame.protocols", "frame.len", "frame.cap_len", "frame.time_epoch",
          "ip.src", "ip.dst", "ip.proto", "ip.ttl", "ip.len", "ip.flags.df", "ip.id",
          "tcp.srcport", "tcp.dstport", "tcp.flags", "tcp.seq_raw", "tcp.ack_raw",
          "tcp.window_size_value", "tcp.len", "udp.srcport", "udp.dstport", "udp.length",
          "icmp.type", "icmp.code", "icmp.ident", "vxlan.vni", "vlan.id", "sll.pkttype",
          "sll.ifindex", "ip.fragment", "ip.reassembled_in", "wg.type")


def tshark() -> str:
    path = shutil.which("tshark")
    assert path, "tshark is not installed (make test installs it)"
    return path


def dissect(path, *prefs: str) -> list[dict[str, list[str]]]:
    """One dict per frame: field -> list of occurrences (outer first)."""
    args = [tshark(), "-2", "-r", str(path), "-T", "fields", "-E", "separator=\t",
            "-E", "aggregator=|", "-o", "udp.try_heuristic_first:FALSE"]
    for pref in prefs:
        args += ["-o", pref]
    for name in FIELDS:
        args += ["-e", name]
    out = subprocess.run(args, capture_output=True, text=True, check=True).stdout
    frames = []
    for line in out.splitlines():
        values = line.split("\t")
        frames.append({name: (value.split("|") if value else [])
                       for name, value in zip(FIELDS, values)})
    return frames


def _int(values: list[str], index: int, default: int = -1) -> int:
    if not values or index >= len(values) or values[index] == "":
        return default
    text = values[index]
    return int(text, 16) if text.startswith("0x") else int(text)


def expected_row(frame: dict[str, list[str]]) -> dict[str, int]:
    """The row our reader should produce for this frame: the innermost packet that is not
    quoted inside an ICMP error, with an ICMP error's quoted 5-tuple as the inner one."""
    layers = frame["frame.protocols"][0].split(":")
    ip_layers = [i for i, name in enumerate(layers) if name == "ip"]
    icmp_at = layers.index("icmp") if "icmp" in layers else len(layers)
    carried = [i for i in ip_layers if i < icmp_at]
    ip = len(carried) - 1                    # occurrence of the row's IP header
    row = {"saddr": int(IPv4Address(frame["ip.src"][ip])),
           "daddr": int(IPv4Address(frame["ip.dst"][ip])),
           "protocol": _int(frame["ip.proto"], ip), "ttl": _int(frame["ip.ttl"], ip),
           "df": _int(frame["ip.flags.df"], ip)}
    if row["protocol"] == 6:
        row.update(sport=_int(frame["tcp.srcport"], 0), dport=_int(frame["tcp.dstport"], 0),
                   tcp_flags=_int(frame["tcp.flags"], 0) & 0xFF,
                   seq=_int(frame["tcp.seq_raw"], 0), ack_seq=_int(frame["tcp.ack_raw"], 0),
                   window=_int(frame["tcp.window_size_value"], 0),
                   payload_len=_int(frame["tcp.len"], 0))
    elif row["protocol"] == 17:
        # the row's UDP header is the last one before any ICMP (VXLAN's outer UDP comes first)
        udp = sum(1 for name in layers[:icmp_at] if name == "udp") - 1
        row.update(sport=_int(frame["udp.srcport"], udp), dport=_int(frame["udp.dstport"], udp),
                   payload_len=_int(frame["udp.length"], udp) - 8)
    elif row["protocol"] == 1:
        row.update(icmp_type=_int(frame["icmp.type"], 0), icmp_code=_int(frame["icmp.code"], 0))
        if row["icmp_type"] in (0, 8):
            row["icmp_id"] = _int(frame["icmp.ident"], 0)
        if len(ip_layers) > len(carried):     # an error quoting a datagram
            q = len(carried)
            row.update(has_inner=1, inner_saddr=int(IPv4Address(frame["ip.src"][q])),
                       inner_daddr=int(IPv4Address(frame["ip.dst"][q])),
                       inner_protocol=_int(frame["ip.proto"], q))
            if row["inner_protocol"] == 17:
                row.update(inner_sport=_int(frame["udp.srcport"], 0),
                           inner_dport=_int(frame["udp.dstport"], 0))
    return row


def outer(frame: dict[str, list[str]]) -> dict[str, int]:
    """Outer addresses and VXLAN facts of a tunnelled frame."""
    return {"outer_saddr": int(IPv4Address(frame["ip.src"][0])),
            "outer_daddr": int(IPv4Address(frame["ip.dst"][0])),
            "vni": _int(frame["vxlan.vni"], 0),
            "outer_sport": _int(frame["udp.srcport"], 0),
            "outer_dport": _int(frame["udp.dstport"], 0)}


def ns_of(epoch: str) -> int:
    sec, _, frac = epoch.partition(".")
    return int(sec) * 1_000_000_000 + int((frac + "000000000")[:9])


def assert_agrees_with_tshark(path) -> None:
    """Every frame of ``path``: a row equal to tshark's dissection, or a skip it explains."""
    name = path.name
    frames = dissect(path)
    cap = read_capture(str(path))
    assert not cap.warnings
    assert cap.frames == len(frames)
    rows = {int(f): i for i, f in enumerate(cap.meta["frame"])}
    skipped = {int(s["frame"]): int(s["reason"]) for s in cap.skipped}
    assert len(rows) + len(skipped) == len(frames)
    for frame in frames:
        number = int(frame["frame.number"][0])
        layers = frame["frame.protocols"][0].split(":")
        if "ip" not in layers:
            assert skipped[number] in (Skip.ARP, Skip.IPV6), number
            continue
        reassembled_in = frame["ip.reassembled_in"]
        if reassembled_in and int(reassembled_in[-1]) != number:
            assert skipped[number] == Skip.FRAGMENT_QUEUED, number
            continue
        i = rows[number]
        meta, row = cap.meta[i], cap.packets[i]
        assert meta["reason"] == Reason.OK, (number, Reason(meta["reason"]))
        for field, value in expected_row(frame).items():
            assert row[field] == value, (name, number, field, row[field], value)
        assert meta["ts_ns"] == ns_of(frame["frame.time_epoch"][0])
        assert row["tstamp"] == pytest.approx(meta["ts_ns"] / 1e9)
        assert meta["wire_len"] == int(frame["frame.len"][0])
        assert meta["caplen"] == int(frame["frame.cap_len"][0])
        assert meta["vlan"] == (int(frame["vlan.id"][0]) if frame["vlan.id"] else -1)
        if frame["sll.pkttype"]:
            assert meta["pkttype"] == int(frame["sll.pkttype"][0])
        if frame["sll.ifindex"]:
            assert meta["sll_ifindex"] == int(frame["sll.ifindex"][0])
        if frame["vxlan.vni"]:
            assert meta["tunnel"] == Tunnel.VXLAN
            for field, value in outer(frame).items():
                assert meta[field] == value, (name, number, field)
        else:
            assert meta["tunnel"] == Tunnel.NONE
        fragments = frame["ip.fragment"]
        if fragments:
            assert meta["frags"] == len(fragments)
            assert meta["first_frame"] == int(fragments[0])
        else:
            assert meta["frags"] == 0
            assert row["tot_len"] == int(frame["ip.len"][-1 if meta["tunnel"] else 0]) or \
                row["protocol"] == 1
