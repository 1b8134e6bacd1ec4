"""Packets through felix's nftables table: nftables' verdict semantics on small hand-made
tables, and every bundled scenario's expectations answered the same in both dataplanes."""

from __future__ import annotations

import pytest
import yaml

from bundled import SCENARIOS
from tracer.dataplane import ir
from tracer.dataplane.interpreter import PacketView
from tracer.dataplane.ir import Table
from tracer.explain import explain
from tracer.model.loader import load_cluster
from tracer.nft.model import BaseChain, NftChain, NftMap, NftRule, NftTable, VmapMatch
from tracer.nft.plug import with_nftables
from tracer.nft.walk import CompiledTable, rule_handles, run_base_chain
from tracer.trace.assemble import build_dataplane
from tracer.trace.tracing import TraceRequest, trace_packet

EMPTY = ir.Ruleset(tables={})
TCP_M = ir.ProtocolMatch(6)


class Env:
    def ipset_contains(self, match, packet):
        return False

    def addr_type(self, addr, iface):
        return "UNICAST"

    def rpf_ok(self, packet, match):
        return True


def view(**kw) -> PacketView:
    base = dict(src=0x0A000001, dst=0x0A000002, protocol=6, sport=40000, dport=80,
                icmp_type=None, icmp_code=None, tcp_flags=0x02, iif="cali1", oif="eth0",
                mark=0, ct_state="NEW")
    base.update(kw)
    return PacketView(**base)


def rule(*matches, target=None) -> NftRule:
    return NftRule(tuple(matches), target, "x")


def table(**chains) -> NftTable:
    out = {}
    for name, rules in chains.items():
        base = BaseChain("filter", "forward", "filter") if name == "filter-FORWARD" else None
        out[name] = NftChain(name, tuple(rules), base)
    vmap = NftMap("filter-m", "ifname : verdict", (("cali1", ir.Goto("filter-fw")),))
    return NftTable("ip", "calico", out, {}, {"filter-m": vmap})


def walk(t: NftTable, packet: PacketView | None = None):
    return run_base_chain(CompiledTable(t), EMPTY, Table.FILTER, "filter-FORWARD",
                          packet or view(), Env())


def test_accept_in_a_jumped_chain_ends_only_the_base_chain():
    t = table(**{"filter-FORWARD": [rule(target=ir.Jump("filter-a")),
                                    rule(target=ir.Verdict("DROP"))],
                 "filter-a": [rule(target=ir.Verdict("ACCEPT"))]})
    result = walk(t)
    assert result.verdict == "ACCEPT"
    assert [e.chain for e in result.events] == ["filter-FORWARD", "filter-a"]
    assert result.deciding.table == "calico"


def test_return_and_fall_off_go_back_to_the_jumper_then_policy():
    t = table(**{"filter-FORWARD": [rule(target=ir.Jump("filter-a")),
                                    rule(ir.MarkMatch(0x10, 0x10), target=ir.Verdict("DROP"))],
                 "filter-a": [rule(target=ir.SetMark(0x10, 0x10)),
                              rule(target=ir.Verdict("RETURN"))]})
    result = walk(t)
    assert result.verdict == "DROP" and result.deciding.rule.handle == rule_handles(t)[
        ("filter-FORWARD", 1)]
    t2 = table(**{"filter-FORWARD": [rule(target=ir.Jump("filter-a"))], "filter-a": []})
    result = walk(t2)
    assert [e.kind for e in result.events] == ["rule", "return", "policy"]
    assert result.verdict == "ACCEPT"


def test_goto_does_not_come_back():
    t = table(**{"filter-FORWARD": [rule(target=ir.Goto("filter-a")),
                                    rule(target=ir.Verdict("DROP"))],
                 "filter-a": []})
    result = walk(t)
    assert result.verdict == "ACCEPT" and result.events[-1].kind == "policy"


def test_vmap_hit_goes_to_the_element_miss_goes_on():
    t = table(**{"filter-FORWARD": [rule(VmapMatch("in", "filter-m")),
                                    rule(target=ir.Verdict("DROP"))],
                 "filter-fw": [rule(target=ir.Verdict("ACCEPT"))]})
    hit = walk(t, view(iif="cali1"))
    assert hit.verdict == "ACCEPT"
    assert hit.events[0].effect == "GOTO" and hit.events[0].target_chain == "filter-fw"
    miss = walk(t, view(iif="cali9"))
    assert miss.verdict == "DROP"
    assert [e.effect for e in miss.events] == ["CONTINUE", "DROP"]


def test_ct_status_needs_a_conntrack_entry():
    not_dnat = ir.ConntrackMatch(frozenset({"DNAT"}), negated=True)
    t = table(**{"filter-FORWARD": [rule(not_dnat, target=ir.Verdict("DROP"))]})
    assert walk(t, view(ct_state="NEW")).verdict == "DROP"
    assert walk(t, view(ct_state="NEW", ct_status=frozenset({"DNAT"}))).verdict == "ACCEPT"
    # Untracked: ``ct status != dnat`` breaks, the rule does not match.
    assert walk(t, view(ct_state="UNTRACKED")).verdict == "ACCEPT"


def test_nat_statement_is_terminal():
    t = table(**{"filter-FORWARD": [rule(target=ir.Masquerade()),
                                    rule(target=ir.Verdict("DROP"))]})
    result = walk(t)
    assert result.verdict == "ACCEPT" and result.nat == ir.Masquerade()


def _expectations(directory):
    meta = yaml.safe_load((directory / "scenario.yaml").read_text()) or {}
    return [case for case in meta.get("expect", [])
            if not str(case["to"]).startswith("svc/")]   # kube-proxy: not in the nft model


@pytest.mark.parametrize("directory", SCENARIOS, ids=lambda p: p.name)
def test_bundled_expectations_hold_in_nftables_mode(directory):
    """Same verdict and reason in both dataplanes, and the scenario's expected one."""
    cluster = load_cluster([str(directory)])
    iptables = build_dataplane(cluster, version="3.32")
    nftables, _ = with_nftables(build_dataplane(cluster, version="3.32"), "3.32", "reference")
    cases = _expectations(directory)
    for case in cases:
        request = TraceRequest(str(case["from"]), str(case["to"]),
                               protocol=str(case.get("protocol", "TCP")).lower(),
                               port=case.get("port"))
        ipt = explain(iptables, trace_packet(iptables, request))
        nft = explain(nftables, trace_packet(nftables, request))
        assert (nft.verdict, nft.reason) == (ipt.verdict, ipt.reason), (case, nft.why)
        # The explanation reads the same policies through the nftables names.
        assert nft.selected_by == ipt.selected_by, case
        assert nft.hint == ipt.hint, case
        assert [d.provenance for d in nft.deciding] == [d.provenance for d in ipt.deciding]
        assert (nft.verdict == "allowed") == bool(case["allowed"]), case
        assert "felix nftables dataplane" in " ".join(nft.assumptions)
        assert any(e.table == "calico" for _, e in nft.netfilter_events())


def test_rule_handles_count_anonymous_sets():
    """nft gives a rule's inline set ``{ 53, 8080 }`` the handle before the rule's; a single
    port or range is written as a plain value (found by the kernel judge's corpus)."""
    two = rule(TCP_M, ir.PortMatch("dst", ((53, 53), (8080, 8080))), target=ir.Verdict("DROP"))
    one = rule(TCP_M, ir.PortMatch("dst", ((8000, 8100),)), target=ir.Verdict("DROP"))
    t = table(**{"filter-FORWARD": [two, one, rule(target=ir.Verdict("ACCEPT"))]})
    objects = len(t.chains) + len(t.sets) + len(t.maps)
    handles = rule_handles(t)
    assert [handles[("filter-FORWARD", i)] - objects for i in range(3)] == [2, 3, 4]
