"""The lazy node renderer equals the eager one: every chain and ipset it builds on demand, the
tables' names and order, and the traces of the bundled scenarios' packets; and a trace builds
only what the packet reaches."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import bundled
import pytest

from tracer.dataplane.ir import Ruleset, Table
from tracer.explain import explain
from tracer.model.loader import load_cluster, load_scenario_meta
from tracer.policy.felix.facts import ClusterFacts
from tracer.policy.felix.lazy_render import render_node_lazy
from tracer.policy.felix.render import render_node_eager
from tracer.policy.felix.versions import resolve_version
from tracer.render.trace_text import render_text
from tracer.trace.assemble import build_dataplane
from tracer.trace.tracing import TraceRequest, trace_packet

ROOT = Path(__file__).resolve().parent.parent
RENDERED = [p for p in (*bundled.SCENARIOS, *bundled.LABS)]


def _both(cluster, node, version):
    facts = ClusterFacts(cluster)
    eager_calls = []

    def eager():
        eager_calls.append(1)
        return render_node_eager(cluster, node, version=version, facts=facts)
    lazy = render_node_lazy(cluster, node, version=version, facts=facts, eager=eager)
    return lazy, render_node_eager(cluster, node, version=version, facts=facts), eager_calls


def _assert_built_equal(lazy: Ruleset, eager: Ruleset) -> None:
    for table in Table:
        for name in lazy.tables[table].built:
            assert lazy.tables[table][name] == eager.tables[table][name], (table, name)
    for name in lazy.ipsets.built:
        assert lazy.ipsets[name] == eager.ipsets[name], name


def _walk_everything(lazy: Ruleset) -> None:
    """Build every chain reachable from the kernel chains by following jumps, as packets do,
    and every ipset the built rules match on."""
    from tracer.dataplane.ir import Goto, Jump, SetMatch
    from tracer.dataplane.ir import BUILTIN_CHAINS
    for table in Table:
        stack = list(BUILTIN_CHAINS[table])
        seen = set()
        while stack:
            name = stack.pop()
            if name in seen:
                continue
            seen.add(name)
            for rule in lazy.tables[table][name].rules:
                if isinstance(rule.target, (Jump, Goto)):
                    stack.append(rule.target.chain)
                for match in rule.matches:
                    if isinstance(match, SetMatch):
                        assert match.set_name in lazy.ipsets
                        lazy.ipsets[match.set_name]


@pytest.mark.parametrize("scenario", RENDERED, ids=lambda p: p.name)
def test_lazy_chains_equal_eager(scenario: Path):
    cluster = load_cluster([scenario])
    version = resolve_version(cluster, None)
    for node in sorted(cluster.nodes):
        lazy, eager, eager_calls = _both(cluster, node, version)
        _walk_everything(lazy)
        assert not eager_calls, "following jumps needed the eager rendering"
        _assert_built_equal(lazy, eager)
        for table in Table:        # the reachable chains are every chain eager programs
            assert set(lazy.tables[table].built) == set(eager.tables[table]), (node, table)
        # names no jump reaches: answered like the eager ruleset, iteration in its order
        assert "cali-no-such-chain" not in lazy.tables[Table.FILTER]
        assert "FORWARD" not in lazy.tables[Table.NAT]
        assert "no-such-set" not in lazy.ipsets
        for table in Table:
            assert list(lazy.tables[table]) == list(eager.tables[table])
        assert list(lazy.ipsets) == list(eager.ipsets)
        assert len(lazy.ipsets) == len(eager.ipsets)


def _traces(scenario: Path, render) -> list[str]:
    import tracer.trace.assemble as assemble
    cluster = load_cluster([scenario])
    original = assemble.render_node
    assemble.render_node = render
    try:
        dataplane = build_dataplane(cluster, version=resolve_version(cluster, None))
        out = []
        for case in load_scenario_meta(scenario).get("expect", []):
            request = TraceRequest(case["from"], case["to"], protocol=case["protocol"].lower(),
                                   port=case.get("port"))
            out.append(render_text(explain(dataplane, trace_packet(dataplane, request)),
                                   "detailed"))
        return out
    finally:
        assemble.render_node = original


@pytest.mark.parametrize("scenario", bundled.SCENARIOS, ids=lambda p: p.name)
def test_lazy_traces_equal_eager(scenario: Path):
    lazy = _traces(scenario, __import__("tracer.policy.felix", fromlist=["render_node"])
                   .render_node)
    assert lazy == _traces(scenario, render_node_eager)


def test_generated_cluster_lazy_equals_eager(tmp_path: Path):
    """A generated cluster (many policies per endpoint, groups): a trace builds a few of the
    node's chains, each equal to the eager one, and never the whole node."""
    out = tmp_path / "c"
    said = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gen_cluster.py"),
                           "--pods", "300", "--policies", "300", "--out", str(out)],
                          capture_output=True, text=True, check=True).stdout
    src, dst = said.split("--from ")[1].split(" --to ")
    cluster = load_cluster([out])
    version = resolve_version(cluster, None)
    dataplane = build_dataplane(cluster, version=version)
    for port in (8080, 9090, 53):
        trace_packet(dataplane, TraceRequest(src, dst.strip(), protocol="tcp", port=port))
    facts = ClusterFacts(cluster)
    for name in dataplane.nodes.built:
        lazy = dataplane.nodes[name].ruleset
        eager = render_node_eager(cluster, name, version=version, facts=facts)
        built = lazy.tables[Table.FILTER].built
        assert built and len(built) < len(eager.tables[Table.FILTER]) / 4, name
        _assert_built_equal(lazy, eager)
    # and the whole of one node, walked chain by chain
    node = sorted(cluster.nodes)[0]
    lazy, eager, eager_calls = _both(cluster, node, version)
    _walk_everything(lazy)
    assert not eager_calls
    _assert_built_equal(lazy, eager)
    for table in Table:
        assert set(lazy.tables[table].built) == set(eager.tables[table])


@pytest.mark.parametrize("scenario", bundled.SCENARIOS, ids=lambda p: p.name)
def test_traces_never_render_a_node_whole(scenario: Path, monkeypatch):
    """Tracing the expected packets (kube-proxy's chains merged in where the scenario has
    Services) follows jumps only: the eager rendering is never asked for."""
    import tracer.policy.felix.render as render

    def refuse(*args, **kwargs):
        raise AssertionError("a trace rendered a node whole")
    monkeypatch.setattr(render, "render_node_eager", refuse)
    cluster = load_cluster([scenario])
    dataplane = build_dataplane(cluster, version=resolve_version(cluster, None))
    for case in load_scenario_meta(scenario).get("expect", []):
        request = TraceRequest(case["from"], case["to"], protocol=case["protocol"].lower(),
                               port=case.get("port"))
        explain(dataplane, trace_packet(dataplane, request))
    assert dataplane.nodes.built
