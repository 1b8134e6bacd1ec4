"""Namespaces of the kernel judge are removed however the owning process ends."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from ipaddress import IPv4Interface

import pytest
from pyroute2 import netns as pyroute2_netns

from tracer.errors import InputError
from tracer.kernel import nsexec
from tracer.kernel.cleanup import lab_namespaces, reap_orphans
from tracer.kernel.realise import KernelLab, missing_requirements
from kernel_samples import one_node_topology
from tracer.kernel.topology import NodeSpec, TopologySpec

pytestmark = [pytest.mark.root,
              pytest.mark.skipif(missing_requirements() is not None,
                                 reason=str(missing_requirements()))]

CHILD = """
import signal, sys, time
signal.signal(signal.SIGINT, signal.default_int_handler)   # as an interactive CLI has it
from tracer.kernel.realise import KernelLab
from kernel_samples import one_node_topology
try:
    with KernelLab(one_node_topology()) as lab:
        print("READY", *lab.ns.all(), flush=True)
        time.sleep(120)
except KeyboardInterrupt:
    sys.exit(130)
"""


def start_lab_process() -> tuple[subprocess.Popen, list[str]]:
    # The child imports the test samples, as this module does: give it the tests folder.
    tests_dir = os.path.dirname(os.path.abspath(__file__))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        filter(None, [tests_dir, os.environ.get("PYTHONPATH")]))}
    proc = subprocess.Popen([sys.executable, "-c", CHILD], stdout=subprocess.PIPE, text=True,
                            env=env)
    line = proc.stdout.readline().split()
    assert line and line[0] == "READY", f"child did not build its lab (exit {proc.poll()})"
    return proc, line[1:]


def wait_until_gone(pid: int, deadline_s: float = 20.0) -> list[str]:
    end = time.monotonic() + deadline_s
    while lab_namespaces(pid) and time.monotonic() < end:
        time.sleep(0.1)
    return lab_namespaces(pid)


@pytest.mark.parametrize("signum", [signal.SIGKILL, signal.SIGINT, signal.SIGTERM],
                         ids=["SIGKILL", "SIGINT", "SIGTERM"])
def test_namespaces_vanish_when_the_owner_is_signalled(signum):
    proc, names = start_lab_process()
    try:
        assert len(names) == 5 and set(names) <= set(lab_namespaces(proc.pid))
        os.kill(proc.pid, signum)
        code = proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert code == {signal.SIGKILL: -9, signal.SIGINT: 130, signal.SIGTERM: 143}[signum]
    assert wait_until_gone(proc.pid) == []


def test_namespaces_vanish_when_the_body_raises():
    with pytest.raises(RuntimeError, match="boom"):
        with KernelLab(one_node_topology()) as lab:
            names = lab.ns.all()
            assert set(names) <= set(lab_namespaces(os.getpid()))
            raise RuntimeError("boom")
    assert not set(names) & set(lab_namespaces())


def test_a_ruleset_the_kernel_refuses_is_an_input_error_and_leaves_nothing():
    spec = TopologySpec(nodes=(NodeSpec("node-1", IPv4Interface("172.18.0.11/24"),
                                        iptables="*filter\n-A NOPE -j ACCEPT\nCOMMIT\n"),))
    before = set(lab_namespaces(os.getpid()))
    with pytest.raises(InputError, match="node-1: kernel refused the ruleset"):
        with KernelLab(spec):
            pass
    assert set(lab_namespaces(os.getpid())) == before


def test_orphans_of_dead_owners_are_reaped_with_their_processes():
    dead = subprocess.Popen(["true"])
    dead.wait()
    name = f"ctk-{dead.pid}-1"
    pyroute2_netns.create(name)
    sleeper = nsexec.popen(name, ["sleep", "60"])
    try:
        assert name in lab_namespaces(dead.pid)
        reaped = reap_orphans()
        assert name in reaped and name not in lab_namespaces()
        assert sleeper.wait(timeout=10) == -signal.SIGKILL
    finally:
        if sleeper.poll() is None:
            sleeper.kill()
        if name in lab_namespaces():
            pyroute2_netns.remove(name)


def test_live_owners_are_left_alone():
    with KernelLab(one_node_topology()) as lab:
        reap_orphans()
        assert set(lab.ns.all()) <= set(lab_namespaces(os.getpid()))
