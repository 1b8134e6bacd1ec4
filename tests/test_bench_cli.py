"""``calico-trace bench``: JSON records with the documented keys, a PNG growth plot, and the
measurements checking what they measure (a tiny plan, so this is not a timed test)."""

from __future__ import annotations

import json

from click.testing import CliRunner

from tracer.bench import suite
from tracer.cli import cli

KEYS = {"name", "engine", "value", "unit", "reference", "reference_value", "ratio", "rules"}


def test_bench_json_and_plot(monkeypatch, tmp_path):
    tiny = suite.Plan((20,), (50,), (1, 40), 2000, 50, 1)
    monkeypatch.setattr(suite.Plan, "quick", classmethod(lambda cls: tiny))
    plot = tmp_path / "growth.png"
    result = CliRunner().invoke(cli, ["bench", "--quick", "--output", "json", "--plot",
                                      str(plot)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert records and all(set(r) == KEYS for r in records)
    names = " ".join(r["name"] for r in records)
    for part in ("Calico 20 policies", "ACL 50 rules", "conntrack", "compile time",
                 "incremental", "growth"):
        assert part in names
    for r in records:
        assert r["value"] > 0
        if r["reference_value"]:
            assert r["ratio"] > 0
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_bench_text_table(monkeypatch):
    tiny = suite.Plan((20,), (50,), (1,), 2000, 50, 1)
    monkeypatch.setattr(suite.Plan, "quick", classmethod(lambda cls: tiny))
    result = CliRunner().invoke(cli, ["bench", "--quick"], catch_exceptions=False)
    assert result.exit_code == 0
    assert result.stdout.startswith("measurement") and "pkt/s" in result.stdout
