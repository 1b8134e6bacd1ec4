"""The HTML pages and the heatmap image, read as documents (the browser tests render them)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from tracer.cli import cli
from tracer.explain import explain
from tracer.model.loader import load_cluster
from tracer.render.html_trace import path_boxes, render_trace_html
from tracer.trace.assemble import build_dataplane
from tracer.trace.tracing import TraceRequest, trace_packet

SCENARIOS = Path(__file__).resolve().parent.parent / "scenarios"
EXTERNAL = re.compile(r"""(src|href)\s*=\s*["']?(https?:)?//""", re.I)


def traced(scenario: str, src: str, dst: str, port: int = 6379, **kw):
    cluster = load_cluster([SCENARIOS / scenario])
    dataplane = build_dataplane(cluster, version="3.32")
    return explain(dataplane, trace_packet(dataplane, TraceRequest(src, dst, port=port, **kw))), \
        cluster


def test_vxlan_path_diagram_has_every_place_in_order():
    trace, _ = traced("multinode-vxlan", "shop/frontend-7d4b9", "shop/backend-5f8c2")
    boxes = path_boxes(trace)
    assert [b.kind for b in boxes] == ["endpoint", "veth", "node", "tunnel", "underlay", "node",
                                       "tunnel", "node", "veth", "endpoint"]
    assert [b.hop for b in boxes if b.kind == "node"] == list(range(len(trace.hops)))
    assert "UDP 10.0.0.1:" in boxes[4].detail and "10.0.0.2:4789" in boxes[4].detail
    assert [b.verdict for b in boxes if b.verdict] == ["deliver"]
    assert boxes[-1].title == "pod shop/backend-5f8c2"


def test_dropped_trace_outlines_the_dropping_hop_and_links_the_policy_yaml():
    trace, cluster = traced("calico-tiers", "dev/client", "shop/backend")
    html = render_trace_html(trace, cluster)
    assert html.count("class=\"box node verdict-drop\"") == 1
    assert "verdict-deliver\"" not in html
    assert html.count("<tr class=\"rule deciding\">") == len(trace.deciding) == 1
    link = re.search(r'class="policy-link" href="#(policy-[^"]+)"', html).group(1)
    section = html[html.index(f'id="{link}"'):]
    assert "kind: GlobalNetworkPolicy" in section and "name: security.deny-app-shop" in section
    assert "<p class=\"why\">" in html and "<p class=\"fix\">" in html
    assert not EXTERNAL.search(html), "a page must not load anything from the network"


def test_every_event_of_every_hop_is_a_rule_row():
    trace, cluster = traced("multinode-vxlan", "shop/frontend-7d4b9", "shop/backend-5f8c2")
    html = render_trace_html(trace, cluster)
    events = sum(len(s.events) for hop in trace.hops for s in hop.stages if hasattr(s, "events"))
    assert html.count("<tr class=\"rule") == events
    assert html.count("<details class=\"hop\"") == len(trace.hops)


def test_packet_output_html_for_a_service_has_one_section_per_fork():
    result = CliRunner().invoke(cli, ["packet", "-f", str(SCENARIOS / "service-clusterip"),
                                      "--from", "demo/client", "--to", "svc/demo/web:80",
                                      "--output", "html"])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("<!DOCTYPE html>")
    assert result.output.count("<section class=\"trace\"") == 3
    assert "fork 2/3: endpoint demo/web-2" in result.output


def test_matrix_html_embeds_traces_that_agree_with_the_matrix():
    result = CliRunner().invoke(cli, ["matrix", "-f", str(SCENARIOS / "calico-tiers"),
                                      "--port", "6379", "--output", "html"])
    assert result.exit_code == 0, result.output
    html = result.output
    pods = json.loads(re.search(r'id="pods">(.*?)</script>', html).group(1))
    traces = json.loads(re.search(r'id="traces">(.*?)</script>', html).group(1))
    cells = {pair: yn for yn, pair in re.findall(r'<a class="cell (y|n)" href="#pair-(\d+-\d+)"',
                                                 html)}
    assert len(cells) == len(pods) ** 2
    assert len(traces) == len(pods) * (len(pods) - 1)
    for pair, text in traces.items():          # the dataplane agrees with the policy matrix
        assert ("VERDICT  allowed" in text) == (cells[pair] == "y"), pair


@pytest.mark.parametrize("suffix,magic", [(".png", b"\x89PNG"), (".svg", b"<svg")])
def test_matrix_plot_writes_the_image(tmp_path, suffix, magic):
    target = tmp_path / f"matrix{suffix}"
    result = CliRunner().invoke(cli, ["matrix", "-f", str(SCENARIOS / "calico-tiers"),
                                      "--port", "6379", "--plot", str(target)])
    assert result.exit_code == 0, result.output
    assert magic in target.read_bytes()[:400]


def test_matrix_plot_refuses_other_formats(tmp_path):
    result = CliRunner().invoke(cli, ["matrix", "-f", str(SCENARIOS / "calico-tiers"),
                                      "--plot", str(tmp_path / "m.jpg")])
    assert "--plot: --plot writes .png or .svg files" in str(result.exception)


def test_lab_page_shows_story_steps_folded_answers_and_traces():
    result = CliRunner().invoke(cli, ["lab", "show", "3", "--output", "html"])
    assert result.exit_code == 0, result.output
    html = result.output
    for part in ("<h2>Story</h2>", "<h2>Steps</h2>", "$ calico-trace packet -f ",
                 "<details class=\"answer\">", "Fix it", "env: prod"):
        assert part in html
    assert html.count("<section class=\"trace\"") == 4      # 3 checks + 1 after its fix
    assert not EXTERNAL.search(html)
