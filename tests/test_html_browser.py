"""The HTML pages in a real browser: Debian's chromium, headless, driven by playwright with the
system chromium as its executable (no browser download). Each page must render without console
errors; the trace diagram shows every hop, and opening a hop shows its rules. A screenshot of
each page is kept in test-artifacts/browser/ (docs/img/ holds copies for the README)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from html_fixtures import write_big_cluster
from tracer.cli import cli
from tracer.explain import explain
from tracer.lab.spec import load_lab
from tracer.model.loader import load_cluster
from tracer.trace.assemble import build_dataplane
from tracer.trace.tracing import TraceRequest, trace_packet

ROOT = Path(__file__).resolve().parent.parent
SCENARIOS = ROOT / "scenarios"
ARTIFACTS = Path(os.environ.get("CALICO_TRACE_ARTIFACTS", ROOT / "test-artifacts")) / "browser"


@pytest.fixture(scope="module")
def browser():
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.fail("chromium not installed (make test installs Debian's chromium)")
    from playwright.sync_api import sync_playwright     # the test extra installs it
    with sync_playwright() as playwright:
        # --no-sandbox: CI runs as root, where chromium's sandbox refuses to start.
        browser = playwright.chromium.launch(executable_path=chromium, headless=True,
                                             args=["--no-sandbox"])
        yield browser
        browser.close()


@pytest.fixture
def open_page(browser, tmp_path):
    """Load HTML text from a file in a fresh page; the console errors are collected."""
    pages = []

    def load(html: str, name: str):
        path = tmp_path / f"{name}.html"
        path.write_text(html)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.errors = []
        page.on("console", lambda msg: page.errors.append(msg.text)
                if msg.type == "error" else None)
        page.on("pageerror", lambda err: page.errors.append(str(err)))
        page.goto(path.as_uri())
        pages.append(page)
        return page

    yield load
    for page in pages:
        page.close()


def screenshot(page, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    assert path.stat().st_size > 5000
    return path


def invoke(*argv: str) -> str:
    result = CliRunner().invoke(cli, list(argv))
    assert result.exit_code == 0, result.output
    return result.output


@pytest.mark.parametrize("name,argv", [
    ("trace-vxlan", ["-f", str(SCENARIOS / "multinode-vxlan"), "--from", "shop/frontend-7d4b9",
                     "--to", "shop/backend-5f8c2", "--port", "6379"]),
    ("trace-tiers-drop", ["-f", str(SCENARIOS / "calico-tiers"), "--from", "dev/client",
                          "--to", "shop/backend", "--port", "6379"]),
])
def test_trace_page_shows_every_hop_and_a_hop_opens_to_its_rules(open_page, name, argv):
    html = invoke("packet", *argv, "--output", "html")
    cluster = load_cluster([argv[1]])
    dataplane = build_dataplane(cluster, version="3.32")
    trace = explain(dataplane, trace_packet(dataplane, TraceRequest(
        argv[3], argv[5], port=int(argv[7]))))
    page = open_page(html, name)
    nodes = page.locator(".path a.box.node")
    assert nodes.count() == len(trace.hops)
    for index, hop in enumerate(trace.hops):
        assert nodes.nth(index).locator(".title").inner_text() == hop.node
        assert nodes.nth(index).is_visible()
    verdict_box = page.locator(".path .box.verdict-drop, .path .box.verdict-deliver")
    assert verdict_box.count() == 1
    rows = page.locator("#t-hop-0 table.rules tr.rule")
    assert not rows.first.is_visible()                    # folded until asked
    nodes.nth(0).click()
    events = sum(len(s.events) for s in trace.hops[0].stages if hasattr(s, "events"))
    assert rows.count() == events and rows.first.is_visible()
    assert "PREROUTING" in rows.first.inner_text()
    last = len(trace.hops) - 1
    nodes.nth(last).click()
    deciding = page.locator(f"#t-hop-{last} tr.deciding")
    if trace.verdict == "dropped":
        assert deciding.first.is_visible()
        deciding.locator("a.policy-link").first.click()
        policy = page.locator(".policy pre").first
        assert policy.is_visible() and "kind: GlobalNetworkPolicy" in policy.inner_text()
    screenshot(page, name)
    assert page.errors == []


def test_heatmap_at_200_pods_reads_by_namespace_and_cells_open_their_pair(open_page, tmp_path):
    (tmp_path / "big").mkdir()
    cluster_dir = write_big_cluster(tmp_path / "big")
    html = invoke("matrix", "-f", str(cluster_dir), "--output", "html")
    page = open_page(html, "matrix-200")
    assert page.locator("a.cell").count() == 200 * 200
    assert page.locator("th.ns-col").count() == 8
    grid = page.locator("table.heat").bounding_box()
    assert grid["width"] <= 1000 and grid["height"] <= 1000     # the whole matrix in view
    cell = page.locator('a.cell[href="#pair-30-180"]')
    assert cell.bounding_box()["width"] >= 4
    cell.click()
    panel = page.locator("#pair")
    assert panel.is_visible()
    assert "ns-1/pod-05 \u2192 ns-7/pod-05" in panel.inner_text()
    assert "--from ns-1/pod-05 --to ns-7/pod-05" in panel.locator(".cmd").inner_text()
    screenshot(page, "matrix-200")
    assert page.errors == []


def test_small_heatmap_cell_shows_its_embedded_trace(open_page):
    html = invoke("matrix", "-f", str(SCENARIOS / "calico-tiers"), "--port", "6379",
                  "--output", "html")
    page = open_page(html, "matrix-tiers")
    page.locator('a.cell[href="#pair-0-1"]').click()
    trace = page.locator("#pair .trace")
    assert trace.is_visible()
    assert "VERDICT  dropped [denied-by-rule]" in trace.inner_text()
    screenshot(page, "matrix-tiers")
    assert page.errors == []


def test_lab_page_renders_and_answers_unfold(open_page):
    html = invoke("lab", "show", "12", "--output", "html")
    page = open_page(html, "lab-12")
    lab = load_lab(SCENARIOS / "labs" / "12-conntrack")        # one trace per check and fix
    assert page.locator("section.trace").count() == len(lab.checks) + sum(
        1 for check in lab.checks if check.fix)
    answer = page.locator("details.answer").first
    assert not answer.locator("p").first.is_visible()
    answer.locator("summary").click()
    assert answer.locator("p").first.is_visible()
    assert page.locator("section.trace .path a.box.node").count() >= 5
    screenshot(page, "lab-12")
    assert page.errors == []
