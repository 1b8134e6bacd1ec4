"""The kernel judges the nftables trace: every bundled scenario's expectations (pod to pod;
Services are not in the nftables model) sent as real packets through felix's table loaded
with ``nft -f``, traced with ``nft monitor``, equal to the simulator event for event (same
chains, rule handles, verdicts) and in delivery."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, Phase, given, settings

from bundled import SCENARIOS
from tracer.judge.verify import Case
from tracer.model.loader import load_cluster
from tracer.nft.judge import run_nft_cases
from tracer.nft.ktrace import nft_match, parse_nft_trace
from tracer.kernel.xtrace import TracePoint
from tracer.trace.assemble import build_dataplane

from strategies import GeneratedCluster, generated_clusters

LINES = [
    'trace id 0a7caad4 ip calico filter-FORWARD packet: iif "caliA" oif "caliB" ip saddr 1.1.1.1',
    'trace id 0a7caad4 ip ctk-trace-1 pre rule ip daddr 1.1.1.2 meta nftrace set 1 # handle 4 '
    '(verdict continue)',
    'trace id 0a7caad4 ip calico filter-FORWARD rule counter packets 0 bytes 0 jump '
    'filter-cali-FORWARD comment "cali:x;" # handle 93 (verdict jump filter-cali-FORWARD)',
    'trace id 0a7caad4 ip calico filter-cali-tw-caliB rule meta mark & 0x00020000 == 0x00000000 '
    'counter packets 0 bytes 0 drop comment "cali:y; End of tier" # handle 161 (verdict drop)',
    'trace id 0a7caad4 ip calico raw-PREROUTING policy accept ',
    'add chain ip ctk-trace-1 s1 # handle 9',
]


def test_parse_nft_monitor_trace():
    events = parse_nft_trace(LINES, "node-1", "ctk-trace-1")
    assert [(e.chain, e.kind, e.verdict, e.target_chain) for e in events] == [
        ("filter-FORWARD", "rule", "JUMP", "filter-cali-FORWARD"),
        ("filter-cali-tw-caliB", "rule", "DROP", None),
        ("raw-PREROUTING", "policy", "ACCEPT", None)]
    assert events[0].rule_text.endswith("# handle 93")
    assert (events[0].iif, events[0].oif) == ("caliA", "caliB")


def test_trace_points_in_nft_syntax():
    syn = TracePoint("PREROUTING", ("-d", "10.0.0.2", "-p", "tcp", "--dport", "80", "--syn"))
    assert nft_match(syn) == ("ip daddr 10.0.0.2 meta l4proto tcp tcp dport 80 "
                              "tcp flags & (fin|syn|rst|ack) == syn")
    ping = TracePoint("OUTPUT", ("-d", "10.0.0.2", "-p", "icmp", "--icmp-type", "echo-request"))
    assert nft_match(ping) == "ip daddr 10.0.0.2 meta l4proto icmp icmp type echo-request"


def _cases(directory, allowed: bool) -> list[Case]:
    """One expectation of the scenario, allowed or denied as asked (else the other kind):
    a lab takes seconds to build, so each scenario judges one packet and the scenarios
    alternate between delivered and dropped paths; `verify` judges every pair."""
    meta = yaml.safe_load((directory / "scenario.yaml").read_text()) or {}
    picked = {}
    for c in meta.get("expect", []):
        if not str(c["to"]).startswith("svc/"):
            picked.setdefault(bool(c["allowed"]), Case(
                str(c["from"]), str(c["to"]), str(c.get("protocol", "TCP")).lower(),
                c.get("port")))
    return [picked.get(allowed) or picked[not allowed]]


@pytest.mark.root
@pytest.mark.parametrize("index", range(len(SCENARIOS)), ids=[p.name for p in SCENARIOS])
def test_kernel_agrees_in_nftables_mode(index):
    directory = SCENARIOS[index]
    cluster = load_cluster([str(directory)])
    cases = _cases(directory, allowed=index % 2 == 0)
    assert cases
    results = run_nft_cases(build_dataplane(cluster, version="3.32"), "3.32", cases,
                            timeout=0.3)
    judged = [r for r in results if r.skipped is None]
    for result in judged:
        assert result.agree, result.comparison.render()
        assert result.comparison.kernel, "the kernel traced nothing"
    # A case is skipped only for a tunnel device this kernel lacks (the skip says which).
    for result in results:
        if result.skipped is not None:
            assert "module" in result.skipped, result.skipped
    assert judged or all("module" in r.skipped for r in results)


@pytest.mark.root
def test_verify_command_in_nftables_mode():
    import subprocess
    import sys

    directory = next(p for p in SCENARIOS if p.name == "backend-from-frontend")
    proc = subprocess.run(
        [sys.executable, "-c", "from tracer.cli import main; main()", "verify", "-f",
         str(directory), "--from", "myns/other", "--to", "myns/backend", "--protocol", "tcp",
         "--port", "6379", "--dataplane", "nftables", "--show", "all"],
        capture_output=True, text=True, timeout=120, env={**os.environ, "COLUMNS": "240"})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "packets checked: 1, agreed: 1, differing: 0" in proc.stdout
    assert "calico:filter-cali-from-wl-dispatch rule GOTO:filter-cali-fw-" in proc.stdout
    assert "reference walker" in proc.stderr


# Random clusters (tests/strategies.py, the iptables judge's corpus): policies, tiers, named
# ports, nets, one or two nodes, TCP/UDP/ICMP probes. A lab per cluster takes seconds, so the
# suite runs a few; NFT_CORPUS=N runs N (the campaign in docs/nftables.md ran 40).
CORPUS_EXAMPLES = int(os.environ.get("NFT_CORPUS", "2"))


@pytest.mark.root
@settings(max_examples=CORPUS_EXAMPLES, deadline=None, derandomize=True, database=None,
          phases=(Phase.explicit, Phase.generate),
          suppress_health_check=(HealthCheck.too_slow, HealthCheck.data_too_large))
@given(generated_clusters())
def test_random_cluster_agrees_with_kernel_in_nftables_mode(generated: GeneratedCluster):
    with tempfile.TemporaryDirectory(prefix="ctk-nft-verify-") as tmp:
        cluster = load_cluster([str(generated.write(Path(tmp)))])
        results = run_nft_cases(build_dataplane(cluster, version="3.32"), "3.32",
                                list(generated.cases), timeout=0.3)
    judged = [r for r in results if r.skipped is None]
    assert judged, "every packet of this cluster was skipped"
    differing = [r.comparison.render() for r in judged if not r.agree]
    if differing:
        kept = Path(tempfile.mkdtemp(prefix="ctk-nft-verify-diff-"))
        generated.write(kept)
        pytest.fail(f"nftables trace and kernel differ; manifests kept in {kept}\n"
                    + "\n".join(differing[:2]))
