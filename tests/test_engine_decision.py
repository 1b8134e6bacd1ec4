"""The bit-vector decision structure returns exactly the first matching rule.

Chains of field tests only (protocol, addresses, ports, ``-m tcp``, limit; ``!`` included) with
every kind of target, the structure forced on for short chains too, against the reference
interpreter; a ClassBench-style ACL of 2,000 rules through the batch API; and the bit scan.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from test_engine_differential import (CHAINS, cidrs, node_with, pins, port_ranges, targets,
                                      views)
from tracer.bench.workloads import acl_workload
from tracer.dataplane.events import EFFECTS
from tracer.dataplane.interpreter import PacketView, run_hook
from tracer.dataplane.ir import (AddressMatch, Chain, LimitMatch, PortMatch, ProtocolMatch,
                                 ProtocolModuleMatch, Rule, Table)
from tracer.dataplane.state import NO_PINS
from tracer.engine import compile_node, decision

FIELD_MATCHES = st.one_of(
    st.builds(ProtocolMatch, st.sampled_from((0, 1, 6, 17)), st.booleans()),
    st.builds(AddressMatch, st.sampled_from(("src", "dst")), cidrs(), st.booleans()),
    st.builds(PortMatch, st.sampled_from(("src", "dst")), port_ranges(), st.booleans()),
    st.builds(ProtocolModuleMatch, st.sampled_from(("tcp", "udp", "icmp"))),
    st.builds(LimitMatch, st.just("1/sec")),
)


def field_chain(index: int):
    rules = st.lists(st.builds(Rule, st.lists(FIELD_MATCHES, max_size=4).map(tuple),
                               targets(index)), min_size=1, max_size=40).map(tuple)
    policy = st.sampled_from(("ACCEPT", "DROP")) if index == 0 else st.none()
    return st.builds(Chain, st.just(CHAINS[index]), rules, policy)


@settings(max_examples=300, deadline=None,
          suppress_health_check=(HealthCheck.too_slow, HealthCheck.data_too_large,
                                 HealthCheck.function_scoped_fixture))
@given(st.tuples(*(field_chain(i) for i in range(len(CHAINS)))),
       st.lists(views, min_size=1, max_size=8), pins)
def test_classified_chains_walk_like_the_reference(monkeypatch, chains, packets, run_pins):
    monkeypatch.setattr(decision, "MIN_RULES", 1)
    node = node_with(chains, None)
    compiled = compile_node(node)
    assert (compiled.programs[Table.FILTER].classifiers.of_chain >= 0).all()
    for view in packets:
        ref_view, fast_view = replace(view), replace(view)
        env = node.environment(run_pins)
        ref = run_hook(node.ruleset, Table.FILTER, "FORWARD", ref_view, env)
        assert compiled.run_view(Table.FILTER, "FORWARD", fast_view, env) == ref
        assert fast_view.mark == ref_view.mark


def test_a_classbench_acl_decides_like_the_reference():
    workload = acl_workload(2000, seed=7, packets=600)
    compiled = compile_node(workload.node)
    assert compiled.programs[Table.FILTER].classifiers.of_chain.max() == 0
    batch = workload.packets.copy()
    batch["iif"] = compiled.iface_id(workload.iif)
    out = compiled.run_table(Table.FILTER, "FORWARD", batch, oif=compiled.iface_id(workload.oif))
    env = workload.node.environment(NO_PINS)
    decided = set()
    for i, row in enumerate(batch):
        view = PacketView(int(row["saddr"]), int(row["daddr"]), int(row["protocol"]),
                          int(row["sport"]), int(row["dport"]), None, None,
                          int(row["tcp_flags"]) if row["tcp_flags"] >= 0 else None,
                          workload.iif, workload.oif, 0, "NEW")
        ref = run_hook(workload.node.ruleset, Table.FILTER, "FORWARD", view, env)
        number = ref.deciding.rule_number or 0
        assert (EFFECTS[out.effect[i]], int(out.rule[i])) == (ref.verdict, number)
        decided.add(number)
    assert len(decided) > 40                   # packets stop all along the chain


@pytest.mark.parametrize("bit", [0, 1, 5, 31, 32, 62, 63])
def test_lowest_bit(bit):
    x = np.uint64(1) << np.uint64(bit)
    assert decision._lowest_bit(x | (x << np.uint64(1) if bit < 63 else x)) == bit
