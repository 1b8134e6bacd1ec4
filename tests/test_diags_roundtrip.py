"""Done-when of issue #15: a node's ``calicoctl node diags`` bundle, made by running
calicoctl's own commands (``iptables-save -c``, ``ipset list``, ``ip -4 route``, ``ip -4 addr``)
inside the project's realisation of every bundled scenario, traces WITHOUT manifests to the same
verdicts and the same rule sequences as the manifest-based trace."""

from __future__ import annotations

import json
from pathlib import Path

import bundled
import pytest
from click.testing import CliRunner

from tracer.cli import cli
from tracer.judge.topology import lab_plan
from tracer.kernel.diags import node_diags, write_bundle
from tracer.kernel.realise import KernelLab, missing_requirements
from tracer.model.loader import load_cluster, load_scenario_meta
from tracer.policy.felix.versions import resolve_version
from tracer.trace.assemble import build_dataplane

pytestmark = [pytest.mark.root,
              pytest.mark.skipif(missing_requirements() is not None,
                                 reason=str(missing_requirements()))]

SCENARIOS = bundled.SCENARIOS


def _json(args: list[str]) -> dict:
    res = CliRunner().invoke(cli, ["packet", *args, "--output", "json"],
                             catch_exceptions=False)
    assert res.exit_code == 0, res.output
    return json.loads(res.stdout)


def _rules(data: dict) -> list[tuple]:
    return [(h["node"], h["table"], h["chain"], h["rule"], h["action"])
            for h in data["hops"] if h["stage"] == "netfilter"]


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda p: p.name)
def test_bundle_traces_like_the_manifests(scenario, tmp_path):
    cluster = load_cluster([scenario])
    dataplane = build_dataplane(cluster, version=resolve_version(cluster, None))
    plan = lab_plan(dataplane)
    with KernelLab(plan.spec) as lab:
        bundles = {node: write_bundle(node_diags(lab, node), tmp_path / node)
                   for node in sorted(cluster.nodes)}
    diags = [arg for node, path in bundles.items() for arg in ("--diags", f"{node}={path}")]
    compared = 0
    for case in load_scenario_meta(scenario)["expect"]:
        src, dst = cluster.pods[case["from"]], cluster.pods[case["to"]]
        if plan.crosses_missing_device(src.node, dst.node):
            continue    # the lab could not build this path's tunnel (see the test below)
        probe = ["--protocol", case["protocol"].lower(), "--port", str(case["port"])]
        by_manifest = _json(["-f", str(scenario), "--from", case["from"], "--to", case["to"],
                             *probe])
        by_bundle = _json([*diags, "--from", str(src.ip), "--to", str(dst.ip), *probe])
        assert by_bundle["verdict"] == by_manifest["verdict"], case
        assert by_bundle["reason"] == by_manifest["reason"], case
        assert _rules(by_bundle) == _rules(by_manifest), case
        assert by_bundle["delivered_to"] is None or by_manifest["delivered_to"] is not None
        compared += 1
    if compared == 0:
        pytest.skip(f"the kernel has no module for {scenario.name}'s tunnel: "
                    f"{'; '.join(plan.unbuildable)}")


def test_a_bundle_folder_reads_like_its_tarball(tmp_path):
    scenario = next(p for p in SCENARIOS if p.name == "default-deny-ingress")
    cluster = load_cluster([scenario])
    plan = lab_plan(build_dataplane(cluster, version=resolve_version(cluster, None)))
    with KernelLab(plan.spec) as lab:
        node = sorted(cluster.nodes)[0]
        files = node_diags(lab, node)
    tarball = write_bundle(files, tmp_path / "tar")
    folder = tmp_path / "unpacked" / "diagnostics"
    folder.mkdir(parents=True)
    for name, text in files.items():
        (folder / name).write_text(text)
    case = load_scenario_meta(scenario)["expect"][0]
    src, dst = cluster.pods[case["from"]], cluster.pods[case["to"]]
    args = ["--from", str(src.ip), "--to", str(dst.ip), "--port", str(case["port"])]
    from_tar = _json(["--diags", str(tarball), *args])          # node from the hostname file
    from_folder = _json(["--diags", f"{node}={folder.parent}", *args])
    assert _rules(from_tar) == _rules(from_folder)
    assert from_tar["verdict"] == ("allowed" if case["allowed"] else "dropped")
