"""kube-proxy (iptables mode): chain names, rule text, merge order with felix, Service traces.

Known answers come from kubernetes' own ``pkg/proxy/iptables/proxier_test.go``
(ns1/svc1:p80 -> KUBE-SVC-XPGD46QRK7WJZT7O, ...)."""

from __future__ import annotations

import json
import random
from ipaddress import IPv4Address, IPv4Interface, IPv4Network
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import in_netns

from tracer.cli import cli as cli_main
from tracer.trace.assemble import build_dataplane
from tracer.dataplane.interpreter import PacketView, run_hook
from doubles import FakeEnvironment
from tracer.dataplane.ipsets import format_ipsets
from tracer.dataplane.iptables_save import format_rule, format_ruleset, parse_ruleset
from tracer.dataplane.ir import Ruleset, Table
from tracer.dataplane.trace import DropRecord, NatRecord
from tracer.errors import InputError
from tracer.kubeproxy import names
from tracer.trace.forks import trace_forks
from tracer.kubeproxy.merge import merge_kube_proxy, with_kube_proxy
from tracer.trace.forks import backend_pins
from tracer.kubeproxy.probe import pick_endpoint, resolve_service
from tracer.kubeproxy.render import render_kube_proxy
from tracer.kubeproxy.services import service_ports
from tracer.model.cluster import Cluster, EndpointSlice, IPPool, Node, Service, ServicePort
from tracer.model.loader import load_cluster
from tracer.policy.felix import render_node
from tracer.explain import explain
from tracer.trace.tracing import TraceRequest, trace_packet

SCENARIO = Path(__file__).parent.parent / "scenarios" / "service-clusterip"
VERSION = "3.32.1"


# ----------------------------------------------------------------------------- fixtures


def known_cluster() -> Cluster:
    """kube-proxy's test fixture: ns1/svc1:p80 with two endpoints, ns2/svc2:p8080 with one,
    ns3/svc3:p80 with none; cluster CIDR 10.0.0.0/8."""
    cluster = Cluster()
    cluster.nodes["node1"] = Node("node1", IPv4Interface("192.168.0.2/24"))
    cluster.ippools["pool"] = IPPool("pool", IPv4Network("10.0.0.0/8"))
    for ns, name, ip, port, node_port in (("ns1", "svc1", "172.30.0.41", ("p80", 80), None),
                                          ("ns2", "svc2", "172.30.0.42", ("p8080", 8080),
                                           3001),
                                          ("ns3", "svc3", "172.30.0.43", ("p80", 80), 3003)):
        cluster.services[f"{ns}/{name}"] = Service(
            ns, name, IPv4Address(ip), type="NodePort" if node_port else "ClusterIP",
            ports=(ServicePort(port[1], port[1], "TCP", port[0], node_port),))
    cluster.endpoint_slices += [
        EndpointSlice("ns1", "svc1-a", "svc1", (IPv4Address("10.180.2.1"),
                                               IPv4Address("10.180.0.1")), (("p80", 80, "TCP"),)),
        EndpointSlice("ns2", "svc2-a", "svc2", (IPv4Address("10.0.2.1"),),
                      (("p8080", 8080, "TCP"),)),
        EndpointSlice("ns3", "svc3-a", "svc3", (), (("p80", 80, "TCP"),)),
    ]
    return cluster


def lines(chains, table: Table) -> list[str]:
    return [format_rule(name, rule) for name, chain in chains[table].items()
            for rule in chain.rules]


@pytest.fixture(scope="module")
def scenario():
    return load_cluster([SCENARIO])


@pytest.fixture(scope="module")
def dataplane(scenario):
    return build_dataplane(scenario, version=VERSION)


# ----------------------------------------------------------------------------- names


def test_chain_names_match_kube_proxy_known_answers():
    assert names.service_port_name("ns1", "svc1", "p80") == "ns1/svc1:p80"
    assert names.service_port_name("ns1", "svc1", None) == "ns1/svc1"
    assert names.svc_chain("ns1/svc1:p80", "tcp") == "KUBE-SVC-XPGD46QRK7WJZT7O"
    assert names.ext_chain("ns1/svc1:p80", "TCP") == "KUBE-EXT-XPGD46QRK7WJZT7O"
    assert names.svc_chain("ns2/svc2:p8080", "tcp") == "KUBE-SVC-2VJB64SDSIJUP5T6"
    assert names.sep_chain("ns1/svc1:p80", "tcp", "10.180.0.1:80") == "KUBE-SEP-SXIVWICOYRO3J4NJ"
    assert names.sep_chain("ns1/svc1:p80", "tcp", "10.180.2.1:80") == "KUBE-SEP-ZX7GRIZKSNUQ3LAJ"
    assert names.sep_chain("ns2/svc2:p8080", "tcp", "10.0.2.1:8080") == \
        "KUBE-SEP-UHEGFW77JX3KXTOV"


def test_probabilities_are_formatted_and_quantised_like_kube_proxy_and_xt_statistic():
    assert [names.probability(n) for n in (2, 3, 4, 7)] == \
        ["0.5000000000", "0.3333333333", "0.2500000000", "0.1428571429"]
    assert f"{names.quantised(names.probability(3)):.11f}" == "0.33333333349"
    assert names.quantised("0.5000000000") == 0.5


# ----------------------------------------------------------------------------- rule text

# kube-proxy's expected rules for this fixture (proxier_test.go), as iptables-save prints
# them back (header options first, /32, MARK --or/--xor-mark as --set-xmark).
EXPECTED_NAT = """\
-A PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES
-A OUTPUT -m comment --comment "kubernetes service portals" -j KUBE-SERVICES
-A POSTROUTING -m comment --comment "kubernetes postrouting rules" -j KUBE-POSTROUTING
-A KUBE-SERVICES -d 172.30.0.41/32 -p tcp -m comment --comment "ns1/svc1:p80 cluster IP" -m tcp --dport 80 -j KUBE-SVC-XPGD46QRK7WJZT7O
-A KUBE-SERVICES -d 172.30.0.42/32 -p tcp -m comment --comment "ns2/svc2:p8080 cluster IP" -m tcp --dport 8080 -j KUBE-SVC-2VJB64SDSIJUP5T6
-A KUBE-SERVICES -m comment --comment "kubernetes service nodeports; NOTE: this must be the last rule in this chain" -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS
-A KUBE-NODEPORTS -p tcp -m comment --comment "ns2/svc2:p8080" -m tcp --dport 3001 -j KUBE-EXT-2VJB64SDSIJUP5T6
-A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN
-A KUBE-POSTROUTING -j MARK --set-xmark 0x4000/0x0
-A KUBE-POSTROUTING -m comment --comment "kubernetes service traffic requiring SNAT" -j MASQUERADE --random-fully
-A KUBE-MARK-MASQ -j MARK --set-xmark 0x4000/0x4000
-A KUBE-SVC-XPGD46QRK7WJZT7O ! -s 10.0.0.0/8 -d 172.30.0.41/32 -p tcp -m comment --comment "ns1/svc1:p80 cluster IP" -m tcp --dport 80 -j KUBE-MARK-MASQ
-A KUBE-SVC-XPGD46QRK7WJZT7O -m comment --comment "ns1/svc1:p80 -> 10.180.0.1:80" -m statistic --mode random --probability 0.50000000000 -j KUBE-SEP-SXIVWICOYRO3J4NJ
-A KUBE-SVC-XPGD46QRK7WJZT7O -m comment --comment "ns1/svc1:p80 -> 10.180.2.1:80" -j KUBE-SEP-ZX7GRIZKSNUQ3LAJ
-A KUBE-SEP-SXIVWICOYRO3J4NJ -s 10.180.0.1/32 -m comment --comment "ns1/svc1:p80" -j KUBE-MARK-MASQ
-A KUBE-SEP-SXIVWICOYRO3J4NJ -p tcp -m comment --comment "ns1/svc1:p80" -m tcp -j DNAT --to-destination 10.180.0.1:80
-A KUBE-SEP-ZX7GRIZKSNUQ3LAJ -s 10.180.2.1/32 -m comment --comment "ns1/svc1:p80" -j KUBE-MARK-MASQ
-A KUBE-SEP-ZX7GRIZKSNUQ3LAJ -p tcp -m comment --comment "ns1/svc1:p80" -m tcp -j DNAT --to-destination 10.180.2.1:80
-A KUBE-EXT-2VJB64SDSIJUP5T6 -m comment --comment "masquerade traffic for ns2/svc2:p8080 external destinations" -j KUBE-MARK-MASQ
-A KUBE-EXT-2VJB64SDSIJUP5T6 -j KUBE-SVC-2VJB64SDSIJUP5T6
-A KUBE-SVC-2VJB64SDSIJUP5T6 ! -s 10.0.0.0/8 -d 172.30.0.42/32 -p tcp -m comment --comment "ns2/svc2:p8080 cluster IP" -m tcp --dport 8080 -j KUBE-MARK-MASQ
-A KUBE-SVC-2VJB64SDSIJUP5T6 -m comment --comment "ns2/svc2:p8080 -> 10.0.2.1:8080" -j KUBE-SEP-UHEGFW77JX3KXTOV
-A KUBE-SEP-UHEGFW77JX3KXTOV -s 10.0.2.1/32 -m comment --comment "ns2/svc2:p8080" -j KUBE-MARK-MASQ
-A KUBE-SEP-UHEGFW77JX3KXTOV -p tcp -m comment --comment "ns2/svc2:p8080" -m tcp -j DNAT --to-destination 10.0.2.1:8080
"""

EXPECTED_FILTER = """\
-A INPUT -m conntrack --ctstate NEW -m comment --comment "kubernetes load balancer firewall" -j KUBE-PROXY-FIREWALL
-A INPUT -m comment --comment "kubernetes health check service ports" -j KUBE-NODEPORTS
-A INPUT -m conntrack --ctstate NEW -m comment --comment "kubernetes externally-visible service portals" -j KUBE-EXTERNAL-SERVICES
-A INPUT -j KUBE-FIREWALL
-A FORWARD -m conntrack --ctstate NEW -m comment --comment "kubernetes load balancer firewall" -j KUBE-PROXY-FIREWALL
-A FORWARD -m comment --comment "kubernetes forwarding rules" -j KUBE-FORWARD
-A FORWARD -m conntrack --ctstate NEW -m comment --comment "kubernetes service portals" -j KUBE-SERVICES
-A FORWARD -m conntrack --ctstate NEW -m comment --comment "kubernetes externally-visible service portals" -j KUBE-EXTERNAL-SERVICES
-A OUTPUT -m conntrack --ctstate NEW -m comment --comment "kubernetes load balancer firewall" -j KUBE-PROXY-FIREWALL
-A OUTPUT -m conntrack --ctstate NEW -m comment --comment "kubernetes service portals" -j KUBE-SERVICES
-A OUTPUT -j KUBE-FIREWALL
-A KUBE-SERVICES -d 172.30.0.43/32 -p tcp -m comment --comment "ns3/svc3:p80 has no endpoints" -m tcp --dport 80 -j REJECT --reject-with icmp-port-unreachable
-A KUBE-EXTERNAL-SERVICES -p tcp -m comment --comment "ns3/svc3:p80 has no endpoints" -m addrtype --dst-type LOCAL -m tcp --dport 3003 -j REJECT --reject-with icmp-port-unreachable
-A KUBE-FORWARD -m conntrack --ctstate INVALID -j DROP
-A KUBE-FORWARD -m comment --comment "kubernetes forwarding rules" -m mark --mark 0x4000/0x4000 -j ACCEPT
-A KUBE-FORWARD -m comment --comment "kubernetes forwarding conntrack rule" -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
-A KUBE-FIREWALL ! -s 127.0.0.0/8 -d 127.0.0.0/8 -m comment --comment "block incoming localnet connections" -m conntrack ! --ctstate RELATED,ESTABLISHED,DNAT -j DROP
"""


def test_rendered_rules_read_as_kube_proxy_writes_them():
    chains = render_kube_proxy(known_cluster(), "node1")
    assert lines(chains, Table.NAT) == EXPECTED_NAT.splitlines()
    assert lines(chains, Table.FILTER) == EXPECTED_FILTER.splitlines()
    # No endpoints: no nat chains at all for svc3, only the REJECTs in filter.
    assert not any("svc3" in line for line in lines(chains, Table.NAT))
    assert all(r.provenance.role == "kube-proxy" for c in chains[Table.NAT].values()
               for r in c.rules)


def test_endpoints_sorted_by_address_string_and_three_way_probabilities(scenario):
    view, = [v for v in service_ports(scenario) if v.service.name == "web"]
    assert [b.address for b in view.endpoints] == \
        ["10.244.0.10:8080", "10.244.0.74:8080", "10.244.0.75:8080"]
    assert [b.pod for b in view.endpoints] == ["demo/web-1", "demo/web-2", "demo/web-3"]
    chain = render_kube_proxy(scenario, "node-1")[Table.NAT][view.svc_chain]
    text = [format_rule(chain.name, r) for r in chain.rules]
    assert "--probability 0.33333333349 -j KUBE-SEP-" in text[1]
    assert "--probability 0.50000000000 -j KUBE-SEP-" in text[2]
    assert "statistic" not in text[3] and text[3].endswith(view.sep_chain(view.endpoints[2]))


def test_endpoints_come_from_the_selector_when_no_slice_exists():
    cluster = load_cluster([SCENARIO])
    cluster.endpoint_slices.clear()
    view, = [v for v in service_ports(cluster) if v.service.name == "web"]
    # targetPort 8080 on every app=web pod, as the EndpointSlice controller would publish.
    assert [b.describe() for b in view.endpoints] == [
        "demo/web-1 (10.244.0.10:8080)", "demo/web-2 (10.244.0.74:8080)",
        "demo/web-3 (10.244.0.75:8080)"]


def test_kube_proxy_statistic_rules_split_new_connections_evenly(scenario):
    """Drawing at random as xt_statistic does, each backend gets about a third."""
    ruleset = Ruleset(tables=render_kube_proxy(scenario, "node-1"))
    rng = random.Random(7)
    env = FakeEnvironment(choose=lambda m, p: rng.random() < m.probability)
    hits: dict[str, int] = {}
    for _ in range(6000):
        result = run_hook(ruleset, Table.NAT, "PREROUTING", _syn_to_service(), env)
        hits[result.nat.to_destination] = hits.get(result.nat.to_destination, 0) + 1
    assert set(hits) == {"10.244.0.10:8080", "10.244.0.74:8080", "10.244.0.75:8080"}
    assert all(abs(n / 6000 - 1 / 3) < 0.03 for n in hits.values()), hits


def _syn_to_service() -> PacketView:
    return PacketView(src=int(IPv4Address("10.244.0.20")), dst=int(IPv4Address("10.96.0.50")),
                      protocol=6, sport=40000, dport=80, icmp_type=None, icmp_code=None,
                      tcp_flags=0x02, iif="cali0e8ee4fc632", oif=None, mark=0, ct_state="NEW")


@pytest.mark.parametrize("index", [0, 1, 2])
def test_pinning_makes_exactly_the_chosen_rule_fire(scenario, index):
    node = build_dataplane(scenario, version=VERSION).nodes["node-1"]
    target = resolve_service(scenario, "svc/demo/web")
    env = node.environment(backend_pins(target, index))
    result = run_hook(node.ruleset, Table.NAT, "PREROUTING", _syn_to_service(), env)
    assert result.nat.to_destination == target.endpoints[index].address
    jumps = [e.target_chain for e in result.events
             if e.effect == "JUMP" and e.target_chain.startswith("KUBE-")]
    assert jumps == ["KUBE-SERVICES", target.svc_chain, target.sep_chain(index)]


# ----------------------------------------------------------------------------- merge


def test_merge_puts_kube_proxy_between_felix_inserts_and_appends(scenario):
    ruleset = with_kube_proxy(scenario, "node-1", render_node(scenario, "node-1",
                                                              version=VERSION), version=VERSION)
    targets = {chain: [getattr(r.target, "chain", type(r.target).__name__)
                       for r in ruleset.tables[table][chain].rules]
               for table, chain in ((Table.FILTER, "FORWARD"), (Table.NAT, "POSTROUTING"),
                                    (Table.NAT, "PREROUTING"))}
    assert targets["FORWARD"] == ["cali-FORWARD", "KUBE-PROXY-FIREWALL", "KUBE-FORWARD",
                                  "KUBE-SERVICES", "KUBE-EXTERNAL-SERVICES", "Verdict",
                                  "SetMark"]
    assert targets["POSTROUTING"] == ["KUBE-POSTROUTING", "cali-POSTROUTING"]
    assert targets["PREROUTING"] == ["cali-PREROUTING", "KUBE-SERVICES"]
    # Merging again changes nothing; felix's own chains are untouched.
    assert with_kube_proxy(scenario, "node-1", ruleset, version=VERSION) is ruleset
    felix = render_node(scenario, "node-1", version=VERSION)
    assert ruleset.tables[Table.FILTER]["cali-FORWARD"] == \
        felix.tables[Table.FILTER]["cali-FORWARD"]


def test_append_mode_puts_felix_hooks_after_kube_proxy(scenario):
    felix = render_node(scenario, "node-1", version=VERSION)
    merged = merge_kube_proxy(felix, render_kube_proxy(scenario, "node-1"),
                              felix_appended={(Table.FILTER, "FORWARD"): 2},
                              insert_mode="Append")
    forward = merged.tables[Table.FILTER]["FORWARD"].rules
    chains = [getattr(r.target, "chain", None) for r in forward]
    assert chains[:5] == ["KUBE-PROXY-FIREWALL", "KUBE-FORWARD", "KUBE-SERVICES",
                          "KUBE-EXTERNAL-SERVICES", "cali-FORWARD"]


def test_no_services_no_kube_proxy():
    cluster = load_cluster([Path(__file__).parent.parent / "scenarios" / "multinode-ipip"])
    dp = build_dataplane(cluster, version=VERSION)
    assert all("KUBE-SERVICES" not in n.ruleset.tables[Table.NAT] for n in dp.nodes.values())


# ----------------------------------------------------------------------------- traces


def _dnat(trace) -> NatRecord:
    records = [s for hop in trace.hops for s in hop.stages if isinstance(s, NatRecord)]
    assert len(records) == 1 and records[0].kind == "DNAT"
    return records[0]


def test_forks_cover_every_endpoint_and_record_the_dnat(dataplane):
    forks = _explained_forks(dataplane, TraceRequest("demo/client", "svc/demo/web:80"))
    assert [f.backend.pod for f in forks] == ["demo/web-1", "demo/web-2", "demo/web-3"]
    for fork in forks:
        trace = fork.trace
        assert trace.verdict == "allowed", trace.why
        assert trace.delivered_to == f"pod {fork.backend.pod}"
        nat = _dnat(trace)
        assert (nat.node, str(nat.before.dst), nat.before.dport) == ("node-1", "10.96.0.50", 80)
        assert (str(nat.after.dst), nat.after.dport) == (str(fork.backend.ip), 8080)
        assert any("picked endpoint" in a for a in trace.assumptions)
    # web-2 and web-3 live on node-2: the DNATed packet crosses the IPIP tunnel.
    assert (forks[1].trace.hops[0].node, forks[1].trace.hops[-1].node) == ("node-1", "node-2")


@pytest.mark.parametrize("choice,pod", [("2", "demo/web-2"), ("demo/web-3", "demo/web-3"),
                                        ("web-1", "demo/web-1"), ("10.244.0.74", "demo/web-2")])
def test_endpoint_option_pins_one_backend(dataplane, choice, pod):
    fork, = _explained_forks(dataplane, TraceRequest("demo/client", "svc/demo/web"), choice)
    assert fork.trace.delivered_to == f"pod {pod}"
    assert str(_dnat(fork.trace).after.dst) == str(fork.backend.ip)


def test_policy_on_the_backend_judges_the_dnated_packet(dataplane):
    for fork in _explained_forks(dataplane, TraceRequest("demo/batch", "svc/demo/web")):
        trace = fork.trace
        assert trace.verdict == "dropped" and trace.reason == "default-deny"
        drop = trace.hops[-1].stages[-1]
        assert isinstance(drop, DropRecord)
        assert drop.node == ("node-1" if fork.backend.pod == "demo/web-1" else "node-2")
        assert trace.selected_by[f"ingress {fork.backend.pod}"]
        assert "web-allow-client" in trace.why


def test_service_without_endpoints_is_rejected_by_kube_proxy(dataplane):
    fork, = _explained_forks(dataplane, TraceRequest("demo/client", "svc/demo/idle"))
    assert fork.index is None and "no endpoints" in fork.header()
    trace = fork.trace
    assert trace.verdict == "dropped"
    decision = trace.deciding[0]
    assert (decision.table, decision.chain) == ("filter", "KUBE-SERVICES")
    assert decision.effect == "REJECT" and decision.provenance.role == "kube-proxy"
    assert not [s for hop in trace.hops for s in hop.stages if isinstance(s, NatRecord)]


def test_single_trace_entry_point_resolves_services(dataplane):
    trace = trace_packet(dataplane, TraceRequest("demo/client", "svc/demo/web"))
    assert trace.destination == "svc/demo/web:80" and trace.packet.dport == 80
    assert trace.verdict == "allowed"


@pytest.mark.parametrize("text,port,problem", [
    ("svc/demo/nope", None, "no Service demo/nope"),
    ("svc/demo", None, "expected svc/NAMESPACE/NAME"),
    ("svc/demo/web:81", None, "no TCP port 81"),
    ("svc/demo/web:80", 81, "--port is 81"),
])
def test_bad_service_references_are_input_errors(scenario, text, port, problem):
    with pytest.raises(InputError, match=problem):
        resolve_service(scenario, text, port=port)


def test_bad_endpoint_choices_are_input_errors(scenario, dataplane):
    target = resolve_service(scenario, "svc/demo/web")
    for choice in ("0", "4", "demo/client"):
        with pytest.raises(InputError):
            pick_endpoint(target, choice)
    # An established connection to a Service replays its opening, DNAT included.
    (fork,) = _explained_forks(dataplane, TraceRequest("demo/client", "svc/demo/web",
                                                  state="established"), endpoint="1")
    assert fork.trace.verdict == "allowed"
    assert "SYN delivered, SYN-ACK delivered, ACK delivered" in " ".join(fork.trace.assumptions)


def test_cli_prints_one_trace_per_backend_and_json_list():
    runner = CliRunner()
    args = ["packet", "-f", str(SCENARIO), "--from", "demo/client", "--to", "svc/demo/web:80",
            "--verbosity", "minimal"]
    out = runner.invoke(cli_main, args)
    assert out.exit_code == 0, out.output
    assert out.output.count("== svc/demo/web:80 fork ") == 3
    assert out.output.count("VERDICT  allowed") == 3
    out = runner.invoke(cli_main, args + ["--output", "json", "--endpoint", "3"])
    items = json.loads(out.output)
    assert [i["pod"] for i in items] == ["demo/web-3"]
    assert items[0]["trace"]["delivered_to"] == "pod demo/web-3"
    bad = runner.invoke(cli_main, ["packet", "-f", str(SCENARIO), "--from", "demo/client",
                                   "--to", "demo/web-1", "--endpoint", "1"])
    assert isinstance(bad.exception, InputError) and "--endpoint needs --to svc/" in str(
        bad.exception)


# ----------------------------------------------------------------------------- kernel








def _kube_lines(text: str) -> list[str]:
    return sorted(line for line in text.splitlines()
                  if line.startswith("-A KUBE-") or "-j KUBE-" in line)


@pytest.mark.root
def test_felix_plus_kube_proxy_loads_on_every_scenario_node(netns, scenario):
    for node in sorted(scenario.nodes):
        ruleset = with_kube_proxy(scenario, node, render_node(scenario, node, version=VERSION),
                                  version=VERSION)
        in_netns(netns, "ipset", "restore", stdin=format_ipsets(ruleset.ipsets))
        in_netns(netns, "iptables-restore", stdin=format_ruleset(ruleset))
        saved = in_netns(netns, "iptables-save")
        # The kernel prints kube-proxy's rules exactly as we do.
        assert _kube_lines(saved) == _kube_lines(format_ruleset(ruleset))
        for table in (Table.NAT, Table.FILTER):
            kernel = parse_ruleset(saved).tables[table]
            for chain in ("PREROUTING", "POSTROUTING", "FORWARD", "INPUT", "OUTPUT"):
                if chain in ruleset.tables[table]:
                    assert kernel[chain].rules == ruleset.tables[table][chain].rules, chain
        for table in ("raw", "mangle", "nat", "filter"):
            in_netns(netns, "iptables", "-t", table, "-F")
            in_netns(netns, "iptables", "-t", table, "-X")
        in_netns(netns, "ipset", "destroy")


# kube-proxy's own iptables-restore input for known_cluster() (proxier_test.go spelling:
# comment first, "-m tcp -p tcp ... --dport", no /32, --or-mark/--xor-mark).
KUBE_PROXY_RESTORE = """\
*nat
:KUBE-SERVICES - [0:0]
:KUBE-NODEPORTS - [0:0]
:KUBE-POSTROUTING - [0:0]
:KUBE-MARK-MASQ - [0:0]
:KUBE-SVC-XPGD46QRK7WJZT7O - [0:0]
:KUBE-SEP-SXIVWICOYRO3J4NJ - [0:0]
:KUBE-SEP-ZX7GRIZKSNUQ3LAJ - [0:0]
:KUBE-EXT-2VJB64SDSIJUP5T6 - [0:0]
:KUBE-SVC-2VJB64SDSIJUP5T6 - [0:0]
:KUBE-SEP-UHEGFW77JX3KXTOV - [0:0]
-A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN
-A KUBE-POSTROUTING -j MARK --xor-mark 0x4000
-A KUBE-POSTROUTING -m comment --comment "kubernetes service traffic requiring SNAT" -j MASQUERADE --random-fully
-A KUBE-MARK-MASQ -j MARK --or-mark 0x4000
-A KUBE-SERVICES -m comment --comment "ns1/svc1:p80 cluster IP" -m tcp -p tcp -d 172.30.0.41 --dport 80 -j KUBE-SVC-XPGD46QRK7WJZT7O
-A KUBE-SERVICES -m comment --comment "ns2/svc2:p8080 cluster IP" -m tcp -p tcp -d 172.30.0.42 --dport 8080 -j KUBE-SVC-2VJB64SDSIJUP5T6
-A KUBE-NODEPORTS -m comment --comment ns2/svc2:p8080 -m tcp -p tcp --dport 3001 -j KUBE-EXT-2VJB64SDSIJUP5T6
-A KUBE-SVC-XPGD46QRK7WJZT7O -m comment --comment "ns1/svc1:p80 cluster IP" -m tcp -p tcp -d 172.30.0.41 --dport 80 ! -s 10.0.0.0/8 -j KUBE-MARK-MASQ
-A KUBE-SVC-XPGD46QRK7WJZT7O -m comment --comment "ns1/svc1:p80 -> 10.180.0.1:80" -m statistic --mode random --probability 0.5000000000 -j KUBE-SEP-SXIVWICOYRO3J4NJ
-A KUBE-SVC-XPGD46QRK7WJZT7O -m comment --comment "ns1/svc1:p80 -> 10.180.2.1:80" -j KUBE-SEP-ZX7GRIZKSNUQ3LAJ
-A KUBE-SEP-SXIVWICOYRO3J4NJ -m comment --comment ns1/svc1:p80 -s 10.180.0.1 -j KUBE-MARK-MASQ
-A KUBE-SEP-SXIVWICOYRO3J4NJ -m comment --comment ns1/svc1:p80 -m tcp -p tcp -j DNAT --to-destination 10.180.0.1:80
-A KUBE-SEP-ZX7GRIZKSNUQ3LAJ -m comment --comment ns1/svc1:p80 -s 10.180.2.1 -j KUBE-MARK-MASQ
-A KUBE-SEP-ZX7GRIZKSNUQ3LAJ -m comment --comment ns1/svc1:p80 -m tcp -p tcp -j DNAT --to-destination 10.180.2.1:80
-A KUBE-EXT-2VJB64SDSIJUP5T6 -m comment --comment "masquerade traffic for ns2/svc2:p8080 external destinations" -j KUBE-MARK-MASQ
-A KUBE-EXT-2VJB64SDSIJUP5T6 -j KUBE-SVC-2VJB64SDSIJUP5T6
-A KUBE-SVC-2VJB64SDSIJUP5T6 -m comment --comment "ns2/svc2:p8080 cluster IP" -m tcp -p tcp -d 172.30.0.42 --dport 8080 ! -s 10.0.0.0/8 -j KUBE-MARK-MASQ
-A KUBE-SVC-2VJB64SDSIJUP5T6 -m comment --comment "ns2/svc2:p8080 -> 10.0.2.1:8080" -j KUBE-SEP-UHEGFW77JX3KXTOV
-A KUBE-SEP-UHEGFW77JX3KXTOV -m comment --comment ns2/svc2:p8080 -s 10.0.2.1 -j KUBE-MARK-MASQ
-A KUBE-SEP-UHEGFW77JX3KXTOV -m comment --comment ns2/svc2:p8080 -m tcp -p tcp -j DNAT --to-destination 10.0.2.1:8080
-A KUBE-SERVICES -m comment --comment "kubernetes service nodeports; NOTE: this must be the last rule in this chain" -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS
COMMIT
"""


@pytest.mark.root
def test_kernel_stores_kube_proxys_own_input_as_we_render_it(netns):
    """Feed kube-proxy's literal restore text to the kernel and read it back: the KUBE-* nat
    rules equal our rendering of the same Services, line for line."""
    in_netns(netns, "iptables-restore", "--noflush", stdin=KUBE_PROXY_RESTORE)
    saved = in_netns(netns, "iptables-save", "-t", "nat")
    ours = format_ruleset(Ruleset(tables={Table.NAT: render_kube_proxy(known_cluster(),
                                                                       "node1")[Table.NAT]}))
    theirs = [line for line in _kube_lines(saved) if line.startswith("-A KUBE-")]
    assert theirs == [line for line in _kube_lines(ours) if line.startswith("-A KUBE-")]


def _explained_forks(dataplane, request, endpoint=None):
    return [fork.with_trace(explain(dataplane, fork.trace))
            for fork in trace_forks(dataplane, request, endpoint)]
