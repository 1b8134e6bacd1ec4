"""The kernel agrees with our spelling: load the fixture into a throwaway network namespace
with ``ipset restore`` + ``iptables-restore``, read it back with ``iptables-save`` /
``ipset save``, and compare the parsed forms. Never touches the host's own tables."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from conftest import in_netns

from tracer.dataplane.ipsets import format_ipsets, parse_ipsets
from tracer.dataplane.iptables_save import (
    format_rule,
    format_ruleset,
    parse_rule,
    parse_ruleset,
)

DATA = Path(__file__).parent / "data"
BINARIES = ("ip", "ipset", "iptables-restore", "iptables-save")

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root for network namespaces"),
    pytest.mark.skipif(any(shutil.which(b) is None for b in BINARIES),
                       reason=f"needs {', '.join(BINARIES)}"),
]






def _load_and_save(ns: str, sets_text: str, rules_text: str) -> tuple[str, str]:
    in_netns(ns, "ipset", "restore", stdin=sets_text)
    in_netns(ns, "iptables-restore", stdin=rules_text)
    return in_netns(ns, "iptables-save"), in_netns(ns, "ipset", "save")


def test_kernel_reads_back_the_fixture_as_we_parse_it(netns):
    sets_text = (DATA / "felix-node.ipset").read_text()
    rules_text = (DATA / "felix-node.iptables-save").read_text()
    saved_rules, saved_sets = _load_and_save(netns, sets_text, rules_text)
    assert parse_ipsets(saved_sets) == parse_ipsets(sets_text)
    assert parse_ruleset(saved_rules) == parse_ruleset(rules_text)
    # and each rule line the kernel printed is what format_rule prints for it
    for line in saved_rules.splitlines():
        if line.startswith("-A "):
            assert format_rule(*parse_rule(line)) == line


def test_kernel_accepts_our_own_output_unchanged(netns):
    sets = parse_ipsets((DATA / "felix-node.ipset").read_text())
    ruleset = parse_ruleset((DATA / "felix-node.iptables-save").read_text(), ipsets=sets)
    saved_rules, saved_sets = _load_and_save(netns, format_ipsets(sets), format_ruleset(ruleset))
    assert parse_ipsets(saved_sets) == sets
    assert parse_ruleset(saved_rules, ipsets=sets) == ruleset


SPELLINGS = """*mangle
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
:c2 - [0:0]
-A PREROUTING -m comment --comment "cali:x" --in-interface cali+ --jump MARK --set-mark 0x80000/0x80000
-A PREROUTING -p tcp --syn --dport 80 --sport 1:1 -m conntrack --ctstate DNAT ! --ctstatus ASSURED -j ACCEPT
-A PREROUTING -p icmp --icmp-type echo-request -m limit --limit 60/minute -j LOG --log-level debug
-A PREROUTING -p 4 -m mark ! --mark 0x4000/0x4000 -j MARK --and-mark 0x4000
-A PREROUTING -j CONNMARK --save-mark
-A PREROUTING -m connmark --mark 0x1/0xff -j CONNMARK --set-mark 0x1/0xfe
-A PREROUTING -m statistic --mode random --probability 0.3333 -j c2
-A PREROUTING -m statistic --mode nth --every 3 --packet 1 -g c2
-A PREROUTING -m addrtype --src-type LOCAL,UNICAST --limit-iface-in -m rpfilter --invert --validmark -j DROP
-A PREROUTING -p udp -m multiport --destination-ports 4789,8000:8080 -j NFLOG --nflog-group 2 --nflog-prefix "DPI|x"
-A c2 -m state --state ESTABLISHED,RELATED -j DROP
-A c2 -d 10.1.2.3 -p tcp -m comment --comment "a b" -m tcp -j ACCEPT
COMMIT
*filter
:INPUT ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
-A FORWARD -p tcp -j REJECT --reject-with tcp-rst
-A FORWARD -j REJECT --reject-with net-unreach
COMMIT
"""


def test_felix_spellings_normalise_like_the_kernel(netns):
    saved_rules, _ = _load_and_save(netns, "", SPELLINGS)
    assert parse_ruleset(saved_rules) == parse_ruleset(SPELLINGS)
    ours = [line for line in format_ruleset(parse_ruleset(SPELLINGS)).splitlines()
            if line.startswith("-A ")]
    kernel = [line for line in saved_rules.splitlines() if line.startswith("-A ")]
    assert sorted(ours) == sorted(kernel)
