"""``render --dataplane``: the FelixConfiguration's nftablesMode decides unless the flag says."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from tracer.cli import cli

SCENARIO = Path(__file__).resolve().parent.parent / "scenarios" / "backend-from-frontend"
FELIX = ("apiVersion: projectcalico.org/v3\nkind: FelixConfiguration\nmetadata: {name: default}\n"
         "spec: {nftablesMode: %s}\n")


def _render(*args: str):
    return CliRunner().invoke(cli, ["render", "--node", "node-1", *args])


def _with_felix(tmp_path: Path, mode: str) -> Path:
    folder = tmp_path / mode
    shutil.copytree(SCENARIO, folder)
    (folder / "felix.yaml").write_text(FELIX % mode)
    return folder


def test_flag_picks_the_dataplane():
    nft = _render("-f", str(SCENARIO), "--dataplane", "nftables")
    assert nft.exit_code == 0, nft.output
    assert nft.output.startswith("table ip calico {")
    assert "chain filter-FORWARD {" in nft.output
    ipt = _render("-f", str(SCENARIO), "--dataplane", "iptables")
    assert ipt.exit_code == 0 and ipt.output.startswith("*raw")


def test_felix_configuration_decides_by_default(tmp_path):
    enabled = _render("-f", str(_with_felix(tmp_path, "Enabled")))
    assert enabled.exit_code == 0, enabled.output
    assert enabled.output.startswith("table ip calico {")
    for mode in ("Disabled", "Auto"):
        result = _render("-f", str(_with_felix(tmp_path, mode)))
        assert result.exit_code == 0 and result.output.startswith("*raw"), mode
    # The flag wins over the configuration.
    forced = _render("-f", str(tmp_path / "Enabled"), "--dataplane", "iptables")
    assert forced.output.startswith("*raw")


def test_bad_dataplane_is_one_line(tmp_path):
    result = _render("-f", str(SCENARIO), "--dataplane", "ebpf")
    assert result.exit_code == 2
    assert "ebpf" in result.output
    bad = _with_felix(tmp_path, "Sometimes")
    proc = subprocess.run([sys.executable, "-c", "from tracer.cli import main; main()", "render",
                           "-f", str(bad), "--node", "node-1"], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "spec.nftablesMode" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


def test_packet_through_the_nftables_table():
    args = ["packet", "-f", str(SCENARIO), "--from", "myns/other", "--to", "myns/backend",
            "--port", "6379", "--dataplane", "nftables"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert "felix nftables dataplane" in result.output
    assert "VERDICT  dropped [default-deny]" in result.output
    assert "calico/filter-cali-tw-" in result.output          # hops named as nftables does
    assert "iifname vmap @filter-cali-from-wl-dispatch" in result.output
    compiled = CliRunner().invoke(cli, [*args, "--engine", "compiled"])
    assert compiled.exit_code == 0 and "dropped [default-deny]" in compiled.output
    assert "reference walker" in compiled.stderr          # the fallback is said


@pytest.mark.parametrize("name", ["calico-tiers", "recipe-06-allow-from-namespace",
                                  "multinode-vxlan"])
def test_matrix_through_the_nftables_table_agrees_with_the_policies(name):
    """Every pair traced through felix's nftables table answers as the policy evaluator."""
    folder = SCENARIO.parent / name
    policy = CliRunner().invoke(cli, ["matrix", "-f", str(folder), "-o", "csv", "--no-cache"])
    nft = CliRunner().invoke(cli, ["matrix", "-f", str(folder), "-o", "csv", "--no-cache",
                                   "--engine", "reference", "--dataplane", "nftables"])
    assert policy.exit_code == 0 and nft.exit_code == 0, nft.output
    assert nft.stdout == policy.stdout
    assert len(nft.stdout.splitlines()) > 4
