"""The kernel judge on the compiled engine: every bundled scenario, every ordered pod pair,
TCP and UDP, traced by the compiled engine and sent for real through netfilter in network
namespaces; the two traces must agree packet for packet."""

from __future__ import annotations

from pathlib import Path

import bundled
import pytest
from click.testing import CliRunner

from tracer.cli import cli
from tracer.engine.runner import compiled as compiled_engine
from tracer.judge.verify import Case, run_cases
from tracer.kernel.realise import missing_requirements
from tracer.model.loader import load_cluster, load_scenario_meta
from tracer.policy.felix.versions import resolve_version
from tracer.trace.assemble import build_dataplane

pytestmark = [pytest.mark.root,
              pytest.mark.skipif(missing_requirements() is not None,
                                 reason=str(missing_requirements()))]

SCENARIOS = bundled.SCENARIOS


def _cases(directory: Path, cluster) -> list[Case]:
    expectations = load_scenario_meta(directory).get("expect") or []
    ports = sorted({80} | {int(e["port"]) for e in expectations if e.get("port")})
    keys = sorted(cluster.endpoints)
    return [Case(src, dst, protocol, port) for src in keys for dst in keys if src != dst
            for protocol in ("tcp", "udp") for port in ports]


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[p.name for p in SCENARIOS])
def test_compiled_engine_agrees_with_kernel(scenario: Path) -> None:
    cluster = load_cluster([str(scenario)])
    dataplane, runner = compiled_engine(
        build_dataplane(cluster, version=resolve_version(cluster, None)))
    results = run_cases(dataplane, _cases(scenario, cluster))
    checked = [r for r in results if not r.skipped]
    assert checked, f"{scenario.name}: every packet was skipped"
    assert runner.notes() == [], runner.notes()       # every table ran compiled
    differing = [r for r in checked if not r.agree]
    assert not differing, "\n\n".join(f"DIFF {r.case.describe()}\n{r.comparison.render(160)}"
                                      for r in differing)


def test_verify_cli_runs_the_compiled_engine():
    scenario = SCENARIOS[0]
    result = CliRunner().invoke(cli, ["verify", "-f", str(scenario), "--engine", "compiled",
                                      "--all-pairs", "--protocol", "tcp"])
    assert result.exit_code == 0, result.output
    assert "differing: 0" in result.output and "agreed: 0" not in result.output
