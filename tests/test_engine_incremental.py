"""An incremental compile (``compile_node(node, previous=...)``) equals a full one, and it
re-lowers only the chains that changed."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from tracer.bench.workloads import calico_workload
from tracer.dataplane.ir import Chain, Table
from tracer.engine import compile_node, node as engine_node


def _with_chain(node, table, chain):
    tables = dict(node.ruleset.tables)
    tables[table] = {**tables[table], chain.name: chain}
    return replace(node, ruleset=replace(node.ruleset, tables=tables))


def _same_program(a, b):
    for table in a.programs:
        pa, pb = a.programs[table], b.programs[table]
        assert pa.chain_names == pb.chain_names
        for field in ("chains", "rules", "matches", "ranges"):
            assert np.array_equal(getattr(pa, field), getattr(pb, field)), (table, field)
        assert pa.rule_objects == pb.rule_objects


def test_one_changed_policy_recompiles_one_chain(monkeypatch):
    workload = calico_workload(60, packets=64)
    first = compile_node(workload.node)
    filter_chains = workload.node.ruleset.tables[Table.FILTER]
    name = next(n for n in filter_chains if n.startswith("cali-pi-"))
    changed = Chain(name, filter_chains[name].rules[:-1])
    node = _with_chain(workload.node, Table.FILTER, changed)
    lowered = []
    original = engine_node.lower_chain
    monkeypatch.setattr(engine_node, "lower_chain",
                        lambda chain, *a, **k: lowered.append(chain.name) or original(chain, *a,
                                                                                      **k))
    incremental = compile_node(node, previous=first)
    assert lowered == [name]
    monkeypatch.setattr(engine_node, "lower_chain", original)
    _same_program(incremental, compile_node(node))
    batch = workload.packets.copy()
    batch["iif"] = incremental.iface_id(workload.iif)
    oif = incremental.iface_id(workload.oif)
    full = compile_node(node)
    assert np.array_equal(incremental.run_table(Table.FILTER, "FORWARD", batch, oif=oif).rule,
                          full.run_table(Table.FILTER, "FORWARD", batch, oif=oif).rule)
