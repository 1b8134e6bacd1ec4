"""Drive a real ``calico-trace up`` from tests: start it, run programs in its pods, stop it.

Each run gets its own state directory (``CALICO_TRACE_RUN_DIR``), so tests never see another
run's state file.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import yaml

from tracer.kernel.cleanup import lab_namespaces

REPO = Path(__file__).resolve().parent.parent
SCENARIOS = REPO / "scenarios"
CLI = [sys.executable, "-c", "from tracer.cli import main; main()"]
READY_TIMEOUT = 120.0


def expectations(scenario: str) -> list[dict]:
    return yaml.safe_load((SCENARIOS / scenario / "scenario.yaml").read_text())["expect"]


def host_network_view() -> tuple[str, str, str]:
    """The host's interfaces, routes and iptables rules (no counters), to check a run left
    them as they were."""
    links = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True,
                           check=True).stdout
    names = sorted(line.split(":")[1].strip() for line in links.splitlines())
    routes = subprocess.run(["ip", "route", "show", "table", "all"], capture_output=True,
                            text=True, check=True).stdout
    rules = subprocess.run(["iptables", "-S"], capture_output=True, text=True,
                           check=True).stdout
    return "\n".join(names), routes, rules


class LiveRun:
    """A ``calico-trace up`` subprocess on one bundled scenario."""

    cli_argv = CLI

    def __init__(self, scenario: str, run_dir: Path, manifests: Path | None = None) -> None:
        self.scenario = scenario
        self.manifests = manifests or SCENARIOS / scenario
        self.env_dir = run_dir
        self.env = {**os.environ, "CALICO_TRACE_RUN_DIR": str(run_dir)}
        self.log = run_dir / "test-up.out"
        self.proc: subprocess.Popen | None = None

    @staticmethod
    def scenario_dir(scenario: str) -> Path:
        return SCENARIOS / scenario

    def start(self) -> "LiveRun":
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log, "w") as out:
            self.proc = subprocess.Popen(
                [*CLI, "up", "-f", str(self.manifests), "--no-cache"],
                stdout=out, stderr=subprocess.STDOUT, env=self.env, cwd=REPO)
        deadline = time.monotonic() + READY_TIMEOUT
        try:
            while "up: ready" not in self.output():
                assert self.proc.poll() is None, f"up exited early:\n{self.output()}"
                assert time.monotonic() < deadline, f"up not ready:\n{self.output()}"
                time.sleep(0.05)
        except BaseException:
            self.stop()                # a failed start must not leave up running
            raise
        return self

    def output(self) -> str:
        return self.log.read_text() if self.log.exists() else ""

    @property
    def namespaces(self) -> list[str]:
        assert self.proc is not None
        return lab_namespaces(self.proc.pid)

    def cli(self, *args: str, timeout: float = 30.0) -> subprocess.CompletedProcess:
        return subprocess.run([*CLI, *args], capture_output=True, text=True, env=self.env,
                              cwd=REPO, timeout=timeout)

    def exec(self, pod: str, *argv: str, timeout: float = 15.0) -> subprocess.CompletedProcess:
        return self.cli("exec", pod, "--", *argv, timeout=timeout)

    def background(self, pod: str, *argv: str) -> subprocess.Popen:
        """A long-running program in ``pod`` (a server); removed with the pod's namespace."""
        return subprocess.Popen([*CLI, "exec", pod, "--", *argv], stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, env=self.env, cwd=REPO)

    def stop(self, signum: int = signal.SIGTERM) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signum)
        return self.proc.wait(timeout=30)


def wait_until(check, timeout: float = 5.0, step: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(step)
    return check()
