"""`verify` through Services: the kernel's real kube-proxy DNAT judged against the simulator.

The kernel lab holds kube-proxy's chains beside felix's; a probe to a ClusterIP or a NodePort
walks KUBE-SERVICES / KUBE-NODEPORTS → KUBE-SVC (``-m statistic --mode random``) → KUBE-SEP in
the kernel, the backend the kernel drew is read from its trace, and the simulator, pinned to
the same backend, must walk the same rules and reach the same delivery. Every bundled
scenario with a Service is judged (its cross-node backends need IPIP, which this kernel
lacks: those draws are skipped with the reason), and the same cluster over VXLAN, where every
backend on both nodes is compared.
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import replace
import sys
from ipaddress import IPv4Address
from pathlib import Path

import bundled
import pytest
from tracer.dataplane.state import Pins
from tracer.judge import services
from tracer.judge.topology import lab_plan
from tracer.judge.verify import (EXTERNAL, NODE, Case, CaseResult, run_cases, service_cases,
                                 simulator_events)
from tracer.kernel.probe import Probe
from tracer.kernel.realise import KernelLab, missing_requirements
from tracer.kernel.xtrace import KernelEvent
from tracer.kubeproxy.services import service_ports
from tracer.model.loader import load_cluster
from tracer.policy.felix.versions import resolve_version
from tracer.trace.assemble import build_dataplane

ROOT = Path(__file__).resolve().parent.parent
CLUSTERIP = ROOT / "scenarios" / "service-clusterip"
_SERVICE_KIND = re.compile(r"^kind:\s*Service\s*$", re.MULTILINE)


def _has_service(directory: Path) -> bool:
    return any(_SERVICE_KIND.search(f.read_text()) for f in directory.glob("*.yaml"))


SERVICE_SCENARIOS = tuple(p for p in bundled.SCENARIOS + bundled.LABS if _has_service(p))

needs_lab = pytest.mark.skipif(missing_requirements() is not None,
                               reason=str(missing_requirements()))


def _dataplane(directory: Path):
    cluster = load_cluster([str(directory)])
    return build_dataplane(cluster, version=resolve_version(cluster, None))


def _vxlan_copy(tmp_path: Path) -> Path:
    """The service-clusterip cluster with its pool on VXLAN instead of IPIP: this kernel has
    no ipip module, and over VXLAN every backend on either node is reachable in the lab."""
    for source in CLUSTERIP.glob("*.yaml"):
        text = source.read_text()
        if source.name == "cluster.yaml":
            assert "ipipMode: Always" in text and "vxlanMode: Never" in text
            text = text.replace("ipipMode: Always", "ipipMode: Never")
            text = text.replace("vxlanMode: Never", "vxlanMode: Always")
        (tmp_path / source.name).write_text(text)
    (tmp_path / "udp.yaml").write_text(UDP_SERVICE)
    return tmp_path


# A UDP Service (and NodePort) on the web pods, open to everyone: UDP conntrack through the
# DNAT, and an allowed NodePort from outside.
UDP_SERVICE = """\
apiVersion: v1
kind: Service
metadata: {name: dns, namespace: demo}
spec:
  type: NodePort
  clusterIP: 10.96.0.53
  selector: {app: web}
  ports:
  - {name: dns, protocol: UDP, port: 53, targetPort: 5353, nodePort: 30053}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: web-allow-dns, namespace: demo}
spec:
  podSelector: {matchLabels: {app: web}}
  policyTypes: [Ingress]
  ingress:
  - ports: [{protocol: UDP, port: 5353}]
"""


def _report(results: list[CaseResult]) -> str:
    return "\n\n".join(f"DIFF {r.case.describe()} [{r.detail}]\n{r.comparison.render(160)}"
                       for r in results if not r.skipped and not r.agree)


# ------------------------------------------------------------------ without the kernel


def test_every_bundled_service_scenario_is_found():
    names = {p.name for p in SERVICE_SCENARIOS}
    assert {"service-clusterip", "11-nat-outgoing-and-service"} <= names


def test_destinations_name_a_cluster_ip_or_a_node_port():
    cluster = load_cluster([str(CLUSTERIP)])
    node_1 = cluster.nodes["node-1"].address.ip
    clusterip = services.service_destination(cluster, "svc/demo/web", "tcp", None, None)
    assert (clusterip.kind, clusterip.address, clusterip.port) == \
        ("ClusterIP", IPv4Address("10.96.0.50"), 80)
    assert clusterip.simulator == "svc/demo/web:80"
    nodeport = services.service_destination(cluster, "node:node-1", "tcp", 30080, node_1)
    assert (nodeport.kind, nodeport.address, nodeport.port) == ("NodePort", node_1, 30080)
    assert nodeport.target.label == "svc/demo/web:80"
    # not a NodePort: another port, another protocol, or no port at all
    assert services.service_destination(cluster, "node:node-1", "tcp", 80, node_1) is None
    assert services.service_destination(cluster, "node:node-1", "udp", 30080, node_1) is None
    assert services.service_destination(cluster, "demo/web-1", "tcp", 8080, None) is None


def test_service_cases_cover_every_port_node_and_source():
    cluster = load_cluster([str(CLUSTERIP)])
    pods = sorted(cluster.endpoints)
    plain = service_cases(cluster)
    assert {c.destination for c in plain} == {"svc/demo/idle", "svc/demo/web", "node:node-1",
                                              "node:node-2"}
    assert {c.source for c in plain} == set(pods)
    assert all(c.port == 30080 for c in plain if c.destination.startswith(NODE))
    hosts = service_cases(cluster, hosts=True)
    assert Case(EXTERNAL, "node:node-1", "tcp", 30080) in hosts
    assert Case("node:node-2", "node:node-1", "tcp", 30080) in hosts
    assert not any(c.source == c.destination for c in hosts)
    assert not any(c.source == EXTERNAL and c.destination.startswith("svc/") for c in hosts)


def _event(chain: str, verdict: str, target: str | None) -> KernelEvent:
    return KernelEvent("node-1", "nat", chain, "rule", verdict, "-j X", target, "1", None, None)


def test_the_kernel_draw_is_read_from_its_jump_into_a_kube_sep():
    cluster = load_cluster([str(CLUSTERIP)])
    view = next(v for v in service_ports(cluster) if v.service.name == "web")
    target = services.ServiceTarget(view)
    events = (_event("PREROUTING", "JUMP", "KUBE-SERVICES"),
              _event("KUBE-SERVICES", "JUMP", target.svc_chain),
              _event(target.svc_chain, "JUMP", target.sep_chain(2)),
              _event(target.sep_chain(2), "ACCEPT", None))
    draws = services.kernel_draw(events)
    assert draws == {target.svc_chain: target.sep_chain(2)}
    assert services.backend_index(target, draws) == 2
    assert services.backend_index(target, {}) is None


@pytest.mark.parametrize("scenario, args, message", [
    ("host-endpoint", ["--services"], "--services: the manifests define no Service"),
    ("service-clusterip", ["--from", "demo/client", "--to", "svc/demo/nope"],
     "no Service demo/nope in the cluster"),
    ("service-clusterip", ["--from", "demo/client", "--to", "svc/demo/web", "--protocol", "udp"],
     "Service demo/web has ports 80/tcp"),
    ("service-clusterip", ["--from", "demo/client", "--to", "svc/demo/web", "--protocol", "icmp"],
     "kube-proxy proxies TCP, UDP and SCTP only, not ICMP"),
], ids=["no-services", "unknown-service", "wrong-protocol", "icmp"])
def test_cli_refuses_bad_service_cases_before_building_a_lab(scenario, args, message):
    result = subprocess.run([sys.executable, "-c", "from tracer.cli import main; main()",
                             "verify", "-f", str(ROOT / "scenarios" / scenario), *args],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.stderr
    assert not result.stdout        # refused before any probe


# ------------------------------------------------------------------ through the kernel


def _sample_cases(cluster) -> list[Case]:
    """Each Service port from every pod of the first node and from the last node's own
    stack; each NodePort from the external host on every node and from a pod to the other
    node's NodePort."""
    nodes = sorted(cluster.nodes)
    local_pods = [k for k in sorted(cluster.endpoints)
                  if cluster.endpoints[k].pod.node == nodes[0]]
    cases = []
    for view in service_ports(cluster):
        ref = f"svc/{view.service.namespace}/{view.service.name}"
        port = view.port.port
        cases += [Case(pod, ref, view.protocol, port) for pod in local_pods]
        cases.append(Case(f"{NODE}{nodes[-1]}", ref, view.protocol, port))
        if view.node_port:
            cases += [Case(EXTERNAL, f"{NODE}{n}", view.protocol, view.node_port) for n in nodes]
            cases.append(Case(local_pods[0], f"{NODE}{nodes[-1]}", view.protocol,
                              view.node_port))
    return cases


@pytest.mark.root
@needs_lab
@pytest.mark.parametrize("scenario", SERVICE_SCENARIOS, ids=[p.name for p in SERVICE_SCENARIOS])
def test_bundled_service_scenario_agrees_with_kernel(scenario: Path) -> None:
    dataplane = _dataplane(scenario)
    results = run_cases(dataplane, _sample_cases(dataplane.cluster))
    checked = [r for r in results if not r.skipped]
    assert not _report(results), f"{scenario.name}: simulator and kernel differ\n" \
        + _report(results)
    never = [r for r in results if r.skipped and services.NEVER_DRAWN in r.skipped]
    assert not never, [f"{r.case.describe()} [{r.detail}]" for r in never]
    # only a tunnel this kernel lacks may keep a backend from being compared
    assert all("across a tunnel" in r.skipped for r in results if r.skipped)
    kinds = {r.detail.split()[0] for r in checked}
    assert kinds == {"ClusterIP", "NodePort"}
    assert {r.simulated.verdict for r in checked} == {"allowed", "dropped"}
    # a Service without endpoints: kube-proxy's REJECT, compared as it is (nothing drawn)
    assert any("no endpoint drawn" in r.detail for r in checked)


@pytest.mark.root
@needs_lab
def test_every_backend_on_both_nodes_agrees_over_vxlan(tmp_path: Path) -> None:
    dataplane = _dataplane(_vxlan_copy(tmp_path))
    cases = [Case("demo/client", "svc/demo/web", "tcp", 80),        # allowed to every backend
             Case("demo/batch", "svc/demo/web", "tcp", 80),         # the backends' policy denies
             Case(EXTERNAL, "node:node-1", "tcp", 30080),           # NodePort, SNAT to node-1
             Case("demo/client", "node:node-2", "tcp", 30080),      # a pod to another node's
             Case("demo/web-1", "svc/demo/dns:dns", "udp", None),   # UDP, hairpin included
             Case(EXTERNAL, "node:node-2", "udp", 30053)]           # allowed from outside
    results = run_cases(dataplane, cases)
    assert not any(r.skipped for r in results), [(r.detail, r.skipped) for r in results]
    assert not _report(results), _report(results)
    for case in cases:
        drawn = {r.detail.split(" endpoint ")[1].split()[0] for r in results if r.case == case}
        assert drawn == {"1/3", "2/3", "3/3"}, case
    assert {r.simulated.verdict for r in results if r.case == cases[0]} == {"allowed"}
    assert {r.simulated.verdict for r in results if r.case == cases[1]} == {"dropped"}
    assert {r.simulated.verdict for r in results if r.case.protocol == "udp"} == {"allowed"}


@pytest.mark.root
@needs_lab
def test_a_simulator_pinned_to_another_backend_is_caught(tmp_path: Path) -> None:
    """The comparison really checks the dispatch: the kernel's draw, simulated with the
    statistic pinned to a different KUBE-SEP, disagrees."""
    dataplane = _dataplane(_vxlan_copy(tmp_path))
    cluster = dataplane.cluster
    dest = services.service_destination(cluster, "svc/demo/web", "tcp", None, None)
    backends = tuple((b.ip, b.port) for b in dest.target.endpoints)
    with KernelLab(lab_plan(dataplane).spec) as lab:
        draw = services.draw_once(lab, dest.target, Probe(
            "demo/client", dest.address, "tcp", dport=dest.port, timeout=0.5,
            arrivals=backends))
    assert draw.index is not None
    right = services.simulate(dataplane, "demo/client", dest, "tcp", draw)
    assert services.judge_draw(dest, draw, right, simulator_events(right)).agree
    other = (draw.index + 1) % len(backends)
    wrong_pins = Pins(statistic={dest.target.svc_chain: dest.target.sep_chain(other)})
    wrong_draw = services.Draw(draw.index, wrong_pins, draw.kernel)
    wrong = services.simulate(dataplane, "demo/client", dest, "tcp", wrong_draw)
    verdict = services.judge_draw(dest, draw, wrong, simulator_events(wrong))
    assert not verdict.agree
    assert "KUBE-SEP" in verdict.reason or "KUBE-SVC" in verdict.reason, verdict.reason
    # ... and the addresses the packet arrives with are checked too (the DNAT and SNAT result)
    src, dst, dport = draw.kernel.arrived_as
    assert (dst, dport) == (dest.target.endpoints[draw.index].ip,
                            dest.target.endpoints[draw.index].port)
    moved = replace(draw, kernel=replace(draw.kernel, arrived_as=(dst, dst, dport)))
    verdict = services.judge_draw(dest, moved, right, simulator_events(right))
    assert not verdict.agree and "arrives as" in verdict.reason, verdict.reason


def test_masquerade_out_of_a_pod_veth_takes_the_node_address(tmp_path: Path) -> None:
    """A NodePort to a backend on the same node leaves through the pod's cali veth, which
    has no address: MASQUERADE takes the node's (the kernel judge found the simulator
    taking the pod's own address, so the backend saw a packet from itself)."""
    dataplane = _dataplane(_vxlan_copy(tmp_path))
    node_1 = dataplane.cluster.nodes["node-1"].address.ip
    dest = services.service_destination(dataplane.cluster, "node:node-1", "udp", 30053, node_1)
    web_1 = next(i for i, b in enumerate(dest.target.endpoints) if b.pod == "demo/web-1")
    pins = Pins(statistic={dest.target.svc_chain: dest.target.sep_chain(web_1)})
    trace = services.simulate(dataplane, "demo/client", dest, "udp",
                              services.Draw(web_1, pins, None))
    assert trace.verdict == "allowed"
    assert services.delivered_as(trace) == (node_1, IPv4Address("10.244.0.10"), 5353)

