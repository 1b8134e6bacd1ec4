"""felix's nftables mode: the rule text felix's backend writes, the table's layout, and the
kernel loading every bundled scenario's ruleset with ``nft -f``.

The expected strings are felix's own test expectations (felix/nftables/match_builder_test.go,
actions_test.go, rules_test.go at projectcalico/calico 87c15906)."""

from __future__ import annotations

import pytest

from bundled import LABS, SCENARIOS
from tracer.dataplane import ir
from tracer.model.loader import load_cluster
from tracer.nft.model import VmapMatch
from tracer.nft.text import action_text, format_nft, rule_body
from tracer.nft.translate import comment_for, render_nft, rule_hashes

TCP, UDP = ir.ProtocolMatch(6), ir.ProtocolMatch(17)
RANGES = ((1234, 1234), (5678, 6000))

# (IR matches, felix's expected text); sets are looked up as hash:net unless named "ipport".
MATCHES = [
    ((ir.MarkMatch(0, 0x400A),), "meta mark & 0x400a == 0"),
    ((ir.MarkMatch(0, 0x400A, True),), "meta mark & 0x400a != 0"),
    ((ir.MarkMatch(0x4000, 0x4000),), "meta mark & 0x4000 == 0x4000"),
    ((ir.MarkMatch(0x400A, 0xF00F),), "meta mark & 0xf00f == 0x400a"),
    ((ir.MarkMatch(0x400A, 0xF00F, True),), "meta mark & 0xf00f != 0x400a"),
    ((ir.ConntrackMatch(frozenset({"INVALID"})),), "ct state invalid"),
    ((ir.InterfaceMatch("in", "tap1234abcd"),), "iifname tap1234abcd"),
    ((ir.InterfaceMatch("out", "tap1234abcd"),), "oifname tap1234abcd"),
    ((ir.AddrTypeMatch(src_type="LOCAL", limit_iface="out"),), "fib saddr . oif type local"),
    ((ir.AddrTypeMatch(src_type="LOCAL"),), "fib saddr type local"),
    ((ir.AddrTypeMatch(src_type="LOCAL", limit_iface="out", src_negated=True),),
     "fib saddr . oif type != local"),
    ((ir.AddrTypeMatch(src_type="LOCAL", src_negated=True),), "fib saddr type != local"),
    ((ir.AddrTypeMatch(dst_type="LOCAL"),), "fib daddr type local"),
    ((TCP,), "meta l4proto tcp"),
    ((ir.ProtocolMatch(6, True),), "meta l4proto != tcp"),
    ((ir.ProtocolMatch(123),), "meta l4proto 123"),
    ((ir.ProtocolMatch(123, True),), "meta l4proto != 123"),
    ((ir.ProtocolMatch(4),), "meta l4proto 4"),
    # felix's test passes "10.0.0.4"; from policies felix gets normalised CIDRs ("/32").
    ((ir.AddressMatch("src", ir.Cidr.parse("10.0.0.4")),), "ip saddr 10.0.0.4/32"),
    ((ir.AddressMatch("src", ir.Cidr.parse("10.0.0.4"), True),), "ip saddr != 10.0.0.4/32"),
    ((ir.AddressMatch("dst", ir.Cidr.parse("10.0.0.0/24")),), "ip daddr 10.0.0.0/24"),
    ((ir.AddressMatch("dst", ir.Cidr.parse("10.0.0.4"), True),), "ip daddr != 10.0.0.4/32"),
    ((ir.SetMatch("calits-12345abc-_", ("src",)),), "ip saddr @calits-12345abc-_"),
    ((ir.SetMatch("calits-12345abc-_", ("src",), True),), "ip saddr != @calits-12345abc-_"),
    ((ir.SetMatch("calits-12345abc-_", ("dst",)),), "ip daddr @calits-12345abc-_"),
    ((ir.SetMatch("calits-12345abc-_", ("dst",), True),), "ip daddr != @calits-12345abc-_"),
    ((ir.SetMatch("ipport", ("src", "src")),), "ip saddr . meta l4proto . th sport @ipport"),
    ((ir.SetMatch("ipport", ("dst", "dst"), True),),
     "ip daddr . meta l4proto . th dport != @ipport"),
    ((TCP, ir.PortMatch("src", ((1234, 1234), (5678, 5678)))),
     "meta l4proto tcp tcp sport { 1234, 5678 }"),
    ((UDP, ir.PortMatch("src", ((1234, 1234), (5678, 5678)), True)),
     "meta l4proto udp udp sport != { 1234, 5678 }"),
    ((TCP, ir.PortMatch("dst", ((1234, 1234), (5678, 5678)))),
     "meta l4proto tcp tcp dport { 1234, 5678 }"),
    ((UDP, ir.PortMatch("dst", RANGES)), "meta l4proto udp udp dport { 1234, 5678-6000 }"),
    ((UDP, ir.PortMatch("dst", RANGES, True)),
     "meta l4proto udp udp dport != { 1234, 5678-6000 }"),
    ((TCP, ir.PortMatch("src", ((1234, 1234),)), ir.PortMatch("dst", ((8080, 8080),),
                                                               multiport=False)),
     "meta l4proto tcp tcp sport { 1234 } tcp dport 8080"),
    ((ir.IcmpMatch(123),), "icmp type 123"),
    ((ir.IcmpMatch(123, negated=True),), "icmp type != 123"),
    ((ir.IcmpMatch(123, 5),), "icmp type 123 code 5"),
    ((ir.IcmpMatch(123, 5, True),), "icmp type != 123 code != 5"),
    ((ir.LimitMatch("10/minute"),), "limit rate 10/minute"),
    ((ir.LimitMatch("20/hour", 10),), "limit rate 20/hour burst 10 packets"),
    ((VmapMatch("in", "filter-vmap1234"),), "iifname vmap @filter-vmap1234"),
    ((VmapMatch("out", "raw-vmap1234"),), "oifname vmap @raw-vmap1234"),
]

ACTIONS = [
    (ir.Goto("cali-abcd"), "goto cali-abcd"),
    (ir.Jump("cali-abcd"), "jump cali-abcd"),
    (ir.Verdict("RETURN"), "return"),
    (ir.Verdict("DROP"), "drop"),
    (ir.Verdict("ACCEPT"), "accept"),
    (ir.Log(prefix="prefix: ", level=5), 'log prefix "prefix: " level info'),
    (ir.Dnat("10.0.0.1:8081"), "dnat to 10.0.0.1:8081"),
    (ir.Snat("10.0.0.1"), "snat to 10.0.0.1"),
    (ir.Snat("10.0.0.1", random_fully=True), "snat to 10.0.0.1 fully-random"),
    (ir.Masquerade(), "masquerade"),
    (ir.Masquerade(to_ports=(32768, 65535)), "masquerade to :32768-65535"),
    (ir.Masquerade(random_fully=True), "masquerade fully-random"),
    (ir.Masquerade(to_ports=(32768, 65535), random_fully=True),
     "masquerade to :32768-65535 fully-random"),
    (ir.SetMark(0, 0x1000), "meta mark set mark & 0xffffefff"),
    (ir.SetMark(0x1000, 0x1000), "meta mark set mark or 0x1000"),
    (ir.SetMark(0x1000, 0xF000), "meta mark set mark & 0xffff0fff ^ 0x1000"),
    (ir.ConnMarkTarget("set", 0x1000, 0xF000), "ct mark set ct mark & 0xffff0fff ^ 0x1000"),
    (ir.NoTrack(), "notrack"),
]


@pytest.mark.parametrize("matches,expected", MATCHES, ids=[e for _, e in MATCHES])
def test_match_text_is_felix_match_builder(matches, expected):
    body = rule_body(matches, None, {"ipport": "hash:ip,port"})
    assert body == expected


@pytest.mark.parametrize("target,expected", ACTIONS, ids=[e for _, e in ACTIONS])
def test_action_text_is_felix_actions(target, expected):
    assert action_text(target) == expected


def test_rule_body_counter_and_empty_rule():
    """renderRule: a counter before every action; a rule with nothing is ``continue``."""
    assert rule_body((TCP,), ir.Verdict("DROP"), {}) == "meta l4proto tcp counter drop"
    assert rule_body((), ir.Jump("filter-cali-x"), {}) == "counter jump filter-cali-x"
    assert rule_body((), None, {}) == "continue"


def test_comments_as_felix_renderer():
    """rules_test.go "rule comments" (hash TEST): joined, cut to 128 characters."""
    assert comment_for("TEST", ("boz", "fizz")) == "cali:TEST; boz fizz"
    assert comment_for("TEST", ("a" * 129,)) == "cali:TEST; " + "a" * 117
    assert comment_for("TEST", ()) == "cali:TEST;"


def test_rule_hashes_chain_in_position_and_chain():
    """rules_test.go "Rule hashing tests"."""
    rules1 = ["foobar baz counter jump biff"]
    rules3 = ["foobar baz counter jump biff", "foobar baz counter jump boff"]
    assert rule_hashes("chain", rules1)[0] == rule_hashes("chain", rules3)[0]
    assert rule_hashes("chain", rules1) != rule_hashes("chain2", rules1)
    assert rule_hashes("chain", ["foobar baz counter jump boff"])[0] != \
        rule_hashes("chain", rules3)[1]
    assert all(len(h) == 16 for h in rule_hashes("chain", rules3))


@pytest.fixture(scope="module")
def bff():
    cluster = load_cluster([str(next(p for p in SCENARIOS if p.name == "backend-from-frontend"))])
    return render_nft(cluster, "node-1").tables[0]


def test_one_calico_table_with_felix_base_chains(bff):
    assert (bff.family, bff.name) == ("ip", "calico")
    bases = {c.name: (c.base.type, c.base.hook, c.base.priority_value)
             for c in bff.chains.values() if c.base is not None}
    assert bases == {
        "raw-PREROUTING": ("filter", "prerouting", -300), "raw-OUTPUT": ("filter", "output", -300),
        "mangle-PREROUTING": ("filter", "prerouting", -150),
        "mangle-INPUT": ("filter", "input", -150), "mangle-FORWARD": ("filter", "forward", -150),
        "mangle-OUTPUT": ("route", "output", -150),
        "mangle-POSTROUTING": ("filter", "postrouting", -150),
        "nat-PREROUTING": ("nat", "prerouting", -100), "nat-INPUT": ("nat", "input", -100),
        "nat-OUTPUT": ("nat", "output", 110), "nat-POSTROUTING": ("nat", "postrouting", 110),
        "filter-INPUT": ("filter", "input", 0), "filter-FORWARD": ("filter", "forward", 0),
        "filter-OUTPUT": ("filter", "output", 0)}
    # Every regular chain is a layer's, every jump stays inside the table.
    names = set(bff.chains)
    for chain in bff.chains.values():
        assert chain.name.split("-")[0] in ("raw", "mangle", "nat", "filter")
        for rule in chain.rules:
            if isinstance(rule.target, (ir.Jump, ir.Goto)):
                assert rule.target.chain in names, (chain.name, rule.text)


def test_workload_dispatch_is_a_verdict_map(bff):
    chain = bff.chains["filter-cali-from-wl-dispatch"]
    assert chain.rules[0].text == "iifname vmap @filter-cali-from-wl-dispatch"
    assert chain.rules[-1].text == "counter drop"
    assert "Unknown interface" in chain.rules[-1].comment
    vmap = bff.maps["filter-cali-from-wl-dispatch"]
    assert len(vmap.elements) == 3
    for iface, verdict in vmap.elements:
        assert verdict == ir.Goto(f"filter-cali-fw-{iface}")
        assert verdict.chain in bff.chains
    assert not any(n.startswith("filter-cali-from-wl-dispatch-") for n in bff.chains)


def test_policy_chains_keep_their_names(bff):
    """256-character chain names: the policy chain is not hashed down as in iptables mode."""
    assert "filter-cali-pi-knp/myns/backend-allow-frontend" in bff.chains
    assert "filter-cali-pro-kns.myns" in bff.chains


def test_sets_are_legalised_and_typed(bff):
    pools = bff.sets["cali40network-ip-pools"]
    assert (pools.type, pools.flags, pools.elements) == ("ipv4_addr", ("interval",),
                                                          ("192.168.0.0/16",))
    assert bff.sets["cali40this-host"].flags == ()
    assert all(":" not in name for name in bff.sets)


def _nodes(path):
    cluster = load_cluster([str(path)])
    return cluster, sorted(cluster.nodes)


@pytest.mark.root
def test_every_bundled_scenario_loads_with_nft():
    """``nft -f`` in a namespace of our own accepts every node's rendered table as is, and
    the kernel holds every chain, rule, set and map element we wrote."""
    from tracer.nft.sandbox import NftSandbox

    loaded = 0
    with NftSandbox() as box:
        for path in (*SCENARIOS, *LABS):
            cluster, nodes = _nodes(path)
            for node in nodes:
                ruleset = render_nft(cluster, node)
                box.load(format_nft(ruleset))
                listing = box.listing()
                table = ruleset.tables[0]
                for chain in table.chains.values():
                    assert f"chain {chain.name} {{" in listing, (path.name, node, chain.name)
                rules = sum(len(c.rules) for c in table.chains.values())
                assert listing.count(' comment "cali:') == rules, (path.name, node)
                # The handles the trace names rules by are the kernel's.
                assert _listed_handles(box.listing("-a")) == _predicted(table), (path.name, node)
                loaded += 1
    assert loaded >= len(SCENARIOS)


def _listed_handles(listing: str) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {}
    chain = None
    for line in listing.splitlines():
        line = line.strip()
        if line.startswith("chain "):
            chain = line.split()[1]
            out[chain] = []
        elif line == "}":
            chain = None
        elif chain is not None and "# handle " in line and not line.startswith("type "):
            out[chain].append(int(line.rsplit("# handle ", 1)[1]))
    return out


def _predicted(table) -> dict[str, list[int]]:
    from tracer.nft.walk import rule_handles

    handles = rule_handles(table)
    return {name: [handles[(name, i)] for i in range(len(chain.rules))]
            for name, chain in table.chains.items()}


def test_v329_dispatches_through_the_prefix_tree():
    """Verdict-map dispatch arrived in v3.30 (projectcalico/calico#9323)."""
    cluster = load_cluster([str(next(p for p in SCENARIOS if p.name == "backend-from-frontend"))])
    table = render_nft(cluster, "node-1", version="3.29").tables[0]
    assert not table.maps
    root = table.chains["filter-cali-from-wl-dispatch"]
    assert any(r.text.startswith("iifname cali5* counter goto filter-cali-from-wl-dispatch-5")
               for r in root.rules)
    assert "filter-cali-from-wl-dispatch-5" in table.chains
