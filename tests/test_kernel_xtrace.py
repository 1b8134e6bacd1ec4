"""Parsing xtables-monitor trace output (lines captured on Linux 6.18, iptables 1.8.9)."""

from tracer.kernel.xtrace import first_packet, packet_ids, parse_trace

CAPTURE = """\
 EVENT: -4 -t raw -A PREROUTING -s 10.65.0.2/32 -d 10.65.0.3/32 -p tcp -m tcp --sport 40192 --dport 80 -m comment --comment ctk-trace-99-1 -j TRACE
NEWGEN: GENID=6 PID=14966 NAME=iptables
PACKET: 2 8745d600 IN=caliA MACSRC=6e:a4:30:b5:83:db MACDST=ee:ee:ee:ee:ee:ee MACPROTO=0800 SRC=10.65.0.2 DST=10.65.0.3 LEN=60 TOS=0x0 TTL=64 ID=50308 DF SPORT=40192 DPORT=80 SYN \r
 TRACE: 2 8745d600 raw:PREROUTING:rule:0x8:CONTINUE  -4 -t raw -A PREROUTING -s 10.65.0.2/32 -d 10.65.0.3/32 -p tcp -m tcp --sport 40192 --dport 80 -m comment --comment ctk-trace-99-1 -j TRACE
 TRACE: 2 8745d600 raw:PREROUTING:rule:0x4:JUMP:cali-PREROUTING  -4 -t raw -A PREROUTING -m comment --comment "cali:6gwbT8clXdHdC1b1" -j cali-PREROUTING
 TRACE: 2 8745d600 raw:cali-PREROUTING:rule:0x5:CONTINUE  -4 -t raw -A cali-PREROUTING -m comment --comment "cali:x" -j MARK --set-xmark 0x0/0x1b0000
 TRACE: 2 8745d600 raw:PREROUTING:policy:ACCEPT 
PACKET: 2 8745d600 IN=caliA OUT=caliB MACSRC=6e:a4:30:b5:83:db MACDST=ee:ee:ee:ee:ee:ee MACPROTO=0800 SRC=10.65.0.2 DST=10.65.0.3 LEN=60 TOS=0x0 TTL=63 ID=50308 DF SPORT=40192 DPORT=80 SYN MARK=0x80000 
 TRACE: 2 8745d600 filter:FORWARD:rule:0x6:JUMP:cali-FORWARD  -4 -t filter -A FORWARD -j cali-FORWARD
 TRACE: 2 8745d600 filter:cali-FORWARD:rule:0x7:GOTO:cali-tw-caliB  -4 -t filter -A cali-FORWARD -o caliB -g cali-tw-caliB
 TRACE: 2 8745d600 filter:cali-tw-caliB:rule:0x9:0xfffffffb  -4 -t filter -A cali-tw-caliB -j RETURN
 TRACE: 2 8745d600 filter:FORWARD:rule:0xa:DROP  -4 -t filter -A FORWARD -p tcp -j REJECT --reject-with icmp-port-unreachable
PACKET: 2 6decf47a IN=caliA MACSRC=6e:a4:30:b5:83:db MACDST=ee:ee:ee:ee:ee:ee MACPROTO=0800 SRC=10.65.0.2 DST=10.65.0.3 LEN=60 TOS=0x0 TTL=64 ID=50309 DF SPORT=40192 DPORT=80 SYN 
 TRACE: 2 6decf47a raw:PREROUTING:rule:0x8:CONTINUE  -4 -t raw -A PREROUTING -s 10.65.0.2/32 -d 10.65.0.3/32 -p tcp -m tcp --sport 40192 --dport 80 -m comment --comment ctk-trace-99-1 -j TRACE
 TRACE: 2 6decf47a raw:cali-PREROUTING:return:0xfffffffb
"""


def test_parses_rule_policy_and_verdict_forms():
    events = parse_trace(CAPTURE.splitlines(), "node-1")
    kinds = [(e.table, e.chain, e.kind, e.verdict, e.target_chain) for e in events]
    assert kinds[:8] == [
        ("raw", "PREROUTING", "rule", "CONTINUE", None),
        ("raw", "PREROUTING", "rule", "JUMP", "cali-PREROUTING"),
        ("raw", "cali-PREROUTING", "rule", "CONTINUE", None),
        ("raw", "PREROUTING", "policy", "ACCEPT", None),
        ("filter", "FORWARD", "rule", "JUMP", "cali-FORWARD"),
        ("filter", "cali-FORWARD", "rule", "GOTO", "cali-tw-caliB"),
        ("filter", "cali-tw-caliB", "rule", "RETURN", None),     # NFT_RETURN printed as hex
        ("filter", "FORWARD", "rule", "DROP", None),
    ]
    assert events[1].rule_text == ('-4 -t raw -A PREROUTING -m comment --comment '
                                   '"cali:6gwbT8clXdHdC1b1" -j cali-PREROUTING')
    assert events[3].rule_text is None
    assert all(e.node == "node-1" for e in events)


def test_interfaces_come_from_the_latest_packet_line():
    events = parse_trace(CAPTURE.splitlines(), "n")
    assert (events[0].iif, events[0].oif) == ("caliA", None)
    assert (events[4].iif, events[4].oif) == ("caliA", "caliB")


def test_return_lines_and_packet_separation():
    events = parse_trace(CAPTURE.splitlines(), "n")
    assert packet_ids(events) == ["8745d600", "6decf47a"]
    assert (events[-1].kind, events[-1].verdict, events[-1].rule_text) == \
        ("return", "RETURN", None)
    first = first_packet(events)
    assert {e.packet_id for e in first} == {"8745d600"}
    assert len(first) == 8


def test_probe_trace_rule_is_recognised_and_felix_rules_are_not():
    events = parse_trace(CAPTURE.splitlines(), "n")
    flagged = [e.is_probe_trace_rule for e in events[:3]]
    assert flagged == [True, False, False]


def test_ruleset_event_lines_and_garbage_are_ignored():
    lines = [" EVENT: -4 -t raw -A PREROUTING -j TRACE", "NEWGEN: GENID=3", "error: x",
             " TRACE: 2 zz raw:PREROUTING:rule:broken", ""]
    assert parse_trace(lines, "n") == []
