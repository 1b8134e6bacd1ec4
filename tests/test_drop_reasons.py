"""Every drop has a declared reason (STYLE pattern 3): the stage that drops declares it, the
vocabulary explains it, and the why of a trace says it."""

from __future__ import annotations

from pathlib import Path

import bundled
import pytest

from tracer.dataplane.reasons import DropReason
from tracer.dataplane.stages import STAGES, declared_reasons
from tracer.dataplane.trace import DropRecord
from tracer.explain import explain
from tracer.explain.hint import STATIC_HINTS
from tracer.model.loader import load_cluster
from tracer.trace.assemble import build_dataplane
from tracer.trace.tracing import TraceRequest, trace_packet

ROOT = Path(__file__).resolve().parents[1]
SCENARIOS = bundled.SCENARIOS
# Reasons no pipeline stage emits: a capture reader's verdict for packets it cannot parse.
READER_REASONS = {DropReason.MALFORMED}


def test_every_reason_has_text_and_a_stage_or_reader_that_emits_it():
    declared = set().union(*declared_reasons().values())
    assert all(reason.text for reason in DropReason)
    assert declared | READER_REASONS == set(DropReason)
    assert len({stage.name for stage in STAGES}) == len(STAGES)


def test_an_unknown_reason_cannot_be_recorded():
    with pytest.raises(ValueError):
        DropRecord("node-1", "dropped-for-fun", "detail")


def _drops(directory: Path):
    cluster = load_cluster([str(directory)])
    dataplane = build_dataplane(cluster, version="3.32")
    requests = [TraceRequest(src, dst, protocol=proto, port=port, size=size)
                for src in sorted(cluster.endpoints) for dst in sorted(cluster.endpoints)
                for proto, port in (("tcp", 80), ("udp", 53), ("icmp", None))
                for size in (None, 1500)]
    requests += [TraceRequest(src, str(node.address.ip), port=22)
                 for src in sorted(cluster.endpoints) for node in cluster.nodes.values()]
    for request in requests:
        trace = trace_packet(dataplane, request)
        if trace.drop is not None:
            yield explain(dataplane, trace)


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[p.name for p in SCENARIOS])
def test_emitted_reasons_are_declared_by_their_stage_and_explained(scenario):
    stages = declared_reasons()
    seen = 0
    for trace in _drops(scenario):
        drop = trace.drop
        seen += 1
        assert drop.stage in stages, drop
        assert drop.reason in stages[drop.stage], (drop.stage, drop.reason)
        assert trace.reason is drop.reason
        assert trace.why.strip(), drop
        if drop.reason in STATIC_HINTS:
            assert trace.hint == STATIC_HINTS[drop.reason]
    assert seen, f"{scenario.name}: no packet was dropped, so nothing was checked"
