"""iptables-save parsing and writing: real-dump spellings, felix's restore spellings,
round trips, and bad input."""

from __future__ import annotations

from pathlib import Path

import pytest

from tracer.dataplane.ipsets import parse_ipsets
from tracer.dataplane.iptables_save import (
    format_rule, format_ruleset, normalise_rule, parse_rule, parse_ruleset, split_words,
)
from tracer.dataplane.ir import (
    AddressMatch, Cidr, ConntrackMatch, Dnat, Goto, InterfaceMatch, Jump, MarkMatch,
    Masquerade, PortMatch, ProtocolMatch, ProtocolModuleMatch, Rule, SetMark, SetMatch,
    StatisticMatch, Table, Verdict,
)
from tracer.errors import InputError

DATA = Path(__file__).parent / "data"
FIXTURE = (DATA / "felix-node.iptables-save").read_text()


@pytest.fixture(scope="module")
def ruleset():
    sets = parse_ipsets((DATA / "felix-node.ipset").read_text())
    return parse_ruleset(FIXTURE, filename="felix-node.iptables-save", ipsets=sets)


def test_fixture_tables_chains_and_rule_counts(ruleset):
    assert set(ruleset.tables) == {Table.RAW, Table.MANGLE, Table.NAT, Table.FILTER}
    assert ruleset.chain(Table.FILTER, "FORWARD").policy == "DROP"
    assert ruleset.chain(Table.FILTER, "cali-FORWARD").policy is None
    total = sum(len(c.rules) for chains in ruleset.tables.values() for c in chains.values())
    assert total == sum(1 for line in FIXTURE.splitlines() if line.startswith("-A "))
    assert "cali40s:Wq3cXb9dVt0LmZs8Ey2fH1k" in ruleset.ipsets


def test_fixture_rules_have_the_expected_shape(ruleset):
    tw = ruleset.chain(Table.FILTER, "cali-tw-cali68caf03a5f4").rules
    end_of_tier = tw[6]
    assert end_of_tier.comments[1] == "End of tier default. Drop if no policies passed packet"
    assert end_of_tier.matches == (MarkMatch(0, 0x20000),)
    assert end_of_tier.target == Verdict("DROP")
    svc = ruleset.chain(Table.NAT, "KUBE-SVC-LOLE4ISW44XBNF3G").rules
    assert svc[1].matches == (StatisticMatch("random", probability=0.5),)
    sep = ruleset.chain(Table.NAT, "KUBE-SEP-4GUFB5R3LQ4XQBX2").rules[1]
    assert sep.matches == (ProtocolMatch(6), ProtocolModuleMatch("tcp"))
    assert sep.target == Dnat("192.168.1.20:80")
    masq = ruleset.chain(Table.NAT, "cali-nat-outgoing").rules[0]
    assert masq.matches == (SetMatch("cali40masq-ipam-pools", ("src",)),
                            SetMatch("cali40all-ipam-pools", ("dst",), negated=True))
    assert masq.target == Masquerade(random_fully=True)
    dispatch = ruleset.chain(Table.FILTER, "cali-from-wl-dispatch").rules[0]
    assert dispatch.target == Goto("cali-fw-cali68caf03a5f4")
    assert dispatch.matches == (InterfaceMatch("in", "cali68caf03a5f4"),)


def test_ruleset_round_trips_through_format(ruleset):
    text = format_ruleset(ruleset)
    assert parse_ruleset(text, ipsets=ruleset.ipsets) == ruleset
    # Every rule prints back exactly as the dump spelt it.
    original = sorted(line for line in FIXTURE.splitlines() if line.startswith("-A "))
    assert sorted(line for line in text.splitlines() if line.startswith("-A ")) == original
    assert [line for line in text.splitlines() if line.startswith("*")] == [
        "*raw", "*mangle", "*nat", "*filter"]


# Each line is in iptables-save's canonical spelling: it must parse and print back unchanged.
CANONICAL = [
    "-A c -s 10.0.0.0/8 ! -d 10.1.0.0/16 -i cali+ ! -o eth0 -p tcp -j ACCEPT",
    "-A c ! -p udp -j DROP",
    "-A c -p ipencap -j DROP",
    "-A c -p sctp -m sctp --dport 9 -j ACCEPT",
    "-A c -m comment --comment \"cali:abc\" -m comment --comment \"two words\" -j RETURN",
    "-A c -m comment --comment plain -m comment --comment \"q\\\"uote\\\\s\\'\"",
    "-A c -m mark --mark 0x1 -m comment --comment late -j ACCEPT",
    "-A c -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT",
    "-A c -m conntrack ! --ctstate INVALID,NEW,UNTRACKED,SNAT,DNAT -j ACCEPT",
    "-A c -m conntrack --ctstate DNAT ! --ctstatus SEEN_REPLY,ASSURED -j ACCEPT",
    "-A c -m conntrack --ctstatus NONE -j ACCEPT",
    "-A c -m state --state INVALID,NEW -j ACCEPT",
    "-A c -m set --match-set cali40s:x src -m set ! --match-set cali40n:y dst,dst -j ACCEPT",
    "-A c -p tcp -m multiport --dports 80,8000:8080 -m multiport ! --sports 1 -j ACCEPT",
    "-A c -p tcp -m tcp --sport 10:20 ! --dport 80 --tcp-flags FIN,SYN,RST,ACK SYN -j ACCEPT",
    "-A c -p tcp -m tcp ! --tcp-flags FIN,SYN,RST,PSH,ACK,URG NONE",
    "-A c -p udp -m udp --dport 4789 -j NOTRACK",
    "-A c -p udp -m udp --dport 4789 -j CT --notrack",
    "-A c -p icmp -m icmp --icmp-type 8 -j ACCEPT",
    "-A c -p icmp -m icmp ! --icmp-type 3/4 -j ACCEPT",
    "-A c -p icmp -m icmp --icmp-type any -j ACCEPT",
    "-A c -m addrtype ! --src-type LOCAL --limit-iface-out -m addrtype --src-type LOCAL -j MASQUERADE",  # noqa: E501
    "-A c -m addrtype --src-type UNICAST,LOCAL --dst-type BROADCAST --limit-iface-in",
    "-A c -m mark --mark 0x80000/0x80000 -m rpfilter --validmark --invert -j DROP",
    "-A c -m rpfilter --loose --accept-local -j ACCEPT",
    "-A c -m mark ! --mark 0x4000/0x4000 -j RETURN",
    "-A c -m connmark --mark 0x1/0xff -j ACCEPT",
    "-A c -m limit --limit 5/min --limit-burst 10 -j LOG --log-prefix \"calico-packet: \" --log-level 5",  # noqa: E501
    "-A c -m limit --limit 3/hour -j LOG",
    "-A c -m statistic --mode random --probability 0.33333333349 -j c2",
    "-A c -m statistic --mode random ! --probability 0.50000000000 -j c2",
    "-A c -m statistic --mode nth --every 3 --packet 1 -j c2",
    "-A c -j NFLOG --nflog-prefix \"API0|default.allow\" --nflog-group 1 --nflog-size 80",
    "-A c -j REJECT --reject-with icmp-port-unreachable",
    "-A c -p tcp -j REJECT --reject-with tcp-reset",
    "-A c -j MARK --set-xmark 0x4000/0x0",
    "-A c -j CONNMARK --save-mark --nfmask 0xff --ctmask 0xf0",
    "-A c -j CONNMARK --restore-mark --nfmask 0xffffffff --ctmask 0xffffffff",
    "-A c -j CONNMARK --set-xmark 0x1/0xff",
    "-A c -p udp -j MASQUERADE --to-ports 4790-65535 --random-fully",
    "-A c -j SNAT --to-source 1.2.3.4 --random",
    "-A c -p tcp -m tcp -j DNAT --to-destination 10.0.0.1:80",
    "-A c -p icmp -j TRACE",
    "-A c -i cali+ -g c2",
    "-A c",
]


@pytest.mark.parametrize("line", CANONICAL)
def test_canonical_spelling_round_trips(line):
    chain, rule = parse_rule(line)
    assert format_rule(chain, rule) == line
    assert parse_rule(format_rule(chain, rule)) == (chain, rule)


# felix / hand-written spellings and what iptables-save prints for them (checked on
# iptables 1.8.9).
RESPELLED = [
    ('-A c -m comment --comment "cali:x" --in-interface cali+ --jump MARK --set-mark 0x80000/0x80000',  # noqa: E501
     '-A c -i cali+ -m comment --comment "cali:x" -j MARK --set-xmark 0x80000/0x80000'),
    ("-A c -p tcp --source 10.0.0.0/8 -m multiport --destination-ports 80 --jump ACCEPT",
     "-A c -s 10.0.0.0/8 -p tcp -m multiport --dports 80 -j ACCEPT"),
    ("-A c --jump MARK --set-mark 0/0x1b0000", "-A c -j MARK --set-xmark 0x0/0x1b0000"),
    ("-A c -j MARK --set-mark 0x10000/0x30000", "-A c -j MARK --set-xmark 0x10000/0x30000"),
    ("-A c -j MARK --set-mark 0x4000", "-A c -j MARK --set-xmark 0x4000/0xffffffff"),
    ("-A c -j MARK --or-mark 0x4000", "-A c -j MARK --set-xmark 0x4000/0x4000"),
    ("-A c -j MARK --and-mark 0x4000", "-A c -j MARK --set-xmark 0x0/0xffffbfff"),
    ("-A c -j MARK --xor-mark 0x4000", "-A c -j MARK --set-xmark 0x4000/0x0"),
    ("-A c -j CONNMARK --save-mark", "-A c -j CONNMARK --save-mark --nfmask 0xffffffff --ctmask 0xffffffff"),  # noqa: E501
    ("-A c -j CONNMARK --set-mark 0x1/0xfe", "-A c -j CONNMARK --set-xmark 0x1/0xff"),
    ("-A c -p udp --dport 4789 --goto c2", "-A c -p udp -m udp --dport 4789 -g c2"),
    ("-A c -p tcp --syn -j ACCEPT", "-A c -p tcp -m tcp --tcp-flags FIN,SYN,RST,ACK SYN -j ACCEPT"),
    ("-A c -p tcp --dport 80 --sport 1:1 -j DROP", "-A c -p tcp -m tcp --sport 1 --dport 80 -j DROP"),  # noqa: E501
    ("-A c -p tcp -m tcp --dport 5 -m tcp --sport 1 -j DROP", "-A c -p tcp -m tcp --sport 1 --dport 5 -j DROP"),  # noqa: E501
    ("-A c -p tcp -m tcp --tcp-flags ALL NONE", "-A c -p tcp -m tcp --tcp-flags FIN,SYN,RST,PSH,ACK,URG NONE"),  # noqa: E501
    ("-A c -p icmp --icmp-type echo-request -j ACCEPT", "-A c -p icmp -m icmp --icmp-type 8 -j ACCEPT"),  # noqa: E501
    ("-A c -p icmp -m icmp --icmp-type port-unreachable", "-A c -p icmp -m icmp --icmp-type 3/3"),
    ("-A c -p 4 -j DROP", "-A c -p ipencap -j DROP"),
    ("-A c -p all -s 0.0.0.0/0 -j ACCEPT", "-A c -j ACCEPT"),
    ("-A c -d 10.1.2.3 -j ACCEPT", "-A c -d 10.1.2.3/32 -j ACCEPT"),
    ("-A c -m state --state ESTABLISHED,RELATED,NEW", "-A c -m state --state NEW,RELATED,ESTABLISHED"),  # noqa: E501
    ("-A c -m addrtype --src-type LOCAL,UNICAST", "-A c -m addrtype --src-type UNICAST,LOCAL"),
    ("-A c -m rpfilter --invert --validmark", "-A c -m rpfilter --validmark --invert"),
    ("-A c -m limit --limit 60/minute --limit-burst 5 -j LOG --log-level warning",
     "-A c -m limit --limit 1/sec -j LOG"),
    ("-A c -j LOG --log-level debug --log-prefix hi", "-A c -j LOG --log-prefix hi --log-level 7"),
    ("-A c -m statistic --mode random --probability 0.3333", "-A c -m statistic --mode random --probability 0.33330000006"),  # noqa: E501
    ("-A c -j NFLOG --nflog-group 0 --nflog-range 80", "-A c -j NFLOG"),
    ("-A c -j REJECT", "-A c -j REJECT --reject-with icmp-port-unreachable"),
    ("-A c -j REJECT --reject-with net-unreach", "-A c -j REJECT --reject-with icmp-net-unreachable"),  # noqa: E501
    ("-A c -m tcp -p tcp -j ACCEPT", "-A c -p tcp -m tcp -j ACCEPT"),
    ("[5:300] -A c -j ACCEPT", "-A c -j ACCEPT"),
    ('-4 -t filter -A FORWARD -o caliB -j cali-tw-caliB', "-A FORWARD -o caliB -j cali-tw-caliB"),
]


@pytest.mark.parametrize("given, printed", RESPELLED)
def test_other_spellings_normalise_to_what_iptables_save_prints(given, printed):
    chain, rule = parse_rule(given)
    assert format_rule(chain, rule) == printed
    assert parse_rule(printed) == (chain, rule)


def test_set_mark_with_mask_keeps_felix_semantics():
    _, rule = parse_rule("-A c -j MARK --set-mark 0x10000/0x20000")
    # (mark & ~m) | v  ==  (mark & ~(v|m)) ^ v
    assert rule.target == SetMark(0x10000, 0x30000)


def test_match_order_and_comment_position_are_kept():
    _, rule = parse_rule('-A c -m mark --mark 0x1/0x1 -m set --match-set s src '
                         '-m comment --comment "x" -m mark --mark 0x0/0x2 -j ACCEPT')
    assert rule.matches == (MarkMatch(1, 1), SetMatch("s", ("src",)), MarkMatch(0, 2))
    assert rule.comments == ("x",) and rule.comment_at == 2


def test_ir_built_in_felix_order_prints_in_kernel_order():
    rule = Rule(matches=(ProtocolMatch(6), SetMatch("cali40s:a", ("src",)),
                         AddressMatch("src", Cidr.parse("10.0.0.0/8")),
                         PortMatch("dst", ((80, 80),))),
                target=SetMark(0x10000, 0x10000), comments=("cali:x",))
    text = format_rule("cali-pi-x", rule)
    assert text == ('-A cali-pi-x -s 10.0.0.0/8 -p tcp -m comment --comment "cali:x" '
                    "-m set --match-set cali40s:a src -m multiport --dports 80 "
                    "-j MARK --set-xmark 0x10000/0x10000")
    assert parse_rule(text)[1] == normalise_rule(rule)


def test_split_words_follows_iptables_restore_quoting():
    assert split_words('-A c -m comment --comment "a \\"b\\" c" -j X') == [
        "-A", "c", "-m", "comment", "--comment", 'a "b" c', "-j", "X"]
    with pytest.raises(ValueError):
        split_words('-A c -m comment --comment "open')


def test_conntrack_module_spelling_is_not_part_of_equality():
    assert parse_rule("-A c -m state --state NEW")[1] == parse_rule(
        "-A c -m conntrack --ctstate NEW")[1]
    assert parse_rule("-A c -m state --state NEW")[1].matches[0] == ConntrackMatch(
        frozenset({"NEW"}))


@pytest.mark.parametrize("line, message", [
    ("-A c -m physdev --physdev-in eth0 -j ACCEPT", "unsupported match '-m physdev'"),
    ("-A c -m conntrack --ctorigdst 1.2.3.4 -j ACCEPT", "unsupported option '--ctorigdst'"),
    ("-A c -j TCPMSS --clamp-mss-to-pmtu", "unsupported target '-j TCPMSS'"),
    ("-A c -m tcp --dport 80 -j ACCEPT", "'-m tcp' needs '-p tcp'"),
    ("-A c -f -j DROP", "unsupported option '-f'"),
    ("-I c 1 -j DROP", "unsupported command '-I'"),
    ("-A c -s 10.0.0.1,10.0.0.2 -j DROP", "expands to several rules"),
    ("-A c -s example.com -j DROP", "bad address"),
    ("-A c -m mark --mark zz -j DROP", "bad mark"),
    ("-A c -j ACCEPT -j DROP", "more than one target"),
    ("-A c -m comment --comment \"unterminated", "unterminated quote"),
    ("-A c -p tcp --dport 99999", "bad port"),
])
def test_bad_rules_raise_input_error_with_line(line, message):
    with pytest.raises(InputError) as err:
        parse_rule(line, filename="dump.txt", lineno=7)
    text = str(err.value)
    assert text.startswith("dump.txt: line 7: ") and message in text and line.strip() in text


@pytest.mark.parametrize("text, message", [
    ("*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -j nowhere\nCOMMIT\n",
     "line 3: INPUT rule 1 jumps to undefined chain 'nowhere'"),
    ("*filter\n:INPUT ACCEPT [0:0]\n:a - [0:0]\n:b - [0:0]\n-A a -j b\n-A b -g a\nCOMMIT\n",
     "chain loop in table filter: a -> b -> a"),
    ("*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -j ACCEPT\n", "*filter has no COMMIT"),
    ("*filter\n:INPUT - [0:0]\nCOMMIT\n", "built-in chain INPUT needs policy"),
    ("*filter\n:mine ACCEPT [0:0]\nCOMMIT\n", "user chain mine cannot have a policy"),
    ("*filter\n-A mine -j ACCEPT\nCOMMIT\n", "chain 'mine' was not declared"),
    ("*security\nCOMMIT\n", "unsupported table 'security'"),
    ("*filter\n:INPUT ACCEPT [0:0]\nCOMMIT\n-A INPUT -j DROP\n", "line outside a *table"),
    ("*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n-A INPUT -j FORWARD\nCOMMIT\n",
     "jumps to built-in chain FORWARD"),
    ("*nat\n:PREROUTING ACCEPT [0:0]\n-4 -t filter -A PREROUTING -j ACCEPT\nCOMMIT\n",
     "rule for table filter inside *nat"),
])
def test_bad_rulesets_raise_input_error(text, message):
    with pytest.raises(InputError) as err:
        parse_ruleset(text, filename="dump.txt")
    assert message in str(err.value) and str(err.value).startswith("dump.txt: ")


def test_rule_on_missing_ipset_parses_and_jump_targets_resolve():
    rs = parse_ruleset("*filter\n:INPUT ACCEPT [0:0]\n:x - [0:0]\n"
                       "-A INPUT -m set --match-set nosuchset src -j x\nCOMMIT\n")
    assert rs.chain(Table.FILTER, "INPUT").rules[0].target == Jump("x")
    assert rs.ipsets == {}


def test_options_after_a_bare_protocol_module_extend_that_module():
    # kube-proxy writes "-m tcp -p tcp ... --dport 80"; iptables attaches --dport to the
    # tcp match already loaded instead of loading a second one.
    from tracer.dataplane.iptables_save import format_rule, parse_rule
    chain, rule = parse_rule('-A KUBE-SERVICES -m tcp -p tcp -d 10.96.0.1/32 --dport 80 '
                             '-j KUBE-SVC-X')
    assert format_rule(chain, rule) == ("-A KUBE-SERVICES -d 10.96.0.1/32 -p tcp -m tcp "
                                        "--dport 80 -j KUBE-SVC-X")


def test_catch_all_address_and_protocol_matches_are_not_kept():
    # iptables stores no match for "-s 0.0.0.0/0" or "-p all" (felix writes the former for
    # nets: [0.0.0.0/0]); the kernel prints such a rule back without them.
    from tracer.dataplane.ir import AddressMatch, Cidr, ProtocolMatch, Rule, Verdict
    from tracer.dataplane.iptables_save import format_rule, normalise_rule, parse_rule
    rule = Rule(matches=(AddressMatch("src", Cidr.parse("0.0.0.0/0")), ProtocolMatch(0)),
                target=Verdict("ACCEPT"))
    assert normalise_rule(rule).matches == ()
    assert parse_rule(format_rule("X", rule))[1] == normalise_rule(rule)
    negated = Rule(matches=(AddressMatch("src", Cidr.parse("0.0.0.0/0"), negated=True),),
                   target=Verdict("ACCEPT"))
    assert normalise_rule(negated).matches == negated.matches
