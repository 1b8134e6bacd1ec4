"""Real programs talk through ``calico-trace up``: the scenario's expectations hold for curl
against a real server, ping agrees with the packet tracer, drops are printed with the deciding
policy, and ``flows`` lists what happened."""

from __future__ import annotations

import functools
import json
import subprocess

import pytest

from live_helpers import LiveRun, expectations
from tracer.explain import explain
from tracer.model.loader import load_cluster
from tracer.policy.felix.versions import resolve_version
from tracer.trace.assemble import build_dataplane
from tracer.trace.tracing import TraceRequest, trace_packet

pytestmark = pytest.mark.root

SCENARIOS = ["backend-from-frontend", "multinode-vxlan", "multinode-wireguard"]  # 1 node; 2 nodes
DENIED_TIMEOUT = "1"          # curl's budget where policy drops: a drop is a timeout


@pytest.fixture(scope="module", params=SCENARIOS)
def live(request, tmp_path_factory):
    run = LiveRun(request.param, tmp_path_factory.mktemp("live")).start()
    try:
        state = json.loads((run.env_dir / "live.json").read_text())
        run.ips = {key: pod["ip"] for key, pod in state["pods"].items()}
        servers = {(e["to"], e["port"]) for e in expectations(run.scenario)
                   if e["protocol"].upper() == "TCP"}
        for pod, port in sorted(servers):
            run.background(pod, "python3", "-m", "http.server", str(port), "--bind",
                           "0.0.0.0")
        for pod, port in sorted(servers):
            waited = run.exec(pod, "sh", "-c", "for i in $(seq 100); do curl -s -o /dev/null "
                              f"http://127.0.0.1:{port}/ && exit 0; sleep 0.05; done; exit 1")
            assert waited.returncode == 0, f"server on {pod}:{port} did not start"
        yield run
    finally:
        run.stop()


def _curl(live: LiveRun, src: str, dst: str, port: int, allowed: bool):
    return live.exec(src, "curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "-m",
                     "5" if allowed else DENIED_TIMEOUT, f"http://{live.ips[dst]}:{port}/")


def test_tcp_through_the_live_dataplane_matches_the_scenario(live):
    for e in expectations(live.scenario):
        done = _curl(live, e["from"], e["to"], e["port"], e["allowed"])
        got = done.returncode == 0 and done.stdout == "200"
        assert got == e["allowed"], (f"{e['from']} -> {e['to']}:{e['port']}: curl exit "
                                     f"{done.returncode} {done.stdout}{done.stderr}\n"
                                     f"{live.output()[-2000:]}")
        if not e["allowed"]:                        # the drop was printed as it happened
            src, dst = live.ips[e["from"]], live.ips[e["to"]]
            assert f"DROP TCP {src}:" in live.output()
            assert f"-> {dst}:{e['port']} [SYN]" in live.output()


@functools.cache
def _dataplane(scenario: str):
    cluster = load_cluster([str(LiveRun.scenario_dir(scenario))])
    return build_dataplane(cluster, version=resolve_version(cluster, None))


def _traced(scenario: str, src: str, dst: str, protocol: str = "icmp", port: int | None = None):
    """What ``packet`` says of this packet: the oracle the live path must agree with."""
    dataplane = _dataplane(scenario)
    request = TraceRequest(source=src, destination=dst, protocol=protocol, port=port)
    return dataplane, explain(dataplane, trace_packet(dataplane, request))


def test_ping_agrees_with_the_tracer_and_drops_name_the_policy(live):
    pairs = dict.fromkeys((e["from"], e["to"]) for e in expectations(live.scenario))
    verdicts = set()
    for src, dst in pairs:
        _, trace = _traced(live.scenario, src, dst)
        done = live.exec(src, "ping", "-c1", "-W1", live.ips[dst])
        allowed = trace.verdict == "allowed"
        verdicts.add(allowed)
        assert (done.returncode == 0) == allowed, f"ping {src} -> {dst}: {done.stdout}"
        if not allowed:
            line = next(line for line in live.output().splitlines()
                        if line.split(" DROP ")[-1].startswith(
                            f"ICMP {live.ips[src]} -> {live.ips[dst]}"))
            assert f"on {trace.drop.node} [{trace.reason}]" in line
            for decision in trace.deciding:
                p = decision.provenance
                names = (p.policy,) if p.policy else trace.selected_by[
                    f"{p.direction} {p.endpoint}"]
                assert all(name in line for name in names), line
    assert verdicts == {True, False}, "the scenario should have an allowed and a denied ping"


def test_flows_lists_both_verdicts_with_the_deciding_policy(live):
    done = live.cli("flows", "--output", "json")
    assert done.returncode == 0, done.stderr
    rows = json.loads(done.stdout)
    for e in expectations(live.scenario):
        src, dst = live.ips[e["from"]], live.ips[e["to"]]
        row = next(r for r in rows if r["protocol"] == "TCP" and r["client"].startswith(
            f"{src}:") and r["server"] == f"{dst}:{e['port']}")
        if e["allowed"]:
            assert row["delivered"] > 0 and row["dropped"] == 0
            assert "profile" in row["deciding"] or "Policy" in row["deciding"]
        else:
            assert row["dropped"] > 0 and row["delivered"] == 0
            assert row["reason"] in ("default-deny", "denied-by-rule")
            assert "knp/" in row["deciding"] or "Policy" in row["deciding"], row


def test_iperf3_runs_through_it(live):
    port = 5201
    pairs = dict.fromkeys((e["from"], e["to"]) for e in expectations(live.scenario))
    src, dst = next((s, d) for s, d in pairs if _traced(live.scenario, s, d, "tcp", port)[1]
                    .verdict == "allowed")
    server = live.background(dst, "iperf3", "-s", "-1", "-p", str(port))
    try:
        ok = live.exec(dst, "sh", "-c", "for i in $(seq 100); do ss -ltn | grep -q "
                       f"':{port} ' && exit 0; sleep 0.05; done; exit 1")
        assert ok.returncode == 0, "iperf3 server did not start"
        done = live.exec(src, "iperf3", "-c", live.ips[dst], "-p", str(port), "-t", "1",
                         "-J", timeout=30)
        result = json.loads(done.stdout)
        assert done.returncode == 0, result.get("error")
        assert result["end"]["sum_received"]["bytes"] > 0
    finally:
        server.kill()


def test_a_closed_port_is_refused_and_up_keeps_running(live):
    pairs = dict.fromkeys((e["from"], e["to"]) for e in expectations(live.scenario))
    src, dst = next((s, d) for s, d in pairs if _traced(live.scenario, s, d, "tcp", 1)[1]
                    .verdict == "allowed")
    closed = live.exec(src, "python3", "-c", "import socket; socket.create_connection("
                       f"('{live.ips[dst]}', 1), timeout=2)")
    assert "ConnectionRefusedError" in closed.stderr      # the RST came back through it
    assert live.proc.poll() is None and "internal error" not in live.output()
    e = next(e for e in expectations(live.scenario) if e["allowed"])
    assert _curl(live, e["from"], e["to"], e["port"], True).stdout == "200"


def test_flows_follow_streams_the_table(live):
    """(After the TCP test above, whose flows it must list.)"""
    try:
        subprocess.run([*live.cli_argv, "flows", "--follow", "--output", "json"],
                       capture_output=True, text=True, env=live.env, timeout=2.0)
        raise AssertionError("flows --follow ended while up runs")
    except subprocess.TimeoutExpired as running:
        out = running.stdout.decode() if isinstance(running.stdout, bytes) else running.stdout
    rows = [json.loads(line) for line in (out or "").splitlines()]
    e = next(e for e in expectations(live.scenario) if not e["allowed"])
    assert any(r["server"] == f"{live.ips[e['to']]}:{e['port']}" and r["dropped"] for r in rows)


def test_flows_trace_prints_a_denied_flow_hop_by_hop(live):
    """(After the TCP test above.) `flows --trace ID` of a denied flow: its first packet's
    trace as `packet` prints it, with the deciding rule, and its last drop's."""
    rows = json.loads(live.cli("flows", "--output", "json").stdout)
    e = next(e for e in expectations(live.scenario) if not e["allowed"])
    row = next(r for r in rows if r["server"] == f"{live.ips[e['to']]}:{e['port']}"
               and r["dropped"])
    done = live.cli("flows", "--trace", str(row["id"]))
    assert done.returncode == 0, done.stderr
    assert f"#{row['id']} TCP" in done.stdout and "first packet" in done.stdout
    assert "last drop:" in done.stdout and "VERDICT  dropped" in done.stdout
    as_json = json.loads(live.cli("flows", "--trace", str(row["id"]), "--output", "json").stdout)
    assert as_json["last_drop"]["verdict"] == "dropped" and as_json["last_drop"]["deciding"]
    missing = live.cli("flows", "--trace", "99999")
    assert missing.returncode == 2 and "no flow #99999" in missing.stderr


def test_nodes_and_the_external_host_reach_pods_as_packet_says(live):
    """Host-network programs (`exec node:NAME`) and a client outside the cluster (`exec
    external`) talk through the same pipeline; curl succeeds exactly where `packet` says."""
    state = json.loads((live.env_dir / "live.json").read_text())
    hosts = [key for key in state["pods"] if key.startswith("node:") or key == "external"]
    assert "external" in hosts and any(key.startswith("node:") for key in hosts)
    servers = sorted({(e["to"], e["port"]) for e in expectations(live.scenario)
                      if e["protocol"].upper() == "TCP"})
    for host in hosts:
        for pod, port in servers:
            _, trace = _traced(live.scenario, state["pods"][host]["ip"], live.ips[pod], "tcp",
                               port)
            allowed = trace.verdict == "allowed"
            done = live.exec(host, "curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}",
                             "-m", "5" if allowed else DENIED_TIMEOUT,
                             f"http://{live.ips[pod]}:{port}/")
            assert (done.returncode == 0 and done.stdout == "200") == allowed, \
                f"{host} -> {pod}:{port}: {done.stdout}{done.stderr}"
