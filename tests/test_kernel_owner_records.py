"""The /run/ctk owner records: kept only while a lab runs, never taken from a live process.

No namespaces are made here (the records live in a temporary folder), so this runs anywhere;
tests/test_kernel_cleanup.py checks the namespaces themselves as root."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tracer.kernel import cleanup


@pytest.fixture
def owner_dir(tmp_path, monkeypatch):
    folder = tmp_path / "ctk"
    monkeypatch.setattr(cleanup, "OWNER_DIR", str(folder))
    monkeypatch.setattr(cleanup, "lab_namespaces", lambda pid=None: [])
    return folder


def record(folder, pid: int, start: str) -> None:
    folder.mkdir(exist_ok=True)
    (folder / str(pid)).write_text(start)


def dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def test_a_released_watchdog_leaves_no_record(owner_dir):
    dog = cleanup.Watchdog()
    dog.start()
    assert (owner_dir / str(os.getpid())).read_text() == cleanup.process_start_time(os.getpid())
    dog.release()
    assert not (owner_dir / str(os.getpid())).exists()


def test_reaping_keeps_live_owners_and_forgets_dead_and_recycled_ones(owner_dir):
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        live = cleanup.process_start_time(sleeper.pid)
        record(owner_dir, sleeper.pid, live)
        record(owner_dir, os.getpid(), cleanup.process_start_time(os.getpid()))
        gone = dead_pid()
        record(owner_dir, gone, "12345")
        # the pid of a live process, recorded with another start time: a recycled pid
        recycled = os.getppid()
        record(owner_dir, recycled, "1")
        cleanup.reap_orphans()
        left = {int(p.name) for p in owner_dir.iterdir()}
        assert left == {sleeper.pid, os.getpid()}
    finally:
        sleeper.kill()
        sleeper.wait()


def test_a_record_rewritten_by_a_new_owner_is_not_forgotten_with_the_old_start(owner_dir):
    record(owner_dir, 4242, "new-start")
    cleanup.forget_owner(4242, "old-start")
    assert (owner_dir / "4242").read_text() == "new-start"
    cleanup.forget_owner(4242, "new-start")
    assert not (owner_dir / "4242").exists()


def test_a_process_whose_stat_is_unreadable_counts_as_alive(monkeypatch):
    def unreadable(*args, **kwargs):
        raise PermissionError("no")
    monkeypatch.setattr("builtins.open", unreadable)
    assert cleanup.process_start_time(os.getpid()) == "?"
    assert cleanup.owner_alive(os.getpid())
