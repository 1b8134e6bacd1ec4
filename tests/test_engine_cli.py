"""``--engine`` on packet and matrix: same answers on every engine, fallbacks said."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from tracer.cli import cli

SCENARIOS = Path(__file__).resolve().parent.parent / "scenarios"


def run(*args):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


@pytest.mark.parametrize("scenario, src, dst, port", [
    ("backend-from-frontend", "myns/other", "myns/backend", "6379"),
    ("backend-from-frontend", "myns/frontend", "myns/backend", "6379"),
    ("service-clusterip", "demo/client", "10.96.0.50", "80"),
    ("multinode-vxlan", "shop/frontend-7d4b9", "shop/backend-5f8c2", "6379"),
])
def test_packet_json_is_the_same_on_both_engines(scenario, src, dst, port):
    outputs = [run("packet", "-f", str(SCENARIOS / scenario), "--from", src, "--to", dst,
                   "--port", port, "--output", "json", "--engine", engine)
               for engine in ("reference", "compiled")]
    assert all(o.exit_code == 0 for o in outputs)
    assert outputs[0].stdout == outputs[1].stdout


@pytest.mark.parametrize("scenario", ["calico-tiers", "recipe-06-allow-from-namespace",
                                      "multinode-ipip"])
def test_matrix_through_the_dataplane_agrees_with_the_policy_evaluator(scenario):
    grids = {engine: run("matrix", "-f", str(SCENARIOS / scenario), "--ascii", "--engine",
                         engine, "-o", "csv").stdout
             for engine in ("policy", "compiled", "reference")}
    assert grids["policy"] == grids["compiled"] == grids["reference"]
    assert "true" in grids["policy"].lower()


def test_the_cli_says_when_numba_compiles(monkeypatch):
    import tracer.engine.warmup as warmup
    monkeypatch.setattr(warmup, "kernels_cached", lambda: False)
    result = run("packet", "-f", str(SCENARIOS / "backend-from-frontend"), "--from",
                 "myns/other", "--to", "myns/backend", "--port", "6379", "--verbosity",
                 "minimal", "--engine", "compiled")
    assert "numba is compiling" in result.stderr and "kernels compiled in" in result.stderr
    quiet = run("packet", "-f", str(SCENARIOS / "backend-from-frontend"), "--from",
                "myns/other", "--to", "myns/backend", "--port", "6379")
    assert "numba" not in quiet.stderr           # one packet: the reference by default
