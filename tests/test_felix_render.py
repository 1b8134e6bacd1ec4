"""render_node against felix's own expected rules (felix/rules/*_test.go) and the worked
example of calico-dataplane.md §10."""

from __future__ import annotations

import dataclasses
from ipaddress import IPv4Address, IPv4Network

import pytest
from click.testing import CliRunner

from tracer.dataplane import ir
from tracer.dataplane.ir import Table
from tracer.errors import InputError
from tracer.model.cluster import (ContainerPort, EntityRule, FelixConfig, NetworkSet, Policy,
                                  PortSpec, Rule)
from tracer.policy.felix import render_node
from tracer.policy.felix.builder import FRule
from tracer.policy.felix.context import make_ctx
from tracer.policy.felix.dispatch import prefix_tree
from tracer.policy.felix.names import render_for_hash
from tracer.policy.felix.parsed import ParsedRule
from tracer.policy.felix.policy_chains import proto_rule_to_rules
from tracer.policy.felix.versions import MarkBits
from tracer.selector.selector import parse_selector

from felix_fixtures import DENY_INGRESS, cluster, pod_ep

WEB = "cali-tw-cali68caf03a5f4"
DROP, RETURN, ACCEPT = ir.Verdict("DROP"), ir.Verdict("RETURN"), ir.Verdict("ACCEPT")


def shape(chain: ir.Chain) -> list[tuple]:
    """(descriptive comments, target) per rule; every rule starts with its cali: ID."""
    for rule in chain.rules:
        assert rule.comments[0].startswith("cali:") and len(rule.comments[0]) == 21
        assert rule.provenance is not None
    return [(rule.comments[1:], rule.target) for rule in chain.rules]


@pytest.mark.parametrize("version,pol_chain,end_comment", [
    ("3.32", "cali-pi-_q1MS9GFlo-itRgqjEtJ", "End of tier default. Drop if no policies passed packet"),
    ("3.30", "cali-pi-_gXPaCB1t-SWHb8oA9OT", "End of tier default. Drop if no policies passed packet"),
    ("3.29", "cali-pi-_gXPaCB1t-SWHb8oA9OT", "Drop if no policies passed packet"),
])
def test_worked_example_to_workload_chain(version, pol_chain, end_comment):
    rs = render_node(cluster([DENY_INGRESS]), "node1", version=version)
    chain = rs.chain(Table.FILTER, WEB)
    assert shape(chain) == [
        ((), ACCEPT), ((), DROP), ((), ir.SetMark(0, 0x30000)),
        (("Start of tier default",), ir.SetMark(0, 0x20000)),
        ((), ir.Jump(pol_chain)),
        (("Return if policy accepted",), RETURN),
        ((end_comment,), DROP),
        ((), ir.Jump("cali-pri-kns.default")), (("Return if profile accepted",), RETURN),
        ((), ir.Jump("cali-pri-ksa.default.default")), (("Return if profile accepted",), RETURN),
        (("Drop if no profiles matched",), DROP),
    ]
    assert chain.rules[0].matches == (ir.ConntrackMatch(frozenset({"RELATED", "ESTABLISHED"})),)
    assert chain.rules[4].matches == (ir.MarkMatch(0, 0x20000),)
    assert chain.rules[4].provenance.policy == "default/default-deny-ingress"
    assert chain.rules[6].provenance.role == "tier-end-drop"
    policy = rs.chain(Table.FILTER, pol_chain)
    assert len(policy.rules) == 1 and policy.rules[0].target is None
    assert policy.rules[0].provenance.role == "policy-chain-comment"
    # The client has no policy: straight to its profiles, with the encap drops first.
    client = rs.chain(Table.FILTER, "cali-fw-calia7a3e029a7b")
    assert [c for c, _ in shape(client)][3:5] == [
        ("Drop VXLAN encapped packets originating in workloads",),
        ("Drop IPinIP encapped packets originating in workloads",)]
    assert not any("tier" in " ".join(c) for c, _ in shape(client))


def test_worked_example_marks_per_version():
    new = render_node(cluster([DENY_INGRESS]), "node1", version="3.32")
    old = render_node(cluster([DENY_INGRESS]), "node1", version="3.29")
    assert new.chain(Table.RAW, "cali-PREROUTING").rules[0].target == ir.SetMark(0, 0x1B0000)
    assert old.chain(Table.RAW, "cali-PREROUTING").rules[0].target == ir.SetMark(0, 0xF0000)
    assert new.chain(Table.FILTER, "cali-FORWARD").rules[0].target == ir.SetMark(0, 0x1A0000)
    assert old.chain(Table.FILTER, "cali-FORWARD").rules[0].target == ir.SetMark(0, 0xE0000)
    assert old.chain(Table.RAW, "cali-PREROUTING").rules[1].target == ir.SetMark(0x40000, 0x40000)
    assert "cali40all-ipam-pools" in old.ipsets and "cali40network-ip-pools" in new.ipsets
    assert "cali-egress-dscp" not in old.tables[Table.MANGLE]
    assert "cali-egress-dscp" in new.tables[Table.MANGLE]


def test_kernel_hooks():
    rs = render_node(cluster(), "node1")
    forward = rs.chain(Table.FILTER, "FORWARD")
    assert forward.policy == "ACCEPT"
    assert [r.comments for r in forward.rules] == [
        ("cali:wUHhoiAYhphO9Mso",),
        ("cali:S93hcgKJrXEqnTfs", "Policy explicitly accepted packet."),
        ("cali:mp77cMpurHhyjLrM",)]
    assert rs.chain(Table.NAT, "POSTROUTING").rules[0].target == ir.Jump("cali-POSTROUTING")
    assert rs.chain(Table.MANGLE, "INPUT").rules == ()
    assert set(rs.tables) == set(Table)


def test_filter_allow_return_and_reject():
    felix = FelixConfig(iptables_filter_allow_action="Return", iptables_filter_deny_action="Reject")
    rs = render_node(cluster([DENY_INGRESS], felix=felix), "node1")
    chain = rs.chain(Table.FILTER, WEB)
    assert chain.rules[0].target == ir.SetMark(0x10000, 0x10000)   # flag conntrack accepts
    assert chain.rules[1].target == RETURN
    assert chain.rules[2].target == ir.Reject()
    assert shape(chain)[7] == (("End of tier default. Reject if no policies passed packet",),
                               ir.Reject())


def test_dispatch_prefix_tree():
    assert prefix_tree(["calia1", "calib2", "calia3"]) == (
        "cali", ["calia", "calib"], {"calia": ["calia1", "calia3"], "calib": ["calib2"]})
    extra = [pod_ep("default", f"p{i}", "node1", f"192.168.1.{30 + i}") for i in range(6)]
    c = cluster(extra_eps=extra)
    rs = render_node(c, "node1")
    ifaces = sorted(ep.interface for ep in c.endpoints.values())
    root = rs.chain(Table.FILTER, "cali-from-wl-dispatch")
    common, prefixes, bins = prefix_tree(ifaces)
    assert len(root.rules) == len(prefixes) + 1
    assert root.rules[-1].comments[1:] == ("Unknown interface",)
    for rule, prefix in zip(root.rules, prefixes):
        if len(bins[prefix]) > 1:
            child = f"cali-from-wl-dispatch-{prefix[len(common):]}"
            assert rule.target == ir.Goto(child)
            assert rule.matches == (ir.InterfaceMatch("in", prefix + "+"),)
            kids = rs.chain(Table.FILTER, child).rules
            assert [k.target for k in kids[:-1]] == [ir.Goto(f"cali-fw-{n}") for n in bins[prefix]]
            assert kids[-1].target == DROP
        else:
            assert rule.target == ir.Goto(f"cali-fw-{bins[prefix][0]}")
    empty = render_node(cluster(), "node2").chain(Table.FILTER, "cali-to-wl-dispatch")
    assert shape(empty) == [(("Unknown interface",), DROP)]


def _felix_test_ctx():
    """The marks of felix/rules/policy_test.go's renderer config."""
    ctx = make_ctx(cluster(), "node1", "3.32")
    return dataclasses.replace(ctx, marks=MarkBits(accept=0x80, pass_=0x100, drop=0x800,
                                                   scratch0=0x200, scratch1=0x400,
                                                   wireguard=0, endpoint=0))


@dataclasses.dataclass(frozen=True)
class FixedSet:
    set_id: str


def _lines(rules: list[FRule]) -> list[str]:
    return [render_for_hash("test", r).replace(" HASH", "") for r in rules]


def test_match_blocks_port_from_felix_policy_test():
    """policy_test.go "positive and negatednumeric, named ports and CIDRs"."""
    rule = ParsedRule(
        action="allow", protocol="tcp",
        src_ports=tuple((i, i + 1) for i in range(1, 17, 2)), src_named=(FixedSet("ipset-1"),),
        src_nets=("10.1.0.0/16", "11.0.0.0/8"), not_src_ports=((101, 101),),
        not_src_named=(FixedSet("ipset-3"),), not_src_nets=("14.1.0.0/16", "15.0.0.0/8"),
        dst_ports=((2, 3),), dst_named=(FixedSet("ipset-2"),),
        dst_nets=("12.1.0.0/16", "13.0.0.0/8"), not_dst_ports=((201, 201),),
        not_dst_named=(FixedSet("ipset-4"),), not_dst_nets=("16.1.0.0/16", "17.0.0.0/8"))
    and_rule = "-A test -m mark --mark 0/0x400 --jump MARK --set-mark 0/0x200"
    assert _lines(proto_rule_to_rules(_felix_test_ctx(), rule, DENY_INGRESS)) == [
        "-A test --jump MARK --set-mark 0x0/0x600",
        "-A test -p tcp -m multiport --source-ports 1:2,3:4,5:6,7:8,9:10,11:12,13:14 --jump MARK --set-mark 0x200/0x200",
        "-A test -p tcp -m multiport --source-ports 15:16 --jump MARK --set-mark 0x200/0x200",
        "-A test -m set --match-set cali40ipset-1 src,src --jump MARK --set-mark 0x200/0x200",
        "-A test -p tcp -m multiport --destination-ports 2:3 --jump MARK --set-mark 0x400/0x400",
        "-A test -m set --match-set cali40ipset-2 dst,dst --jump MARK --set-mark 0x400/0x400",
        and_rule,
        "-A test --source 10.1.0.0/16 --jump MARK --set-mark 0x400/0x400",
        "-A test --source 11.0.0.0/8 --jump MARK --set-mark 0x400/0x400",
        and_rule,
        "-A test --destination 12.1.0.0/16 --jump MARK --set-mark 0x400/0x400",
        "-A test --destination 13.0.0.0/8 --jump MARK --set-mark 0x400/0x400",
        and_rule,
        "-A test --source 14.1.0.0/16 --jump MARK --set-mark 0/0x200",
        "-A test --source 15.0.0.0/8 --jump MARK --set-mark 0/0x200",
        "-A test --destination 16.1.0.0/16 --jump MARK --set-mark 0/0x200",
        "-A test --destination 17.0.0.0/8 --jump MARK --set-mark 0/0x200",
        "-A test -p tcp -m multiport ! --source-ports 101 -m set ! --match-set cali40ipset-3 src,src "
        "-m multiport ! --destination-ports 201 -m set ! --match-set cali40ipset-4 dst,dst "
        "-m mark --mark 0x200/0x200 --jump MARK --set-mark 0x80/0x80",
        "-A test -m mark --mark 0x80/0x80 --jump RETURN",
    ]


def test_match_block_ipblock_except():
    """calico-dataplane.md §4.5: allow from 10.0.0.0/8 except 10.1.0.0/16, TCP 80."""
    rule = ParsedRule(action="allow", protocol="tcp", src_nets=("10.0.0.0/8",),
                      not_src_nets=("10.1.0.0/16",), dst_ports=((80, 80),))
    ctx = make_ctx(cluster(), "node1", "3.32")
    assert _lines(proto_rule_to_rules(ctx, rule, DENY_INGRESS)) == [
        "-A test --jump MARK --set-mark 0x80000/0x180000",
        "-A test --source 10.1.0.0/16 --jump MARK --set-mark 0/0x80000",
        "-A test -p tcp --source 10.0.0.0/8 -m multiport --destination-ports 80 "
        "-m mark --mark 0x80000/0x80000 --jump MARK --set-mark 0x10000/0x10000",
        "-A test -m mark --mark 0x10000/0x10000 --jump RETURN",
    ]


@pytest.mark.parametrize("version,expected", [
    ("3.29", ["-A test -p udp --jump DROP"]),
    ("3.32", ["-A test -p udp --jump MARK --set-mark 0x40000/0x40000",
              "-A test -m mark --mark 0x40000/0x40000 --jump DROP"]),
])
def test_deny_per_version(version, expected):
    ctx = make_ctx(cluster(), "node1", version)
    assert _lines(proto_rule_to_rules(ctx, ParsedRule(action="deny", protocol="udp"),
                                      DENY_INGRESS)) == expected


def _web_policy(name: str, rules=(), order=500.0, kind="GlobalNetworkPolicy", **kw) -> Policy:
    return Policy(kind=kind, name=name, namespace=None, tier="default", order=order,
                  selector="app == 'web'", types=("ingress",), ingress=tuple(rules), **kw)


def test_policy_chain_rules_and_trailing_return():
    allow = Rule("Allow", protocol="TCP",
                 source=EntityRule(selector="app == 'client'"),
                 destination=EntityRule(ports=(PortSpec(80, 80),)))
    pol = _web_policy("allow-client", [allow])
    rs = render_node(cluster([pol]), "node1")
    name = [n for n in rs.tables[Table.FILTER] if n.startswith("cali-pi-")][0]
    chain = rs.chain(Table.FILTER, name)
    assert len(chain.rules) == 1        # the trailing RETURN is stripped
    rule = chain.rules[0]
    sel = parse_selector("app == 'client'")
    assert rule.comments[1:] == ("GlobalNetworkPolicy allow-client ingress",)
    assert rule.matches == (ir.ProtocolMatch(6), ir.SetMatch(sel.ipset_name, ("src",)),
                            ir.PortMatch("dst", ((80, 80),)))
    assert rule.target == ir.SetMark(0x10000, 0x10000)
    assert (rule.provenance.role, rule.provenance.rule_index, rule.provenance.policy) == \
        ("policy-rule", 0, "allow-client")
    assert rs.ipsets[sel.ipset_name].members == ("192.168.1.10",)


def test_policy_group_chain():
    pols = [_web_policy(f"p{i}", order=float(i)) for i in range(7)]
    rs = render_node(cluster(pols), "node1")
    jumps = [r.target for r in rs.chain(Table.FILTER, WEB).rules if isinstance(r.target, ir.Jump)]
    group = jumps[0].chain
    assert group.startswith("cali-gi-") and len(group) == 28
    rules = rs.chain(Table.FILTER, group).rules
    assert [r.comments[1:] for r in rules].count(("Return on verdict",)) == 1
    assert rules[0].matches == () and rules[1].matches == (ir.MarkMatch(0, 0x30000),)
    assert rules[5].target == RETURN and rules[5].matches == (ir.MarkMatch(0, 0x30000, True),)
    assert rules[6].matches == ()          # first jump after a RETURN is unconditional
    assert len(rules) == 8


def test_staged_policy_has_no_chain_and_no_end_of_tier_drop():
    staged = _web_policy("staged", kind="StagedGlobalNetworkPolicy")
    rs = render_node(cluster([staged]), "node1")
    assert not [n for n in rs.tables[Table.FILTER] if n.startswith("cali-pi-")]
    comments = [c for c, _ in shape(rs.chain(Table.FILTER, WEB))]
    assert ("Start of tier default",) in comments
    assert not any("End of tier" in " ".join(c) for c in comments)


def test_selector_and_named_port_sets_cover_all_nodes_and_network_sets():
    remote = pod_ep("default", "remote", "node2", "192.168.2.7", {"app": "client"},
                    ports=(ContainerPort(8080, "TCP", "http"),))
    c = cluster(extra_eps=[remote])
    c.network_sets.append(NetworkSet("ext", None, (IPv4Network("10.9.0.0/16"),),
                                     {"app": "client"}))
    rule = Rule("Allow", source=EntityRule(selector="app == 'client'"),
                destination=EntityRule(selector="app == 'client'", ports=(PortSpec(name="http"),)))
    c.policies.append(_web_policy("np", [rule]))
    rs = render_node(c, "node1")
    sel = parse_selector("app == 'client'")
    assert rs.ipsets[sel.ipset_name].members == ("10.9.0.0/16", "192.168.1.10", "192.168.2.7")
    named = [s for s in rs.ipsets.values() if s.set_type == "hash:ip,port"]
    assert len(named) == 1 and named[0].members == ("192.168.2.7,tcp:8080",)
    assert named[0].name.startswith("cali40n:")


def test_unknown_node_is_input_error():
    with pytest.raises(InputError, match="unknown node"):
        render_node(cluster(), "nope")


def test_vxlan_and_wireguard_static_rules():
    from tracer.model.cluster import IPPool
    pool = IPPool("p", IPv4Network("192.168.0.0/16"), vxlan_mode="Always")
    c = cluster(pool=pool, felix=FelixConfig(wireguard_enabled=True))
    c.nodes["node2"] = dataclasses.replace(c.nodes["node2"],
                                           vxlan_tunnel_address=IPv4Address("192.168.2.0"))
    rs = render_node(c, "node1")
    comments = [r.comments[1:] for r in rs.chain(Table.FILTER, "cali-INPUT").rules]
    assert ("Allow IPv4 VXLAN packets from allowed hosts",) in comments
    assert ("Allow incoming IPv4 Wireguard packets",) in comments
    assert not any("IPIP" in " ".join(c) for c in comments)
    raw = rs.chain(Table.RAW, "cali-PREROUTING").rules
    assert raw[1].target == ir.NoTrack()
    assert rs.ipsets["cali40all-vxlan-net"].members == ("10.0.0.2",)
    masq = [r for r in rs.chain(Table.NAT, "cali-POSTROUTING").rules
            if isinstance(r.target, ir.Masquerade)]
    assert [r.matches[0] for r in masq] == [ir.InterfaceMatch("out", "wireguard.cali")]


def test_cli_render_scenario():
    from tracer.cli import cli
    runner = CliRunner()
    result = runner.invoke(cli, ["render", "-f", "scenarios/multinode-ipip", "--node", "node-1",
                                 "--ipsets"])
    assert result.exit_code == 0, result.output
    ipsets, _, tables = result.output.partition("# ---- iptables-restore")
    assert ipsets.startswith("create cali40")
    assert "*filter" in tables and 'cali:wUHhoiAYhphO9Mso' in tables
    bad = runner.invoke(cli, ["render", "-f", "scenarios/multinode-ipip", "--node", "nope"])
    assert bad.exit_code != 0 and isinstance(bad.exception, InputError)


def test_host_endpoint_chains():
    from tracer.model.cluster import HostEndpoint
    c = cluster()
    c.host_endpoints.append(HostEndpoint("node1-eth0", "node1", "eth0",
                                         (IPv4Address("10.0.0.1"),), {"role": "node"}))
    host_pol = Policy(kind="GlobalNetworkPolicy", name="host", namespace=None, tier="default",
                      order=10.0, selector="role == 'node'", types=("ingress",),
                      ingress=(Rule("Allow", protocol="TCP",
                                    destination=EntityRule(ports=(PortSpec(22, 22),))),))
    c.policies.append(host_pol)
    rs = render_node(c, "node1")
    dispatch = rs.chain(Table.FILTER, "cali-from-host-endpoint")
    assert [r.target for r in dispatch.rules] == [ir.Goto("cali-fh-eth0")]
    fh = rs.chain(Table.FILTER, "cali-fh-eth0")
    assert ir.Jump("cali-failsafe-in") in [r.target for r in fh.rules]
    assert shape(fh)[-1] == (("Drop if no profiles matched",), DROP)
    assert "cali-failsafe-in" in rs.tables[Table.FILTER]
    fwd = rs.chain(Table.FILTER, "cali-thfw-eth0")
    assert shape(fwd)[-2:] == [(("Allow forwarded traffic by default",), ir.SetMark(0x10000, 0x10000)),
                               (("Return for accepted forward traffic",), RETURN)]
    assert "cali-th-eth0" in rs.tables[Table.MANGLE]
