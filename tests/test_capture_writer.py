"""pcapng out: per-hop interfaces, per-packet comments Wireshark shows, read back by us."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner
from scapy.layers.inet import IP, TCP

from capture_tshark import tshark
from tracer.capture import read_capture
from tracer.capture.writer import OUTBOUND, Frame, write_pcapng
from tracer.cli import cli
from tracer.errors import InputError

SCENARIOS = Path(__file__).resolve().parent.parent / "scenarios"


def fields(path, *names):
    args = [tshark(), "-r", str(path), "-T", "fields", "-E", "separator=|"]
    for name in names:
        args += ["-e", name]
    out = subprocess.run(args, capture_output=True, text=True, check=True).stdout
    return [line.split("|") for line in out.splitlines()]


def test_comments_and_interfaces_reach_wireshark(tmp_path):
    syn = bytes(IP(src="10.65.0.2", dst="10.65.1.2") / TCP(sport=1, dport=80, flags="S"))
    path = tmp_path / "out.pcapng"
    count = write_pcapng(path, [
        Frame(syn, "node-1 cali1", 1_700_000_000.25, "left pod"),
        Frame(syn, "node-2 eth0", 1_700_000_000.5, "VERDICT dropped [default-deny]\n"
              "decided by node-2 filter/cali-tw-x rule 7", OUTBOUND),
        Frame(syn, "node-1 cali1", 1_700_000_001.0)])
    assert count == 3
    rows = fields(path, "frame.interface_name", "frame.comment", "tcp.dstport",
                  "frame.time_epoch", "frame.p2p_dir")
    assert [r[0] for r in rows] == ["node-1 cali1", "node-2 eth0", "node-1 cali1"]
    assert rows[0][1] == "left pod" and rows[2][1] == ""
    assert rows[1][1].startswith("VERDICT dropped [default-deny]")
    assert "cali-tw-x rule 7" in rows[1][1]
    assert {r[2] for r in rows} == {"80"}
    assert rows[0][3].startswith("1700000000.25")
    cap = read_capture(str(path))
    assert [i.name for i in cap.interfaces if i.name] == ["node-1 cali1", "node-2 eth0"]
    assert cap.datagram(1) == syn and cap.meta["ts_ns"][1] == 1_700_000_000_500_000_000


def test_an_unwritable_path_is_an_input_error(tmp_path):
    with pytest.raises(InputError, match="cannot write pcapng"):
        write_pcapng(tmp_path / "no" / "dir.pcapng", [])


def test_packet_write_pcap_annotates_the_verdict(tmp_path):
    pcap = tmp_path / "trace.pcapng"
    res = CliRunner().invoke(cli, ["packet", "-f", str(SCENARIOS / "backend-from-frontend"),
                                   "--from", "myns/other", "--to", "myns/backend",
                                   "--protocol", "tcp", "--port", "6379",
                                   "--write-pcap", str(pcap)], catch_exceptions=False)
    assert res.exit_code == 0
    rows = fields(pcap, "frame.comment", "frame.interface_name", "tcp.dstport")
    assert rows[0][0].startswith("sent by myns/other") and rows[0][1] == "myns/other eth0"
    last = rows[-1][0]
    assert "VERDICT dropped [default-deny]" in last
    assert "decided by node-1 filter/cali-tw-" in last and "rule 7" in last
    assert read_capture(str(pcap)).packets["dport"][0] == 6379
