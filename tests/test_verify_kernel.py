"""The kernel judges the simulator: every bundled scenario and a random corpus, zero differences.

Each probe is traced by the simulator and sent for real through the cluster realised in network
namespaces (``tracer.judge.verify``); the two netfilter traces and the delivery must agree.

Part one walks every scenario under ``scenarios/``: all ordered pod pairs, TCP and UDP, on the
ports its ``scenario.yaml`` expectations name plus 80; then every pod to and from every node's
own stack and a host outside the cluster, TCP and ICMP. Part two lets hypothesis build random
clusters (``tests/strategies.py``): k8s and Calico policies, tiers, named ports, nets, one or
two nodes (VXLAN between them), probes over TCP, UDP and ICMP. Part three replays the saved
regression clusters under ``tests/data/verify/``.

The packet counts of each part are printed at the end of the module (``-s`` not needed), for
example ``pytest -m root tests/test_verify_kernel.py``.
"""

from __future__ import annotations

import contextlib
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import bundled
import pytest
from hypothesis import HealthCheck, Phase, given, settings

from tracer.trace.assemble import build_dataplane
from tracer.judge import verify as judge_verify
from tracer.judge.verify import Case, CaseResult, run_cases
from tracer.kernel.realise import missing_requirements
from tracer.model.cluster import Cluster
from tracer.model.loader import load_cluster, load_scenario_meta
from tracer.policy.felix.versions import resolve_version

from strategies import GeneratedCluster, corpus_features, generated_clusters

pytestmark = [pytest.mark.root,
              pytest.mark.skipif(missing_requirements() is not None,
                                 reason=str(missing_requirements()))]

ROOT = Path(__file__).resolve().parent.parent
SCENARIOS = bundled.SCENARIOS
REGRESSIONS_DIR = Path(__file__).resolve().parent / "data" / "verify"
# Saved clusters on which the simulator and the kernel once disagreed: name -> xfail reason
# while the difference stands, None once it is fixed.
REGRESSIONS: dict[str, str | None] = {}
RENDER_WIDTH = 160


# ---------------------------------------------------------------------------- tallies


@dataclass
class Tally:
    """Packets of one part: sent (checked), agreed, differing, and skipped with reasons."""

    checked: int = 0
    agreed: int = 0
    skipped: int = 0
    clusters: int = 0
    skip_reasons: dict[str, int] = field(default_factory=dict)
    features: dict[str, int] = field(default_factory=dict)     # what the packets exercised

    @property
    def differing(self) -> int:
        return self.checked - self.agreed

    def add(self, results: list[CaseResult]) -> None:
        self.clusters += 1
        for result in results:
            if result.skipped:
                self.skipped += 1
                self.skip_reasons[result.skipped] = self.skip_reasons.get(result.skipped, 0) + 1
                continue
            self.checked += 1
            self.agreed += result.agree

    def count(self, features: dict[str, int]) -> None:
        for name, number in features.items():
            self.features[name] = self.features.get(name, 0) + number

    def feature_lines(self) -> list[str]:
        groups = {"objects": {}, "clusters with": {}, "packets": {}}
        for name, number in sorted(self.features.items()):
            if name.startswith("with "):
                groups["clusters with"][name[5:]] = number
            elif name.endswith(" packets"):
                groups["packets"][name[:-8]] = number
            else:
                groups["objects"][name] = number
        return [f"{group}: " + ", ".join(f"{name} {n}" for name, n in items.items())
                for group, items in groups.items() if items]

    def line(self, part: str) -> str:
        return (f"{part:<22} clusters: {self.clusters:>3}  packets checked: {self.checked:>4}, "
                f"agreed: {self.agreed:>4}, differing: {self.differing}, "
                f"skipped: {self.skipped}")


TALLIES = {"bundled scenarios": Tally(), "host and external ends": Tally(),
           "random corpus": Tally(), "regressions": Tally()}


@pytest.fixture(scope="module", autouse=True)
def kernel_judge_summary(request):
    """Print the packet counts of every part once the module is done."""
    yield
    lines = ["", "kernel judge summary (simulator vs netfilter trace):"]
    lines += [f"  {tally.line(part)}" for part, tally in TALLIES.items() if tally.clusters]
    for part, tally in TALLIES.items():
        for reason, count in sorted(tally.skip_reasons.items()):
            lines.append(f"  {part}: skipped {count}: {reason}")
        lines += [f"  {part} {line}" for line in tally.feature_lines()]
    # Written past output capture (as pytest's own logging does), so it shows without -s.
    plugins = request.config.pluginmanager
    reporter, capture = plugins.get_plugin("terminalreporter"), plugins.get_plugin("capturemanager")
    with capture.global_and_fixture_disabled() if capture else contextlib.nullcontext():
        for line in lines:
            if reporter is not None:
                reporter.write_line(line)
            else:
                print(line)


# ---------------------------------------------------------------------------- helpers


def judge(paths: list[Path], cases_for) -> tuple[Cluster, list[CaseResult]]:
    """Load, render and realise the manifests, then judge ``cases_for(cluster)``."""
    cluster = load_cluster([str(p) for p in paths])
    dataplane = build_dataplane(cluster, version=resolve_version(cluster, None))
    return cluster, run_cases(dataplane, cases_for(cluster))


def packet_features(cluster: Cluster, results: list[CaseResult]) -> dict[str, int]:
    """Packets by protocol, by verdict and whether they crossed nodes."""
    counts: dict[str, int] = {}
    for result in results:
        if result.skipped:
            continue
        src = cluster.endpoints[result.case.source].pod.node
        dst = cluster.endpoints[result.case.destination].pod.node
        for key in (f"{result.case.protocol} packets", f"{result.simulated.verdict} packets",
                    "cross-node packets" if src != dst else None):
            if key:
                counts[key] = counts.get(key, 0) + 1
    return counts


def differences_report(results: list[CaseResult]) -> str:
    differing = [r for r in results if not r.skipped and not r.agree]
    return "\n\n".join(f"DIFF {r.case.describe()} (simulator: {r.simulated.verdict})\n"
                       f"{r.comparison.render(RENDER_WIDTH)}" for r in differing)


def all_pairs(cluster: Cluster, protocols: tuple[str, ...], ports: list[int]) -> list[Case]:
    keys = sorted(cluster.endpoints)
    return [Case(src, dst, protocol, None if protocol == "icmp" else port)
            for src in keys for dst in keys if src != dst
            for protocol in protocols
            for port in (ports if protocol != "icmp" else [None])]


def scenario_ports(directory: Path) -> list[int]:
    """80 and every port the scenario's expectations name."""
    expectations = load_scenario_meta(directory).get("expect") or []
    return sorted({80} | {int(e["port"]) for e in expectations if e.get("port")})


# ---------------------------------------------------------------------------- part 1


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[p.name for p in SCENARIOS])
def test_bundled_scenario_agrees_with_kernel(scenario: Path) -> None:
    ports = scenario_ports(scenario)
    _, results = judge([scenario], lambda cluster: all_pairs(cluster, ("tcp", "udp"), ports))
    TALLIES["bundled scenarios"].add(results)
    checked = [r for r in results if not r.skipped]
    assert checked, f"{scenario.name}: every packet was skipped"
    report = differences_report(results)
    assert not report, f"{scenario.name}: simulator and kernel differ\n{report}"


# The scenarios whose host paths differ from each other (host endpoints and failsafe ports,
# natOutgoing to the outside, hosts across VXLAN and routed underlays, Services); every
# scenario was checked the same way with `calico-trace verify --all-pairs --hosts`.
HOST_SCENARIOS = [ROOT / "scenarios" / name for name in (
    "host-endpoint", "multinode-vxlan", "multinode-routed", "recipe-14-deny-external-egress",
    "service-clusterip")]


@pytest.mark.parametrize("scenario", HOST_SCENARIOS, ids=[p.name for p in HOST_SCENARIOS])
def test_host_and_external_ends_agree_with_kernel(scenario: Path) -> None:
    """Probes from and to the nodes' own stacks and a host outside the cluster: host
    endpoints, failsafe ports, endpoint-to-host, natOutgoing and the tunnels' MASQUERADE."""
    def cases(cluster: Cluster) -> list[Case]:
        pairs = [pair for pair in judge_verify.all_pairs(cluster, hosts=True)
                 if not set(pair) <= set(cluster.endpoints)]
        ports = sorted({80} | ({22} if cluster.host_endpoints else set()))
        return [Case(src, dst, protocol, None if protocol == "icmp" else port)
                for src, dst in pairs for protocol in ("tcp", "icmp")
                for port in (ports if protocol != "icmp" else [None])]
    _, results = judge([scenario], cases)
    TALLIES["host and external ends"].add(results)
    assert any(not r.skipped for r in results), f"{scenario.name}: every packet was skipped"
    report = differences_report(results)
    assert not report, f"{scenario.name}: simulator and kernel differ\n{report}"


# ---------------------------------------------------------------------------- part 2


@settings(max_examples=18, deadline=None, derandomize=True, database=None,
          phases=(Phase.explicit, Phase.generate),       # no shrinking: each run builds a lab
          suppress_health_check=(HealthCheck.too_slow, HealthCheck.data_too_large))
@given(generated_clusters())
def test_random_cluster_agrees_with_kernel(generated: GeneratedCluster) -> None:
    with tempfile.TemporaryDirectory(prefix="ctk-verify-") as tmp:
        manifest = generated.write(Path(tmp))
        cluster, results = judge([manifest], lambda cluster: list(generated.cases))
    tally = TALLIES["random corpus"]
    tally.add(results)
    assert any(not r.skipped for r in results), "every packet of this cluster was skipped"
    tally.count(corpus_features(generated))
    tally.count(packet_features(cluster, results))
    report = differences_report(results)
    if report:
        kept = Path(tempfile.mkdtemp(prefix="ctk-verify-diff-"))
        generated.write(kept)
        pytest.fail(f"simulator and kernel differ; manifests kept in {kept} (replay with "
                    f"`calico-trace verify -f {kept} --all-pairs --protocol tcp --protocol udp "
                    f"--protocol icmp --port <port>`)\n{report}")


# ---------------------------------------------------------------------------- part 3


def _regression_params():
    if not REGRESSIONS_DIR.is_dir():
        return []
    params = []
    for directory in sorted(p for p in REGRESSIONS_DIR.iterdir() if p.is_dir()):
        reason = REGRESSIONS.get(directory.name)
        marks = [pytest.mark.xfail(strict=True, reason=reason)] if reason else []
        params.append(pytest.param(directory, id=directory.name, marks=marks))
    return params


@pytest.mark.parametrize("regression", _regression_params())
def test_saved_regression_agrees_with_kernel(regression: Path) -> None:
    ports = scenario_ports(regression)
    _, results = judge([regression],
                       lambda cluster: all_pairs(cluster, ("tcp", "udp", "icmp"), ports))
    TALLIES["regressions"].add(results)
    report = differences_report(results)
    assert not report, f"{regression.name}: simulator and kernel differ\n{report}"
