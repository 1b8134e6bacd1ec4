"""The kernel judges per-node FelixConfiguration: node-2 with its own endpoint-to-host action,
failsafe ports and VXLAN port, realised in network namespaces (each node's own rules and
vxlan.calico device), every probe traced by the simulator too; zero differences."""

from __future__ import annotations

import shutil

import pytest

from tracer.judge import verify as judge_verify
from tracer.judge.verify import Case, run_cases
from tracer.kernel.realise import missing_requirements
from tracer.model.loader import load_cluster
from tracer.trace.assemble import build_dataplane

from test_felix_per_node import NODE_2, SCENARIO
from test_verify_kernel import differences_report

pytestmark = [pytest.mark.root,
              pytest.mark.skipif(missing_requirements() is not None,
                                 reason=str(missing_requirements()))]


def scenario_with(tmp_path, felix_doc: str):
    """The scenario with ``felix_doc`` added: its cluster and dataplane."""
    root = tmp_path / "c"
    shutil.copytree(SCENARIO, root)
    (root / "scenario.yaml").unlink()
    (root / "felix.yaml").write_text(felix_doc)
    cluster = load_cluster([root])
    return cluster, build_dataplane(cluster, version="3.32")


def test_per_node_config_agrees_with_kernel(tmp_path):
    cluster, dataplane = scenario_with(tmp_path, NODE_2)
    pairs = judge_verify.all_pairs(cluster, hosts=True)
    cases = [Case(src, dst, "tcp", port) for src, dst in pairs for port in (80, 10250)]
    results = run_cases(dataplane, cases)
    checked = [r for r in results if not r.skipped]
    assert len(checked) >= len(cases) // 2, [r.skipped for r in results if r.skipped][:3]
    report = differences_report(results)
    assert not report, f"simulator and kernel differ\n{report}"
    verdicts = {(r.case.source, r.case.destination, r.case.port): r.simulated.verdict
                for r in checked}
    # node-2's pods reach their host (Accept), node-1's do not (default Drop).
    to_host = {key: v for key, v in verdicts.items() if key[0] in cluster.endpoints
               and key[1] == f"{judge_verify.NODE}{cluster.endpoints[key[0]].pod.node}"}
    assert len(to_host) == 6, sorted(verdicts)
    for (src, host, _), verdict in to_host.items():
        assert (verdict == "dropped") == host.endswith("node-1"), (src, host, verdict)
    # Across the nodes the VXLAN ports disagree: lost in the kernel as in the simulator.
    across = [r for r in checked if r.case.source in cluster.endpoints
              and r.case.destination in cluster.endpoints
              and cluster.endpoints[r.case.source].pod.node
              != cluster.endpoints[r.case.destination].pod.node]
    assert across and all(r.simulated.verdict == "dropped" for r in across)


def test_a_vni_differing_per_node_is_lost_in_the_kernel_too(tmp_path):
    from test_felix_per_node import NODE_2_VNI
    cluster, dataplane = scenario_with(tmp_path, NODE_2_VNI)
    cases = [Case(src, dst, "tcp", 6379) for src, dst in judge_verify.all_pairs(cluster)
             if cluster.endpoints[src].pod.node != cluster.endpoints[dst].pod.node]
    results = run_cases(dataplane, cases)
    checked = [r for r in results if not r.skipped]
    assert checked and not differences_report(results), differences_report(results)
    assert all(r.simulated.verdict == "dropped" for r in checked)
