"""matrix's streamed pair formats say exactly what the matrix holds, the filters keep exactly
the pods they name, and misuse is one line with exit status 2."""
from __future__ import annotations

import csv
import io
import json

import pandas as pd
import pytest

import bundled
from tracer.cli import main
from tracer.model.loader import load_cluster
from tracer.policy import matrix_render
from tracer.policy.matrix import Probe, compute_matrix, matrix_pods
from tracer.selector.selector import parse_selector

TIERS = bundled.SCENARIO_ROOT / "calico-tiers"


def run(capsys, *args):
    try:
        main(["matrix", "-f", str(TIERS), "--no-cache", *args])
        code = 0
    except SystemExit as done:
        code = done.code
    out, err = capsys.readouterr()
    return code, out, err


def entries(result):
    return [dict(e) for e in result.entries()]


@pytest.mark.parametrize("scenario", bundled.SCENARIOS, ids=lambda p: p.name)
@pytest.mark.parametrize("protocol,port", [("tcp", 80), ("icmp", None)])
def test_streamed_formats_hold_every_pair(scenario, protocol, port):
    result = compute_matrix(load_cluster([scenario]), Probe.make(protocol, port))
    expected = entries(result)
    assert matrix_render.render_json(result) == json.dumps(expected, indent=2)
    lines = "".join(matrix_render.jsonl_chunks(result)).splitlines()
    assert [json.loads(line) for line in lines] == expected
    rows = list(csv.DictReader(io.StringIO(matrix_render.render_csv(result))))
    assert [(r["from"], r["to"], r["allowed"] == "true") for r in rows] == \
        [(e["from"], e["to"], e["allowed"]) for e in expected]


def test_parquet_round_trips(tmp_path, capsys):
    path = tmp_path / "m.parquet"
    code, _, err = run(capsys, "-o", "parquet", "--out", str(path))
    assert code == 0, err
    frame = pd.read_parquet(path)
    expected = entries(compute_matrix(load_cluster([TIERS]), Probe.make("tcp", 80)))
    assert frame.astype({"from": str, "to": str}).to_dict("records") == expected


def test_summary_counts_the_pairs_of_each_namespace_pair():
    result = compute_matrix(load_cluster([TIERS]), Probe.make("tcp", 80))
    summary = matrix_render.namespace_summary(result)
    for src_ns, dst_ns, allowed, pairs in summary:
        pairs_here = [e for e in result.entries() if e["from"].split("/")[0] == src_ns
                      and e["to"].split("/")[0] == dst_ns]
        assert pairs == len(pairs_here) and allowed == sum(e["allowed"] for e in pairs_here)
    assert sum(p for *_, p in summary) == result.allowed.size


def test_filters_keep_the_named_pods(capsys):
    selector = "tier == 'security' || has(app)"
    code, out, err = run(capsys, "-o", "jsonl", "--from-namespace", "shop",
                         "--to-selector", selector)
    assert code == 0, err
    got = [json.loads(line) for line in out.splitlines()]
    cluster = load_cluster([TIERS])
    matches = parse_selector(selector).matcher
    sources = [w.key for w in matrix_pods(cluster) if w.pod.namespace == "shop"]
    targets = [w.key for w in matrix_pods(cluster) if matches(w.labels)]
    assert [(e["from"], e["to"]) for e in got] == [(s, t) for s in sources for t in targets]
    full = compute_matrix(cluster, Probe.make("tcp", 80))
    assert all(e["allowed"] == full.is_allowed(e["from"], e["to"]) for e in got)


@pytest.mark.parametrize("args,said", [
    (["--to-selector", "app == ("], "--to-selector: invalid selector"),
    (["-o", "parquet"], "--out FILE"),
    (["-o", "html", "--from-namespace", "dev"], "whole square matrix"),
    (["-o", "csv", "--out", "/nonexistent-dir/m.csv"], "does not exist"),
])
def test_misuse_is_one_line(capsys, args, said):
    code, out, err = run(capsys, *args)
    assert code == 2 and said in err and len(err.strip().splitlines()) == 1
