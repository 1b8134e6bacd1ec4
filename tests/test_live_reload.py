"""SIGHUP re-reads the manifests: new connections follow the new policy, while a connection
opened before the change keeps working (conntrack is kept, as on a node when felix rewrites
its chains)."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess

import pytest

from live_helpers import LiveRun, wait_until

pytestmark = pytest.mark.root

ECHO_SERVER = """
import socket
srv = socket.socket(); srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("0.0.0.0", 6379)); srv.listen(8)
while True:
    conn, _ = srv.accept()
    while (data := conn.recv(100)):
        conn.sendall(data)
    conn.close()
"""

# Talks once, waits for the test to change the policy, talks again on the same connection.
CLIENT = """
import os, socket, sys, time
s = socket.create_connection((sys.argv[1], 6379), timeout=5)
s.sendall(b"one"); print(s.recv(100).decode(), flush=True)
while not os.path.exists(sys.argv[2]): time.sleep(0.05)
s.sendall(b"two"); print(s.recv(100).decode(), flush=True)
"""


def test_sighup_applies_new_policy_to_new_flows_only(tmp_path):
    manifests = tmp_path / "manifests"
    shutil.copytree(LiveRun.scenario_dir("backend-from-frontend"), manifests)
    run = LiveRun("backend-from-frontend", tmp_path / "run", manifests).start()
    try:
        ips = {k: p["ip"] for k, p in json.loads((run.env_dir / "live.json").read_text())
               ["pods"].items()}
        backend = ips["myns/backend"]
        run.background("myns/backend", "python3", "-c", ECHO_SERVER)
        flag = tmp_path / "policy-changed"
        client = None
        assert wait_until(lambda: run.exec("myns/frontend", "python3", "-c",
                                           "import socket,sys; socket.create_connection("
                                           f"('{backend}', 6379), timeout=1)").returncode == 0,
                          timeout=10)
        client = subprocess.Popen([*run.cli_argv, "exec", "myns/frontend", "--", "python3",
                                   "-c", CLIENT, backend, str(flag)], stdout=subprocess.PIPE,
                                  text=True, env=run.env)
        assert client.stdout.readline().strip() == "one"
        policy = manifests / "policy.yaml"
        policy.write_text(policy.read_text().replace("port: 6379", "port: 6380"))
        run.proc.send_signal(signal.SIGHUP)
        assert wait_until(lambda: "reload: manifests re-read" in run.output(), timeout=10), \
            run.output()
        refused = run.exec("myns/frontend", "curl", "-sS", "-m", "1.5",
                           f"http://{backend}:6379/")
        assert refused.returncode != 0, "a new connection must follow the new policy"
        flag.touch()
        assert client.stdout.readline().strip() == "two", "the open connection was cut"
        assert client.wait(timeout=10) == 0
    finally:
        run.stop()
