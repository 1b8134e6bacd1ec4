"""Golden text traces: every bundled scenario's expected packets at the three verbosity levels.

The files under ``tests/golden/`` are the output as it is today; any difference fails. After a
deliberate change to the text renderer, regenerate them with ``pytest --update-golden`` and
review the diff like code.
"""

from __future__ import annotations

import difflib
from pathlib import Path

import bundled
import pytest

from tracer.explain import explain
from tracer.model.loader import load_cluster, load_scenario_meta
from tracer.policy.felix.versions import resolve_version
from tracer.render.trace_text import VERBOSITIES, render_text
from tracer.trace.assemble import build_dataplane
from tracer.trace.tracing import TraceRequest, trace_packet

ROOT = Path(__file__).resolve().parent.parent
SCENARIOS = bundled.SCENARIOS
GOLDEN = Path(__file__).resolve().parent / "golden"


def golden_text(scenario: Path) -> dict[str, str]:
    """Each verbosity's text: every expected packet of the scenario, one section each."""
    cluster = load_cluster([scenario])
    dataplane = build_dataplane(cluster, version=resolve_version(cluster, None))
    texts = {verbosity: [] for verbosity in VERBOSITIES}
    for case in load_scenario_meta(scenario).get("expect", []):
        request = TraceRequest(case["from"], case["to"], protocol=case["protocol"].lower(),
                               port=case.get("port"))
        trace = explain(dataplane, trace_packet(dataplane, request))
        title = f"### {case['from']} -> {case['to']} {case['protocol'].lower()}/{case.get('port')}"
        for verbosity in VERBOSITIES:
            texts[verbosity].append(f"{title}\n{render_text(trace, verbosity)}")
    return {verbosity: "\n".join(parts) for verbosity, parts in texts.items()}


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda p: p.name)
def test_golden_traces(scenario: Path, update_golden: bool):
    texts = golden_text(scenario)
    assert any(texts.values()), f"{scenario.name} has no expected packets to trace"
    for verbosity, text in texts.items():
        path = GOLDEN / scenario.name / f"{verbosity}.txt"
        if update_golden:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
            continue
        assert path.exists(), f"no golden file {path.relative_to(ROOT)}: run pytest --update-golden"
        want = path.read_text()
        if text != want:
            diff = "".join(difflib.unified_diff(want.splitlines(True), text.splitlines(True),
                                                f"golden/{scenario.name}/{verbosity}.txt",
                                                "now", n=2))
            pytest.fail(f"{scenario.name} {verbosity} trace differs from golden:\n{diff}")
