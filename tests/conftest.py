"""Fixtures shared by the kernel-facing tests."""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess

import pytest

NETNS_BINARIES = ("ip", "ipset", "iptables-restore", "iptables-save")


def netns_skip_reason() -> str | None:
    """Why a throwaway network namespace with iptables cannot be had here, or None."""
    if os.geteuid() != 0:
        return "needs root for network namespaces"
    missing = [tool for tool in NETNS_BINARIES if shutil.which(tool) is None]
    return f"{', '.join(missing)} not installed" if missing else None


@pytest.fixture
def netns():
    """A fresh network namespace (never the host's tables), deleted afterwards."""
    reason = netns_skip_reason()
    if reason:
        pytest.skip(reason)
    name = f"cttest-{secrets.token_hex(4)}"
    subprocess.run(["ip", "netns", "add", name], check=True, timeout=30)
    try:
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False, timeout=30)


def in_netns(ns: str, *argv: str, stdin: str | None = None) -> str:
    """Run a command inside ``ns``; fail the test with its stderr if it fails."""
    done = subprocess.run(["ip", "netns", "exec", ns, *argv], input=stdin, text=True,
                          capture_output=True, timeout=60)
    assert done.returncode == 0, f"{' '.join(argv)} failed: {done.stderr}"
    return done.stdout


# As root (CI, after `make test` installed the tools) a skipped test is a failure: a missing
# tool or capability must not turn into green. The one honest skip is a kernel that lacks the
# module (this machine's kernel has no ipip or wireguard).
KERNEL_LACKS = "kernel has no"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if not report.skipped or os.geteuid() != 0 or hasattr(report, "wasxfail"):
        return
    reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
    if KERNEL_LACKS in reason:
        return
    report.outcome = "failed"
    report.longrepr = (f"skipped while running as root: {reason}\n(as root every tool "
                       "`make test` installs must be present; only a kernel without the "
                       "module may skip)")


def pytest_addoption(parser):
    parser.addoption("--update-golden", action="store_true", default=False,
                     help="Rewrite tests/golden/ from the current output instead of comparing.")


@pytest.fixture
def update_golden(request) -> bool:
    return request.config.getoption("--update-golden")
