"""``up`` leaves nothing behind however it ends: `down`, Ctrl-C, SIGTERM, SIGKILL; and the
host's interfaces and routes are as they were. Bad input is one line and exit status 2."""

from __future__ import annotations

import os
import signal

import pytest

from live_helpers import LiveRun, host_network_view, wait_until
from tracer.kernel.cleanup import process_start_time

pytestmark = pytest.mark.root

SCENARIO = "backend-from-frontend"


@pytest.fixture
def run(tmp_path):
    before = host_network_view()
    live = LiveRun(SCENARIO, tmp_path).start()
    try:
        assert len(live.namespaces) == 5      # 3 pods, the node and the external host
    except AssertionError:
        live.stop(signal.SIGKILL)
        raise
    yield live
    live.stop(signal.SIGKILL)
    assert wait_until(lambda: not live.namespaces)
    assert host_network_view() == before, "the host's interfaces or routes changed"


def _program_in_pod(run: LiveRun) -> int:
    """Start a long-running program in a pod; its pid (it must die with the namespace)."""
    pid = run.background("myns/backend", "sleep", "60").pid    # exec replaces itself

    def running_sleep() -> bool:
        try:
            return open(f"/proc/{pid}/comm").read().strip() == "sleep"
        except OSError:
            return False

    assert wait_until(running_sleep, timeout=10)
    return pid


def test_sigkill_leaves_no_namespace(run):
    sleeper = _program_in_pod(run)
    names = run.namespaces
    run.stop(signal.SIGKILL)
    assert wait_until(lambda: not any(os.path.exists(f"/run/netns/{n}") for n in names),
                      timeout=5.0), f"namespaces left after SIGKILL: {run.namespaces}"
    assert wait_until(lambda: process_start_time(sleeper) is None, timeout=5.0)
    down = run.cli("down")                    # the stale state file is cleared too
    assert down.returncode == 0 and "already ended" in down.stdout
    assert not (run.env_dir / "live.json").exists()


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_sigterm_and_ctrl_c_remove_everything(run, signum):
    names = run.namespaces
    status = run.stop(signum)
    assert status != 0                         # interrupted, not a normal end
    assert not any(os.path.exists(f"/run/netns/{n}") for n in names)
    assert not (run.env_dir / "live.json").exists()
    assert "down: read" in run.output()       # the loop's summary: it unwound cleanly


def test_down_stops_up_and_removes_its_namespaces(run):
    names = run.namespaces
    done = run.cli("down")
    assert done.returncode == 0, done.stderr
    assert run.proc.wait(timeout=10) is not None
    assert not any(os.path.exists(f"/run/netns/{n}") for n in names)
    after = run.cli("exec", "myns/frontend", "--", "true")
    assert after.returncode == 2 and "no calico-trace up is running" in after.stderr


def test_bad_input_is_one_line(run):
    unknown = run.exec("myns/nobody", "true")
    assert unknown.returncode == 2
    assert unknown.stderr.count("\n") == 1 and "myns/nobody" in unknown.stderr
    missing = run.exec("myns/frontend", "no-such-program-here")
    assert missing.returncode == 2 and "no-such-program-here" in missing.stderr
    second = run.cli("up", "-f", str(LiveRun.scenario_dir(SCENARIO)))
    assert second.returncode == 2 and "already running" in second.stderr
    absent = run.cli("up", "-f", "/nonexistent/manifests.yaml")
    assert absent.returncode == 2 and "/nonexistent/manifests.yaml" in absent.stderr
