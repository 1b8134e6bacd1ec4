"""The kernel comparison of ``calico-trace bench``: the kernel's counters show the injected
packets walked the ruleset to where the reference interpreter says they end, the records
come out positive, and no namespace is left behind (short runs: this is not a timed test)."""

from __future__ import annotations

import os

import pytest

from tracer.bench import kernel, suite
from tracer.bench.workloads import calico_workload
from tracer.dataplane.ir import Table
from tracer.kernel import cleanup

pytestmark = pytest.mark.root


def test_acl_packets_walk_every_rule_to_the_policy():
    workload, packets = kernel.walking_acl(200, count=32)
    with kernel.Line(workload.iif, workload.oif) as line:
        names = (line.sender, line.router, line.receiver)
        line.route("100.64.0.0/10", "198.18.0.0/15")
        run = kernel.measure(line, workload, packets, seconds=0.2, repeat=1)
        counters = line.counters()
        assert all(os.path.exists(f"/run/netns/{n}") for n in names)
    assert run.decided_by == "FORWARD policy" and run.rate > 0 and run.others == 0
    # every packet went past all 200 rules (none matched) and reached the DROP policy
    assert [counters[("FORWARD", n)] for n in range(1, 201)] == [0] * 200
    assert counters[("FORWARD", None)] >= run.decided > 0
    assert not any(os.path.exists(f"/run/netns/{n}") for n in names)


def test_accept_baseline_forwards_to_the_receiver():
    workload, packets = kernel.walking_acl(10, count=8)
    with kernel.Line(workload.iif, workload.oif) as line:
        line.route("100.64.0.0/10", "198.18.0.0/15")
        run = kernel.measure(line, kernel.empty_forward(workload, "ACCEPT"), packets,
                             seconds=0.2, repeat=1)
    assert run.decided > 0 and run.forwarded >= run.decided * 0.99


def test_calico_probe_is_dropped_at_the_end_of_the_to_workload_chain():
    workload = calico_workload(10, packets=16)
    first = workload.packets[0]
    with kernel.Line(workload.iif, workload.oif) as line:
        line.route(f"{kernel.IPv4Address(int(first['saddr']))}/32",
                   f"{kernel.IPv4Address(int(first['daddr']))}/32")
        run = kernel.measure(line, workload, workload.packets, seconds=0.2, repeat=1)
        counters = line.counters()
    chain, _, number = run.decided_by.split()
    chains = workload.node.ruleset.tables[Table.FILTER]
    assert chain.startswith("cali-tw-") and chains[chain].rules[int(number) - 1].target.name \
        == "DROP"
    decided = counters[(chain, int(number))]
    assert decided >= run.decided > 0 and run.others == 0
    # every policy of every tier was entered by every packet that was dropped at the end
    jumps = [(name, i) for name in chains if name.startswith("cali-gi-")
             for i, r in enumerate(chains[name].rules, 1)
             if getattr(r.target, "chain", "").startswith("cali-pi-")]
    assert len(jumps) == 10
    assert all(counters[j] >= decided for j in jumps)


def test_kernel_records_positive_and_nothing_left_behind():
    plan = suite.Plan((), (), (), 0, 0, 1, kernel_seconds=0.2, kernel_acl_rules=300,
                      kernel_policies=5)
    records = kernel.kernel_records(plan, lambda text: None)
    names = " ".join(r.name for r in records)
    assert "empty FORWARD" in names and "ACL 300 rules" in names and "Calico 5" in names
    assert {r.engine for r in records} == {"kernel", "compiled", "compiled-linear"}
    assert all(r.value > 0 for r in records)
    assert all(r.ratio > 0 for r in records if r.reference_value)
    assert any(r.unit == "ns/rule" for r in records)
    assert cleanup.lab_namespaces(os.getpid()) == []


def test_without_root_the_record_says_why(monkeypatch):
    monkeypatch.setattr(kernel.os, "geteuid", lambda: 1000)
    plan = suite.Plan((), (), (), 0, 0, 1, kernel_seconds=0.2)
    [record] = kernel.kernel_records(plan, lambda text: None)
    assert "needs root" in record.name and record.unit == "not measured"
