"""`calico-trace conntrack`: connections opened through the dataplane, listed per node."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

from tracer.cli import cli

SCENARIO = str(Path(__file__).resolve().parent.parent / "scenarios" / "multinode-ipip")


def run(*args):
    return CliRunner().invoke(cli, ["conntrack", "-f", SCENARIO, *args], catch_exceptions=False)


def test_lists_each_nodes_table_in_conntrack_format():
    res = run("--connect", "shop/frontend-7d4b9,shop/backend-5f8c2,tcp/6379",
              "--connect", "shop/batch-2k9xq,shop/backend-5f8c2,tcp/6379")
    assert res.exit_code == 0
    out = res.stdout
    node1 = out.split("# node node-2")[0]
    assert ("tcp      6 431999 ESTABLISHED src=10.244.0.1 dst=10.244.0.65 sport=40000 "
            "dport=6379 src=10.244.0.65 dst=10.244.0.1 sport=6379 dport=40000 [ASSURED] "
            "mark=0 use=1") in node1
    # The denied connection left nothing behind: its SYN's entry was never confirmed.
    assert "dport=6379" not in out.replace("sport=40000 dport=6379", "")
    assert "SYN dropped on node-2 [default-deny]" in res.stderr


def test_close_leaves_time_wait_and_wait_expires_it():
    res = run("--connect", "shop/frontend-7d4b9,shop/backend-5f8c2,tcp/6379", "--close",
              "--node", "node-2")
    assert " TIME_WAIT " in res.stdout
    aged = run("--connect", "shop/frontend-7d4b9,shop/backend-5f8c2,tcp/6379", "--close",
               "--node", "node-2", "--wait", "121")
    assert "TIME_WAIT" not in aged.stdout


def test_bad_connection_spec_is_a_one_line_error():
    proc = subprocess.run([sys.executable, "-c", "from tracer.cli import main; main()",
                           "conntrack", "-f", SCENARIO, "--connect", "nonsense"],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "--connect" in proc.stderr
