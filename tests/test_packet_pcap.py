"""`calico-trace packet --write-pcap`: the packet at each point of its path, judged by tshark."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from tracer.cli import cli

SCENARIOS = Path(__file__).resolve().parent.parent / "scenarios"
TSHARK = shutil.which("tshark")
pytestmark = pytest.mark.skipif(TSHARK is None, reason="tshark is not installed (make test "
                                "installs it as root)")


def capture(tmp_path, scenario: str) -> Path:
    pcap = tmp_path / "trace.pcap"
    res = CliRunner().invoke(cli, ["packet", "-f", str(SCENARIOS / scenario), "--from",
                                   "shop/frontend-7d4b9", "--to", "shop/backend-5f8c2",
                                   "--port", "6379", "--write-pcap", str(pcap)],
                             catch_exceptions=False)
    assert res.exit_code == 0
    return pcap


def fields(pcap: Path, *names: str, prefs: tuple[str, ...] = ()) -> list[list[str]]:
    args = [TSHARK, "-r", str(pcap), "-T", "fields", "-E", "separator=|"]
    for pref in prefs:
        args += ["-o", pref]
    for name in names:
        args += ["-e", name]
    out = subprocess.run(args, capture_output=True, text=True, check=True).stdout
    return [line.split("|") for line in out.splitlines()]


def test_vxlan_path_has_source_underlay_and_destination_frames(tmp_path):
    pcap = capture(tmp_path, "multinode-vxlan")
    rows = fields(pcap, "frame.protocols", "vxlan.vni", "ip.src", "tcp.dstport",
                  prefs=("ip.check_checksum:TRUE", "tcp.check_checksum:TRUE"))
    assert len(rows) == 3
    assert rows[0][0] == "raw:ip:tcp" and rows[2][0] == "raw:ip:tcp"
    assert "vxlan:eth:ethertype:ip:tcp" in rows[1][0]
    assert rows[1][1] == "4096"
    assert rows[1][2] == "10.0.0.1,10.244.0.1"       # outer, then inner source
    bad = fields(pcap, "ip.checksum.status", "tcp.checksum.status",
                 prefs=("ip.check_checksum:TRUE", "tcp.check_checksum:TRUE"))
    assert all("0" not in ",".join(row) for row in bad)      # 0 = bad checksum


def test_ipip_underlay_frame_carries_the_original_packet(tmp_path):
    pcap = capture(tmp_path, "multinode-ipip")
    rows = fields(pcap, "frame.protocols", "ip.proto", "ip.dst")
    assert rows[1][0] == "raw:ip:ip:tcp"
    assert rows[1][1] == "4,6" and rows[1][2] == "10.0.0.2,10.244.0.65"


def test_wireguard_frames_decrypt_with_the_written_keys(tmp_path):
    pcap = capture(tmp_path, "multinode-wireguard")
    keys = Path(f"{pcap}.keys")
    assert keys.exists()
    plain = fields(pcap, "wg.type")
    assert [row[0] for row in plain if row[0]] == ["1", "2", "4"]
    decrypted = fields(pcap, "wg.type", "tcp.dstport",
                       prefs=(f"wg.keylog_file:{keys}",))
    transport = next(row for row in decrypted if row[0] == "4")
    assert transport[1] == "6379"
