"""The text renderer's two passes: prune keeps what a level shows, one printer prints."""

from __future__ import annotations

from pathlib import Path

import pytest

from tracer.explain import explain
from tracer.model.loader import load_cluster
from tracer.render.trace_text import Line, print_tree, prune, render_text
from tracer.trace.assemble import build_dataplane
from tracer.trace.tracing import TraceRequest, trace_packet

SCENARIOS = Path(__file__).resolve().parent.parent / "scenarios"


@pytest.fixture(scope="module")
def vxlan_trace():
    dataplane = build_dataplane(load_cluster([SCENARIOS / "multinode-vxlan"]), version="3.32")
    request = TraceRequest("shop/frontend-7d4b9", "shop/backend-5f8c2", port=6379)
    return explain(dataplane, trace_packet(dataplane, request))


def test_printer_indents_children_by_their_parents_step_and_separates_blocks():
    blocks = ((Line("a", (Line("b", (Line("c"),), step=4),)),), (Line("d"),))
    assert print_tree(blocks) == "a\n  b\n      c\n\nd\n"


def test_minimal_keeps_only_what_changed_or_ended_the_packet(vxlan_trace):
    (block,) = prune(vxlan_trace, "minimal")
    texts = [line.text for line in block]
    assert texts[0].startswith("node-1: encap vxlan")
    assert texts[1].startswith("node-2: decap vxlan")
    assert texts[-1].startswith("VERDICT  allowed")
    assert all(not line.children for line in block)


def test_summary_and_detailed_keep_one_block_per_hop_plus_header_and_verdict(vxlan_trace):
    for verbosity in ("summary", "detailed"):
        blocks = prune(vxlan_trace, verbosity)
        assert len(blocks) == len(vxlan_trace.hops) + 2
        assert [b[0].text.split()[0] for b in blocks[1:-1]] == [h.node for h in vxlan_trace.hops]
        assert {h.node for h in vxlan_trace.hops} == {"node-1", "node-2"}
    detailed = render_text(vxlan_trace, "detailed")
    summary = render_text(vxlan_trace, "summary")
    assert "PREROUTING #1:" not in summary and "PREROUTING #1:" in detailed  # rules: detailed


def test_unknown_verbosity_is_refused(vxlan_trace):
    with pytest.raises(ValueError, match="verbosity"):
        prune(vxlan_trace, "loud")


# --------------------------------------------------------------- stray packets (--tcp-flags)


def test_stray_packets_meet_conntrack_as_the_kernel_would():
    """With nf_conntrack_tcp_loose (the default) a stray ACK is picked up as NEW and meets the
    policy; a SYN-ACK with no SYN before it is INVALID and felix drops it."""
    from click.testing import CliRunner

    from tracer.cli import cli
    base = ["packet", "-f", str(SCENARIOS / "backend-from-frontend"), "--port", "6379",
            "--verbosity", "minimal"]
    runs = {(src, flags): CliRunner().invoke(cli, base + ["--from", src, "--to", "myns/backend",
                                                          "--tcp-flags", flags])
            for src in ("myns/frontend", "myns/other") for flags in ("ACK", "SYN,ACK")}
    assert "allowed" in runs["myns/frontend", "ACK"].output
    assert "dropped [default-deny]" in runs["myns/other", "ACK"].output
    assert "dropped [conntrack-invalid]" in runs["myns/frontend", "SYN,ACK"].output
    bad = CliRunner().invoke(cli, base + ["--from", "myns/other", "--to", "myns/backend",
                                          "--tcp-flags", "SYN,BOGUS"])
    assert bad.exit_code != 0 and "unknown TCP flag 'BOGUS'" in str(bad.exception or bad.output)
