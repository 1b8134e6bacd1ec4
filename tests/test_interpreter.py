"""The reference interpreter: kernel traversal semantics and the calico-dataplane.md §10
worked example on the felix-node fixture."""

from __future__ import annotations

from dataclasses import replace
from ipaddress import IPv4Address
from pathlib import Path

import pytest

from tracer.dataplane.interpreter import PacketView, run_hook
from doubles import FakeEnvironment
from tracer.dataplane.ipsets import IpSetIndex, parse_ipsets
from tracer.dataplane.iptables_save import parse_ruleset
from tracer.dataplane.ir import Chain, Dnat, Jump, Rule, Ruleset, Table
from tracer.errors import InputError

DATA = Path(__file__).parent / "data"


def ip(text: str) -> int:
    return int(IPv4Address(text))


def packet(**kw) -> PacketView:
    base = dict(src=ip("192.168.1.10"), dst=ip("192.168.1.20"), protocol=6, sport=40000,
                dport=80, icmp_type=None, icmp_code=None, tcp_flags=0x02, iif="calia7a3e029a7b",
                oif="cali68caf03a5f4", mark=0, ct_state="NEW")
    base.update(kw)
    return PacketView(**base)


def filter_table(body: str, policy: str = "ACCEPT", chains: tuple[str, ...] = ()) -> Ruleset:
    decl = "".join(f":{c} - [0:0]\n" for c in chains)
    text = (f"*filter\n:INPUT ACCEPT [0:0]\n:FORWARD {policy} [0:0]\n:OUTPUT ACCEPT [0:0]\n"
            f"{decl}{body}COMMIT\n")
    return parse_ruleset(text)


def trace(result) -> list[tuple[str, str, str]]:
    return [(e.chain, e.kind, e.effect) for e in result.events]


def run(ruleset, pkt=None, env=None, chain="FORWARD", table=Table.FILTER):
    return run_hook(ruleset, table, chain, pkt or packet(), env or FakeEnvironment())


# ------------------------------------------------------------------ traversal semantics


def test_goto_then_return_goes_back_to_the_chain_that_jumped():
    # The same ruleset was traced in a netns (xtables-monitor): a -> b -g c, RETURN in c
    # resumes a after its jump to b.
    rs = filter_table("-A FORWARD -p tcp -j a\n-A FORWARD -p tcp -j d\n-A FORWARD -j RETURN\n"
                      "-A a -j b\n-A a -m comment --comment after-b\n-A b -g c\n"
                      "-A c -p tcp -j RETURN\n-A d -m mark --mark 0x5\n",
                      chains=("a", "b", "c", "d"))
    result = run(rs)
    assert trace(result) == [
        ("FORWARD", "rule", "JUMP"), ("a", "rule", "JUMP"), ("b", "rule", "GOTO"),
        ("c", "rule", "RETURN"), ("a", "rule", "CONTINUE"), ("a", "return", "RETURN"),
        ("FORWARD", "rule", "JUMP"), ("d", "return", "RETURN"), ("FORWARD", "rule", "RETURN"),
        ("FORWARD", "policy", "ACCEPT")]
    assert result.verdict == "ACCEPT" and result.deciding.kind == "policy"
    assert [e.rule_number for e in result.events[:4]] == [1, 1, 1, 1]
    assert result.events[2].target_chain == "c"


def test_falling_off_the_builtin_chain_applies_its_policy():
    result = run(filter_table("-A FORWARD -p udp -j ACCEPT\n", policy="DROP"))
    assert trace(result) == [("FORWARD", "policy", "DROP")]
    assert result.verdict == "DROP" and result.deciding == result.events[-1]


def test_return_from_a_chain_reached_by_goto_from_the_builtin_hits_the_policy():
    rs = filter_table("-A FORWARD -g a\n-A FORWARD -j ACCEPT\n-A a -j RETURN\n",
                      policy="DROP", chains=("a",))
    result = run(rs)
    assert trace(result) == [("FORWARD", "rule", "GOTO"), ("a", "rule", "RETURN"),
                             ("FORWARD", "policy", "DROP")]
    assert result.verdict == "DROP"


def test_terminal_verdict_inside_a_user_chain_ends_the_table():
    rs = filter_table("-A FORWARD -j a\n-A FORWARD -j ACCEPT\n-A a -p tcp -j REJECT\n",
                      chains=("a",))
    result = run(rs)
    assert result.verdict == "REJECT"
    assert (result.deciding.chain, result.deciding.rule_number) == ("a", 1)
    assert trace(result)[-1] == ("a", "rule", "REJECT")


def test_mark_arithmetic_and_mark_before_after():
    rs = filter_table("-A FORWARD -j MARK --set-xmark 0x80000/0x80000\n"
                      "-A FORWARD -j MARK --set-mark 0x10000/0x30000\n"
                      "-A FORWARD -j MARK --set-xmark 0x0/0x1a0000\n"
                      "-A FORWARD -j MARK --xor-mark 0x3\n"
                      "-A FORWARD -j MARK --and-mark 0xff\n"
                      "-A FORWARD -m mark --mark 0x3/0xff -j DROP\n")
    pkt = packet(mark=0x20001)
    result = run(rs, pkt)
    marks = [(e.mark_before, e.mark_after) for e in result.events]
    # cali-FORWARD's clear (0x1a0000) keeps the accept bit 0x10000
    assert marks == [(0x20001, 0xA0001), (0xA0001, 0x90001), (0x90001, 0x10001),
                     (0x10001, 0x10002), (0x10002, 0x2), (0x2, 0x2)]
    assert result.verdict == "ACCEPT" and pkt.mark == 0x2   # 0x2 & 0xff != 0x3


@pytest.mark.parametrize("rule, fields, hit", [
    ("-i cali+", {}, True),
    ("-i eth+", {}, False),
    ("! -o cali68caf03a5f4", {}, False),
    ("-o cali68caf03a5f4", {"oif": None}, False),
    ("-s 192.168.1.0/24 ! -d 10.0.0.0/8", {}, True),
    ("! -p tcp", {}, False),
    ("-p tcp -m multiport --dports 22,8000:8080", {"dport": 8080}, True),
    ("-p tcp -m multiport --dports 22,8000:8080", {"dport": 8081}, False),
    ("-p tcp -m multiport ! --dports 22,8000:8080", {"dport": 8081}, True),
    ("-p tcp -m tcp --sport 40000 ! --dport 443", {}, True),
    ("-p tcp --syn", {}, True),
    ("-p tcp --syn", {"tcp_flags": 0x12}, False),
    ("-p tcp -m tcp --tcp-flags SYN,ACK SYN,ACK", {"tcp_flags": 0x12}, True),
    ("-p icmp -m icmp --icmp-type 8", {"protocol": 1, "icmp_type": 8, "icmp_code": 0,
                                       "sport": None, "dport": None}, True),
    ("-p icmp -m icmp --icmp-type 3/4", {"protocol": 1, "icmp_type": 3, "icmp_code": 3,
                                         "sport": None, "dport": None}, False),
    ("-p icmp -m icmp ! --icmp-type 3/4", {"protocol": 1, "icmp_type": 3, "icmp_code": 3,
                                           "sport": None, "dport": None}, True),
    ("-p icmp -m icmp --icmp-type any", {"protocol": 1, "icmp_type": 13, "icmp_code": 0,
                                         "sport": None, "dport": None}, True),
    ("-m conntrack --ctstate RELATED,ESTABLISHED", {"ct_state": "ESTABLISHED"}, True),
    ("-m conntrack --ctstate DNAT", {"ct_status": frozenset({"DNAT"})}, True),
    ("-m conntrack ! --ctstate DNAT", {"ct_status": frozenset({"DNAT"})}, False),
    ("-m conntrack --ctstate DNAT", {"ct_state": "INVALID",
                                     "ct_status": frozenset({"DNAT"})}, False),
    ("-m conntrack --ctstate UNTRACKED", {"ct_state": "UNTRACKED"}, True),
    ("-m conntrack --ctstatus ASSURED", {"ct_status": frozenset({"ASSURED"})}, True),
    ("-m conntrack --ctstatus ASSURED", {"ct_state": "UNTRACKED"}, False),
    ("-m conntrack ! --ctstatus ASSURED", {}, True),
    ("-m mark --mark 0x0/0x20000", {"mark": 0x10000}, True),
    ("-m mark ! --mark 0x0/0x30000", {"mark": 0x10000}, True),
    ("-m connmark --mark 0x5/0xf", {"ct_mark": 0x15}, True),
    ("-m connmark ! --mark 0x5/0xf", {"ct_state": "INVALID"}, False),
    ("-m limit --limit 1/sec", {}, True),
])
def test_single_match_semantics(rule, fields, hit):
    rs = filter_table(f"-A FORWARD {rule} -j DROP\n")
    assert (run(rs, packet(**fields)).verdict == "DROP") is hit


def test_ipset_flags_pick_packet_fields():
    sets = parse_ipsets("create web hash:net family inet\nadd web 192.168.1.0/24\n"
                        "create np hash:ip,port family inet\nadd np 192.168.1.20,tcp:80\n")
    env = FakeEnvironment(ipsets=IpSetIndex(sets))
    text = ("*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n"
            "-A FORWARD -m set --match-set web src -m set --match-set np dst,dst "
            "-m set ! --match-set np src,src -j DROP\nCOMMIT\n")
    rs = parse_ruleset(text, ipsets=sets)
    assert run(rs, packet(), env).verdict == "DROP"
    assert run(rs, packet(dport=81), env).verdict == "ACCEPT"
    assert run(rs, packet(src=ip("10.0.0.1")), env).verdict == "ACCEPT"
    assert run(rs, packet(), env).warnings == ()


def test_unknown_ipset_is_empty_and_warned():
    rs = filter_table("-A FORWARD -m set --match-set ghost src -j DROP\n"
                      "-A FORWARD -m set ! --match-set ghost dst -j REJECT\n")
    result = run(rs)
    assert result.verdict == "REJECT"
    assert result.warnings == ("ipset ghost is not loaded: treated as empty",)


def test_addrtype_rpfilter_and_statistic_ask_the_environment():
    rs = filter_table("-A FORWARD -m addrtype --dst-type LOCAL -j DROP\n"
                      "-A FORWARD -m rpfilter --invert -j REJECT\n"
                      "-A FORWARD -m statistic --mode random --probability 0.5 -j a\n"
                      "-A a -j ACCEPT\n", chains=("a",))
    local = FakeEnvironment(local_addresses=frozenset({ip("192.168.1.20")}))
    assert run(rs, env=local).verdict == "DROP"
    bad_rpf = FakeEnvironment(rpf=lambda p, m: p.iif == "eth0")
    assert run(rs, env=bad_rpf).verdict == "REJECT"
    taken = run(rs, env=FakeEnvironment())
    assert taken.verdict == "ACCEPT" and taken.deciding.chain == "a"
    skipped = run(rs, env=FakeEnvironment(choose=lambda m, p: False))
    assert skipped.deciding.kind == "policy"


def test_connmark_save_and_restore():
    rs = filter_table("-A FORWARD -j MARK --set-xmark 0xab/0xff\n"
                      "-A FORWARD -j CONNMARK --save-mark --nfmask 0xf --ctmask 0xf0\n"
                      "-A FORWARD -j MARK --set-xmark 0x0/0xffffffff\n"
                      "-A FORWARD -j CONNMARK --restore-mark --nfmask 0xff --ctmask 0xff\n")
    pkt = packet(ct_mark=0x100)
    run(rs, pkt)
    # save: ct = (0x100 & ~0xf0) ^ (0xab & 0xf) = 0x10b; restore: mark = 0 ^ (0x10b & 0xff)
    assert pkt.ct_mark == 0x10B and pkt.mark == 0x0B


def test_nat_and_notrack_targets():
    nat = parse_ruleset("*nat\n:PREROUTING ACCEPT [0:0]\n-A PREROUTING -p tcp -j LOG\n"
                        "-A PREROUTING -p tcp -j DNAT --to-destination 10.0.0.1:8080\n"
                        "-A PREROUTING -j DROP\nCOMMIT\n")
    result = run(nat, table=Table.NAT, chain="PREROUTING")
    assert result.verdict == "ACCEPT" and result.nat == Dnat("10.0.0.1:8080")
    assert trace(result) == [("PREROUTING", "rule", "CONTINUE"), ("PREROUTING", "rule", "DNAT")]
    raw = parse_ruleset("*raw\n:PREROUTING ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n"
                        "-A PREROUTING -p tcp -j CT --notrack\n-A PREROUTING -j TRACE\nCOMMIT\n")
    result = run(raw, table=Table.RAW, chain="PREROUTING")
    assert result.notrack and result.verdict == "ACCEPT"
    assert trace(result) == [("PREROUTING", "rule", "NOTRACK"), ("PREROUTING", "rule", "CONTINUE"),
                             ("PREROUTING", "policy", "ACCEPT")]


def test_missing_table_or_chain_lets_the_packet_through():
    rs = filter_table("")
    assert run(rs, table=Table.RAW, chain="PREROUTING").verdict == "ACCEPT"


def test_jump_loop_in_a_hand_built_ruleset_is_an_input_error():
    loop = Ruleset(tables={Table.FILTER: {
        "FORWARD": Chain("FORWARD", (Rule(target=Jump("a")),), "ACCEPT"),
        "a": Chain("a", (Rule(target=Jump("a")),))}})
    with pytest.raises(InputError, match="deeper than"):
        run(loop)


# ------------------------------------------------------------------ the felix fixture


@pytest.fixture(scope="module")
def node():
    sets = parse_ipsets((DATA / "felix-node.ipset").read_text())
    rs = parse_ruleset((DATA / "felix-node.iptables-save").read_text(), ipsets=sets)
    env = FakeEnvironment(ipsets=IpSetIndex(sets),
                            local_addresses=frozenset({ip("10.0.0.10"), ip("192.168.1.0")}))
    return rs, env


def walk_hooks(rs, env, pkt, hooks):
    results = {}
    for table, chain in hooks:
        results[(table, chain)] = run_hook(rs, table, chain, pkt, env)
    return results


def test_worked_example_deny_all_ingress_to_web(node):
    """calico-dataplane.md §10: client -> web TCP SYN on the same node is dropped at the end
    of tier default in cali-tw-cali68caf03a5f4."""
    rs, env = node
    pkt = packet(oif=None)
    raw = run_hook(rs, Table.RAW, "PREROUTING", pkt, env)
    assert raw.verdict == "ACCEPT" and pkt.mark == 0x80000
    assert [e.chain for e in raw.events if e.kind == "return"] == ["cali-rpf-skip",
                                                                  "cali-PREROUTING"]
    mangle = run_hook(rs, Table.MANGLE, "PREROUTING", pkt, env)
    nat = run_hook(rs, Table.NAT, "PREROUTING", pkt, env)
    assert mangle.verdict == nat.verdict == "ACCEPT" and nat.nat is None
    pkt.oif = "cali68caf03a5f4"
    result = run_hook(rs, Table.FILTER, "FORWARD", pkt, env)
    assert result.verdict == "DROP"
    deciding = result.deciding
    assert (deciding.chain, deciding.rule_number, deciding.effect) == (
        "cali-tw-cali68caf03a5f4", 7, "DROP")
    assert deciding.rule.comments[1] == "End of tier default. Drop if no policies passed packet"
    chains = [e.chain for e in result.events]
    # egress of client was allowed by its policy before ingress of web ran
    assert chains.index("cali-po-_kXqB2vQ3rN0d5Yc1p8T") < chains.index("cali-tw-cali68caf03a5f4")
    policy_jump = next(e for e in result.events if e.target_chain == "cali-pi-_q1MS9GFlo-itRgqjEtJ")
    assert policy_jump.mark_before == 0
    accept_return = next(e for e in result.events
                         if e.chain == "cali-fw-calia7a3e029a7b" and e.effect == "RETURN")
    assert accept_return.rule.comments[1] == "Return if policy accepted"
    assert accept_return.mark_after == 0x10000
    assert pkt.mark == 0


def test_allowed_path_web_to_client_is_accepted_by_the_appended_forward_rule(node):
    rs, env = node
    pkt = packet(src=ip("192.168.1.20"), dst=ip("192.168.1.10"), sport=80, dport=40000,
                 iif="cali68caf03a5f4", oif="calia7a3e029a7b")
    result = run_hook(rs, Table.FILTER, "FORWARD", pkt, env)
    assert result.verdict == "ACCEPT"
    assert result.deciding.rule.comments[1] == "Policy explicitly accepted packet."
    assert pkt.mark == 0x10000


def test_established_packets_are_accepted_at_the_top_of_the_endpoint_chain(node):
    rs, env = node
    pkt = packet(ct_state="ESTABLISHED")
    result = run_hook(rs, Table.FILTER, "FORWARD", pkt, env)
    assert result.verdict == "ACCEPT"
    assert (result.deciding.chain, result.deciding.rule_number) == ("cali-fw-calia7a3e029a7b", 1)


def test_kube_proxy_service_dnat_follows_the_statistic_choice(node):
    rs, env = node
    for choice, backend in ((True, "192.168.1.20:80"), (False, "192.168.2.30:80")):
        pkt = packet(dst=ip("10.96.12.34"), oif=None)
        chosen = replace(env, choose=lambda m, p, c=choice: c)
        result = run_hook(rs, Table.NAT, "PREROUTING", pkt, chosen)
        assert result.verdict == "ACCEPT" and result.nat == Dnat(backend)
        assert result.deciding.chain.startswith("KUBE-SEP-")


def test_ipip_from_unknown_host_is_dropped_in_input(node):
    rs, env = node
    pkt = packet(src=ip("10.0.0.99"), dst=ip("10.0.0.10"), protocol=4, sport=None,
                 dport=None, tcp_flags=None, iif="eth0", oif=None)
    result = run_hook(rs, Table.FILTER, "INPUT", pkt, env)
    assert result.verdict == "DROP"
    assert result.deciding.rule.comments[1] == "Drop IPIP packets from non-Calico hosts"
    pkt = replace(pkt, src=ip("10.0.0.11"))
    assert run_hook(rs, Table.FILTER, "INPUT", pkt, env).verdict == "ACCEPT"
