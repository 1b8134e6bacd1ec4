"""`calico-trace packet`: chain sequences, mapping back to policy, framing, and the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from tracer.cli import cli
from tracer.trace.assemble import build_dataplane
from tracer.dataplane.trace import DecapRecord, EncapRecord, HookRecord, NatRecord
from tracer.model.loader import load_cluster
from tracer.explain import explain
from tracer.trace.tracing import TraceRequest, trace_packet

SCENARIOS = Path(__file__).resolve().parent.parent / "scenarios"


def trace(scenario: str, src: str, dst: str, *, protocol: str = "tcp", port: int | None = 80,
          version: str = "3.32", **kw):
    cluster = load_cluster([SCENARIOS / scenario])
    dataplane = build_dataplane(cluster, version=version)
    return explain(dataplane, trace_packet(dataplane, TraceRequest(src, dst, protocol=protocol,
                                                                   port=port, **kw)))


def chains_entered(result, node: str | None = None) -> list[str]:
    seen: list[str] = []
    for hop_node, event in result.netfilter_events():
        if node is None or hop_node == node:
            if not seen or seen[-1] != event.chain:
                seen.append(event.chain)
    return seen


def stages(result, kind):
    return [s for hop in result.hops for s in hop.stages if isinstance(s, kind)]


# --------------------------------------------------------------------------- same node


def test_same_node_default_deny_names_the_end_of_tier_rule_and_selecting_policy():
    result = trace("backend-from-frontend", "myns/other", "myns/backend", port=6379)
    assert result.verdict == "dropped"
    assert result.reason == "default-deny"
    (decision,) = result.deciding
    assert decision.table == "filter"
    assert decision.chain.startswith("cali-tw-cali")
    assert decision.effect == "DROP"
    assert "End of tier default" in decision.rule_text
    assert decision.provenance.role == "tier-end-drop"
    assert decision.provenance.tier == "default"
    assert decision.provenance.endpoint == "myns/backend"
    assert result.selected_by["ingress myns/backend"] == (
        "default/knp/myns/backend-allow-frontend",)
    assert "role == 'frontend'" in result.why
    assert "label pod myns/other with role=frontend" in result.hint


def test_same_node_allowed_runs_egress_then_ingress_chain():
    result = trace("backend-from-frontend", "myns/frontend", "myns/backend", port=6379)
    assert result.verdict == "allowed"
    assert result.delivered_to == "pod myns/backend"
    chains = chains_entered(result)
    fw = next(c for c in chains if c.startswith("cali-fw-"))
    tw = next(c for c in chains if c.startswith("cali-tw-"))
    assert chains.index(fw) < chains.index(tw)
    assert chains[:2] == ["PREROUTING", "cali-PREROUTING"]
    kinds = [d.provenance.role for d in result.deciding]
    assert kinds == ["profile-rule", "policy-rule"]
    policy = result.deciding[1].provenance
    assert (policy.policy, policy.tier, policy.direction, policy.rule_index) == (
        "myns/backend-allow-frontend", "default", "ingress", 0)


def test_hook_order_mirrors_netfilter_priorities():
    result = trace("backend-from-frontend", "myns/frontend", "myns/backend", port=6379)
    order = [(s.hook, s.table) for s in stages(result, HookRecord)]
    assert order == [("PREROUTING", "raw"), ("PREROUTING", "mangle"), ("PREROUTING", "nat"),
                     ("FORWARD", "mangle"), ("FORWARD", "filter"),
                     ("POSTROUTING", "mangle"), ("POSTROUTING", "nat")]


def test_established_packets_are_accepted_by_the_conntrack_rule_and_skip_nat():
    result = trace("backend-from-frontend", "myns/frontend", "myns/backend", port=6379,
                   state="established")
    assert result.verdict == "allowed"
    assert "SYN delivered, SYN-ACK delivered, ACK delivered" in result.assumptions[1]
    tables = [(s.hook, s.table) for s in stages(result, HookRecord)]
    assert ("PREROUTING", "nat") not in tables
    mangle = [s for s in stages(result, HookRecord) if s.table == "mangle"][0]
    assert mangle.events[-1].effect == "ACCEPT"       # cali-PREROUTING RELATED,ESTABLISHED
    ct = [s for hop in result.hops for s in hop.stages if type(s).__name__ == "ConntrackRecord"]
    assert ct[0].ctstate == "ESTABLISHED" and ct[0].tcp_state == "ESTABLISHED"


def test_established_is_not_assumed_when_the_opening_was_denied():
    result = trace("backend-from-frontend", "myns/other", "myns/backend", port=6379,
                   state="established")
    assert "SYN dropped on node-1 [default-deny]" in result.assumptions[1]
    # With nf_conntrack_tcp_loose=1 the kernel picks the ACK up mid-stream: ctstate NEW,
    # so policy sees it and denies it again.
    assert result.verdict == "dropped" and result.reason == "default-deny"


def test_pod_to_itself_never_leaves_the_pod():
    result = trace("default-deny-all", "shop/web", "shop/web")
    assert result.verdict == "allowed"
    assert result.hops[0].stages[0].iface == "lo"


def test_marks_are_recorded_before_and_after_each_table():
    result = trace("backend-from-frontend", "myns/frontend", "myns/backend", port=6379)
    raw = stages(result, HookRecord)[0]
    assert (raw.mark_before, raw.mark_after) == (0, 0x80000)      # scratch0: from workload
    forward = [s for s in stages(result, HookRecord) if s.hook == "FORWARD"][-1]
    assert forward.mark_after & 0x10000                            # accept bit


def test_older_release_renders_old_marks_and_names():
    result = trace("backend-from-frontend", "myns/other", "myns/backend", port=6379,
                   version="3.29")
    raw = stages(result, HookRecord)[0]
    assert raw.mark_after == 0x40000                               # scratch0 before v3.30
    assert "Drop if no policies passed packet" in result.deciding[0].rule_text


# --------------------------------------------------------------------------- across nodes


@pytest.mark.parametrize("scenario, mode, iface, overhead", [
    ("multinode-ipip", "ipip", "tunl0", 20),
    ("multinode-vxlan", "vxlan", "vxlan.calico", 50),
    # WireGuard pads the 40-byte SYN to 48 bytes: 60 bytes of headers and tag + 8 of padding.
    ("multinode-wireguard", "wireguard", "wireguard.cali", 68),
])
def test_cross_node_packets_are_framed_and_decapsulated(scenario, mode, iface, overhead):
    result = trace(scenario, "shop/frontend-7d4b9", "shop/backend-5f8c2", port=6379)
    assert result.verdict == "allowed"
    (encap,) = stages(result, EncapRecord)
    assert encap.mode == mode and encap.overhead == overhead
    (decap,) = stages(result, DecapRecord)
    assert decap.iif == iface and decap.inner == encap.inner
    assert [hop.node for hop in result.hops] == ["node-1", "node-2", "node-2"]
    # The outer packet leaves node-1 through the OUTPUT path, as the tunnel re-sends it.
    hooks = [(s.node, s.hook) for s in stages(result, HookRecord)]
    assert ("node-1", "OUTPUT") in hooks and ("node-2", "INPUT") in hooks
    # Policy is enforced on the receiving node.
    assert result.deciding[-1].node == "node-2"


def test_ipip_is_accepted_from_calico_hosts_in_filter_input():
    result = trace("multinode-ipip", "shop/frontend-7d4b9", "shop/backend-5f8c2", port=6379)
    node2_input = [s for s in stages(result, HookRecord)
                   if s.node == "node-2" and s.hook == "INPUT" and s.table == "filter"][0]
    accepting = node2_input.events[-1]
    assert accepting.effect == "ACCEPT"
    assert "Allow IPIP packets from Calico hosts" in " ".join(accepting.rule.comments)


def test_vxlan_outer_packet_is_untracked():
    result = trace("multinode-vxlan", "shop/frontend-7d4b9", "shop/backend-5f8c2", port=6379)
    raw_out = [s for s in stages(result, HookRecord) if s.hook == "OUTPUT" and s.table == "raw"]
    assert any(e.effect == "NOTRACK" or "NOTRACK" in str(e.rule.target) for e in
               raw_out[0].events if e.rule is not None)


def test_cross_node_drop_happens_on_the_destination_node():
    result = trace("multinode-vxlan", "shop/batch-2k9xq", "shop/backend-5f8c2", port=6379)
    assert result.verdict == "dropped" and result.reason == "default-deny"
    assert result.deciding[0].node == result.hops[-1].node


# --------------------------------------------------------------------------- out of cluster


def test_pod_to_internet_is_masqueraded_by_nat_outgoing():
    result = trace("multinode-ipip", "shop/frontend-7d4b9", "8.8.8.8", port=443)
    assert result.verdict == "allowed"
    assert result.delivered_to == "external 8.8.8.8"
    (nat,) = stages(result, NatRecord)
    assert nat.kind == "MASQUERADE" and str(nat.after.src) == "10.0.0.1"


def test_external_client_enters_through_the_pods_node():
    result = trace("multinode-ipip", "1.2.3.4", "shop/backend-5f8c2", port=6379)
    assert result.hops[0].node == "node-2" and result.hops[0].iif == "eth0"
    assert result.verdict == "dropped" and result.reason == "default-deny"


def test_address_in_a_block_without_pod_hits_the_blackhole():
    result = trace("multinode-ipip", "shop/frontend-7d4b9", "10.244.0.60", port=80)
    assert result.verdict == "dropped" and result.reason == "no-route"


def test_oversized_packet_with_df_is_dropped_for_mtu():
    result = trace("multinode-vxlan", "1.2.3.4", "shop/backend-5f8c2", port=6379, size=1500)
    assert result.verdict == "dropped" and result.reason == "mtu-exceeded"
    assert "1450" in result.hops[-1].stages[-1].detail


def test_established_size_applies_to_the_data_not_the_handshake():
    result = trace("multinode-vxlan", "shop/frontend-7d4b9", "shop/backend-5f8c2", port=6379,
                   size=1500, state="established")     # the pod's MTU is 1450
    assert "SYN delivered, SYN-ACK delivered, ACK delivered" in result.assumptions[1]
    assert result.verdict == "dropped" and result.reason == "mtu-exceeded"


# --------------------------------------------------------------------------- scenarios


def _expectations():
    import yaml
    for meta in sorted(SCENARIOS.glob("*/scenario.yaml")):
        for item in (yaml.safe_load(meta.read_text()) or {}).get("expect", []):
            yield pytest.param(meta.parent.name, item,
                               id=f"{meta.parent.name}:{item['from']}->{item['to']}:"
                                  f"{item.get('port')}")


@pytest.mark.parametrize("scenario, item", list(_expectations()))
def test_every_scenario_expectation_holds_for_the_packet_trace(scenario, item):
    result = trace(scenario, item["from"], item["to"],
                   protocol=item.get("protocol", "TCP").lower(), port=item.get("port"))
    assert (result.verdict == "allowed") == item["allowed"], result.why


# --------------------------------------------------------------------------- CLI


def run_cli(*args):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def test_cli_json_has_the_documented_keys():
    res = run_cli("packet", "-f", str(SCENARIOS / "backend-from-frontend"), "--from",
                  "myns/other", "--to", "myns/backend", "--port", "6379", "--output", "json")
    assert res.exit_code == 0
    data = json.loads(res.output)
    assert data["verdict"] == "dropped" and data["reason"] == "default-deny"
    assert data["why"] and data["hint"]
    deciding = data["deciding"][0]
    for key in ("node", "table", "chain", "rule", "rule_text", "policy", "tier",
                "policy_rule_index"):
        assert key in deciding
    hop = next(h for h in data["hops"] if h["stage"] == "netfilter")
    for key in ("node", "stage", "table", "chain", "rule", "rule_text", "action",
                "mark_before", "mark_after"):
        assert key in hop


@pytest.mark.parametrize("verbosity", ["minimal", "summary", "detailed"])
def test_cli_text_verbosity_levels(verbosity):
    res = run_cli("packet", "-f", str(SCENARIOS / "multinode-vxlan"), "--from",
                  "shop/frontend-7d4b9", "--to", "shop/backend-5f8c2", "--port", "6379",
                  "--verbosity", verbosity)
    assert res.exit_code == 0
    assert "VERDICT  allowed" in res.output
    assert ("encap vxlan" in res.output)
    assert ("cali-PREROUTING #1" in res.output) == (verbosity == "detailed")
    assert ("WHY" in res.output) == (verbosity != "minimal")


def test_minimal_trace_is_stable_golden():
    res = run_cli("packet", "-f", str(SCENARIOS / "multinode-ipip"), "--from",
                  "shop/frontend-7d4b9", "--to", "shop/backend-5f8c2", "--port", "6379",
                  "--verbosity", "minimal")
    assert res.output.splitlines() == [
        "node-1: encap ipip: IPIP 10.0.0.1 -> 10.0.0.2 (+20 bytes; IPIP to node-2 (10.0.0.2))",
        "node-2: decap ipip on tunl0: inner TCP 10.244.0.1:40000 -> 10.244.0.65:6379 [SYN]",
        "node-2: delivered to pod shop/backend-5f8c2 via cali229626cbf41",
        "VERDICT  allowed: delivered to pod shop/backend-5f8c2",
    ]


def test_scenario_can_pin_the_calico_release(tmp_path):
    import shutil
    target = tmp_path / "pinned"
    shutil.copytree(SCENARIOS / "backend-from-frontend", target)
    meta = target / "scenario.yaml"
    meta.write_text(meta.read_text() + "calicoVersion: v3.29.3\n")
    res = run_cli("packet", "-f", str(target), "--from", "myns/other", "--to", "myns/backend",
                  "--port", "6379", "--output", "json")
    data = json.loads(res.output)
    assert "Calico v3.29" in data["assumptions"][0]
    assert data["hops"][0]["mark_after"] == "0x0"            # clear rule, before the set
    assert any(h.get("mark_after") == "0x40000" for h in data["hops"])   # scratch0 in 3.29


def _send(scenario: str, packet):
    from tracer.trace.session import Session
    from tracer.trace.tracing import locate
    cluster = load_cluster([SCENARIOS / scenario])
    dataplane = build_dataplane(cluster, version="3.32")
    return Session(dataplane).send(locate(cluster, packet))


def test_ipip_from_a_host_that_is_not_a_calico_node_is_dropped():
    from ipaddress import IPv4Address as A
    from tracer.dataplane.packet import Packet, make_packet
    from tracer.protocols import IPIP
    inner = make_packet(A("1.2.3.4"), A("10.244.0.65"), 6, dport=6379)
    outer = Packet(A("1.2.3.4"), A("10.0.0.2"), IPIP, length=inner.length + 20, inner=inner)
    outcome = _send("multinode-ipip", outer)
    assert outcome.drop.reason == "unknown-tunnel-peer"
    assert "Drop IPIP packets from non-Calico hosts" in " ".join(outcome.drop.event.rule.comments)


def test_workloads_may_not_send_vxlan():
    from ipaddress import IPv4Address as A
    from tracer.dataplane.packet import Packet
    from tracer.protocols import UDP
    packet = Packet(A("10.244.0.1"), A("10.0.0.2"), UDP, sport=4000, dport=4789)
    outcome = _send("multinode-vxlan", packet)
    assert outcome.drop.reason == "encap-from-workload"


# --------------------------------------------------------------------------- host endpoints


def test_host_endpoint_policy_drops_traffic_to_the_host():
    result = trace("host-endpoint", "1.2.3.4", "10.0.0.1", port=80)
    assert result.verdict == "dropped" and result.reason == "host-endpoint"
    assert result.deciding[0].chain == "cali-fh-eth0"
    assert "GlobalNetworkPolicy host-allow-https" in result.why


def test_host_endpoint_allows_what_its_policy_allows():
    result = trace("host-endpoint", "1.2.3.4", "10.0.0.1", port=443)
    assert result.verdict == "allowed" and result.delivered_to == "host node-1"


def test_failsafe_ports_stay_open_through_a_host_endpoint():
    result = trace("host-endpoint", "1.2.3.4", "10.0.0.1", port=22)
    assert result.verdict == "allowed"
    assert "cali-failsafe-in" in chains_entered(result)


def test_forwarded_traffic_to_pods_skips_host_endpoint_policy():
    result = trace("host-endpoint", "1.2.3.4", "web/nginx", port=80)
    assert result.verdict == "allowed"
    assert "cali-fh-eth0" not in chains_entered(result)


def test_egress_default_deny_hint_adds_one_rule_when_the_closest_needs_several_changes():
    result = trace("recipe-11-deny-egress-from-app", "default/foo", "default/web", port=80)
    assert result.reason == "default-deny"
    assert result.deciding[0].provenance.direction == "egress"
    assert "to default/web (app=web) matches none" in result.why
    assert result.hint.startswith("Add an egress rule to KubernetesNetworkPolicy "
                                  "default/foo-deny-egress allowing TCP 80 to pods with app=web")


def test_cross_node_without_encapsulation_is_routed_over_the_underlay():
    result = trace("multinode-routed", "shop/frontend-7d4b9", "shop/backend-5f8c2", port=6379)
    assert result.verdict == "allowed"
    assert stages(result, EncapRecord) == []
    assert [(hop.node, hop.iif) for hop in result.hops][1] == ("node-2", "eth0")
    route = next(s for s in result.hops[0].stages if type(s).__name__ == "RouteRecord")
    assert route.route.dev == "eth0" and str(route.route.via) == "10.0.0.2"
    # Policy is enforced on the destination's node, in its cali-tw chain.
    assert result.deciding[-1].node == "node-2"
    assert result.deciding[-1].provenance.policy == "shop/backend-allow-frontend"
    denied = trace("multinode-routed", "shop/batch-2k9xq", "shop/backend-5f8c2", port=6379)
    assert denied.reason == "default-deny"
