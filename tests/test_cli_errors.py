"""Bad input through the real entry point: one line naming file, object and problem, exit
status 2, never a traceback — for every command."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

SCENARIO = Path(__file__).resolve().parent.parent / "scenarios" / "backend-from-frontend"

BROKEN = {
    "broken YAML": ("kind: Pod\n  metadata: [\n", "line 2"),
    "unknown field": ("apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: "
                      "{name: db, namespace: myns}\nspec: {podSelectr: {}}\n", "podSelectr"),
    "invalid selector": ("apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\n"
                         "metadata: {name: g}\nspec: {selector: \"app == 'x\"}\n", "column"),
    "unknown port name": ("apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: "
                          "{name: db, namespace: myns}\nspec:\n  podSelector: {}\n  ingress:\n"
                          "  - ports: [{port: nosuchport}]\n", "nosuchport"),
    "pod on a missing node": ("apiVersion: v1\nkind: Pod\nmetadata: {name: p, namespace: myns}\n"
                              "spec: {nodeName: node-9, containers: [{name: c, image: x}]}\n",
                              "node-9"),
}

COMMANDS = {
    "matrix": [],
    "packet": ["--from", "myns/frontend", "--to", "myns/backend"],
    "render": ["--node", "node-1"],
    "conntrack": ["--connect", "myns/frontend,myns/backend,tcp/6379"],
}


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", "from tracer.cli import main; main()", *args],
                          capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("command", sorted(COMMANDS))
@pytest.mark.parametrize("case", sorted(BROKEN))
def test_bad_manifest_is_one_line_and_exit_2(tmp_path, command, case):
    text, needle = BROKEN[case]
    bad = tmp_path / "bad.yaml"
    bad.write_text(text)
    proc = run(command, "-f", str(SCENARIO), "-f", str(bad), *COMMANDS[command])
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr
    assert str(bad) in lines[0] and needle in lines[0]


@pytest.mark.parametrize("args, needle", [
    (["packet", "--from", "myns/nobody", "--to", "myns/backend"], "myns/nobody"),
    (["packet", "--from", "myns/frontend", "--to", "svc/myns/none"], "none"),
    (["render", "--node", "node-9"], "node-9"),
    (["packet", "--from", "myns/frontend", "--to", "myns/backend", "--calico-version", "2.6"],
     "2.6"),
])
def test_bad_arguments_are_one_line_and_exit_2(args, needle):
    proc = run(args[0], "-f", str(SCENARIO), *args[1:])
    assert proc.returncode == 2
    assert len(proc.stderr.strip().splitlines()) == 1 and needle in proc.stderr


def test_truncated_dump_is_one_line_and_exit_2(tmp_path):
    dump = tmp_path / "node.iptables-save"
    dump.write_text("*filter\n:FORWARD ACCEPT [0:0]\n-A FORWARD -j cali-FORW")
    proc = run("packet", "-f", str(SCENARIO), "--iptables-save", str(dump), "--from",
               "myns/frontend", "--to", "myns/backend")
    assert proc.returncode == 2 and str(dump) in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
