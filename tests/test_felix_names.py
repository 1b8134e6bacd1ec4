"""felix names, rule IDs and mark bits (libcalico-go hash/unique_id.go, generictables/rules.go,
felix/dataplane/driver.go)."""

from __future__ import annotations

import pytest

from tracer.model.cluster import FelixConfig, Policy
from tracer.errors import InputError
from tracer.policy.felix import SUPPORTED_VERSIONS, mark_bits
from tracer.policy.felix.builder import ACCEPT, FRule, M, jump, set_mark
from tracer.policy.felix.names import (length_limited_id, policy_chain_name, policy_comment,
                                       profile_chain_name, rule_ids, sanitise_comment)
from tracer.policy.felix.versions import knobs, resolve_version

from felix_fixtures import DENY_INGRESS


@pytest.mark.parametrize("chain,target,expected", [
    # Hook rule IDs seen in every real Calico node's iptables-save.
    ("FORWARD", "cali-FORWARD", "wUHhoiAYhphO9Mso"),
    ("INPUT", "cali-INPUT", "Cz_u1IQiXIMmKD4c"),
    ("OUTPUT", "cali-OUTPUT", "tVnHkvAo15HuiPy0"),
    ("PREROUTING", "cali-PREROUTING", "6gwbT8clXdHdC1b1"),
])
def test_hook_rule_ids_match_real_nodes(chain, target, expected):
    assert rule_ids(chain, [FRule(action=jump(target))]) == [expected]


def test_rule_ids_chain_previous_rules():
    # The two rules felix appends to FORWARD, as on real nodes.
    first = FRule(M().mark_set(0x10000), ACCEPT, ("Policy explicitly accepted packet.",))
    second = FRule(action=set_mark(0x10000))
    assert rule_ids("FORWARD*appends*", [first, second]) == \
        ["S93hcgKJrXEqnTfs", "mp77cMpurHhyjLrM"]
    # Position matters: the same rule hashes differently after another rule.
    assert rule_ids("X", [second])[0] != rule_ids("X", [first, second])[1]


@pytest.mark.parametrize("version,expected", [
    ("3.29", "cali-pi-_gXPaCB1t-SWHb8oA9OT"), ("3.30", "cali-pi-_gXPaCB1t-SWHb8oA9OT"),
    ("3.31", "cali-pi-_gXPaCB1t-SWHb8oA9OT"), ("3.32", "cali-pi-_q1MS9GFlo-itRgqjEtJ")])
def test_policy_chain_name_per_version(version, expected):
    assert policy_chain_name("cali-pi-", DENY_INGRESS, knobs(version)) == expected


def test_policy_comment_per_version():
    assert policy_comment(DENY_INGRESS, knobs("3.32"), "ingress") == \
        "KubernetesNetworkPolicy default/default-deny-ingress ingress"
    assert policy_comment(DENY_INGRESS, knobs("3.31"), "ingress") == \
        "Policy default/knp.default.default-deny-ingress ingress"


def test_loaded_knp_prefix_is_not_doubled():
    legacy = Policy(**{**DENY_INGRESS.__dict__, "name": "knp.default.default-deny-ingress"})
    assert policy_chain_name("cali-pi-", legacy, knobs("3.30")) == "cali-pi-_gXPaCB1t-SWHb8oA9OT"
    assert policy_chain_name("cali-pi-", legacy, knobs("3.32")) == "cali-pi-_q1MS9GFlo-itRgqjEtJ"


def test_length_limited_id():
    assert profile_chain_name("cali-pri-", "kns.default") == "cali-pri-kns.default"
    # Exactly 28 characters: not hashed.
    assert profile_chain_name("cali-pri-", "ksa.default.default") == "cali-pri-ksa.default.default"
    long = length_limited_id("cali-pro-", "ksa.kube-system.coredns")
    assert len(long) == 28 and long.startswith("cali-pro-_")
    # 28 characters but starting with "_" would clash with hashed names, so it is hashed.
    clash = length_limited_id("cali-pi-", "_" * 20)
    assert clash != "cali-pi-" + "_" * 20 and len(clash) == 28
    assert length_limited_id("cali-pi-", "") == "cali-pi-_"


def test_comment_sanitising():
    assert sanitise_comment('a "quoted" (x)!') == "a _quoted_ _x__"
    assert sanitise_comment("ok @%+=:,./- _") == "ok @%+=:,./- _"
    assert len(sanitise_comment("x" * 300)) == 256


@pytest.mark.parametrize("version,accept,pass_,drop,s0,s1,allbits", [
    ("3.29", 0x10000, 0x20000, 0, 0x40000, 0x80000, 0xF0000),
    ("3.30", 0x10000, 0x20000, 0x40000, 0x80000, 0x100000, 0x1B0000),
    ("3.31", 0x10000, 0x20000, 0x40000, 0x80000, 0x100000, 0x1B0000),
    ("3.32", 0x10000, 0x20000, 0x40000, 0x80000, 0x100000, 0x1B0000),
])
def test_mark_bits_per_version(version, accept, pass_, drop, s0, s1, allbits):
    marks = mark_bits(version, FelixConfig())
    assert (marks.accept, marks.pass_, marks.drop, marks.scratch0, marks.scratch1) == \
        (accept, pass_, drop, s0, s1)
    assert marks.all_calico == allbits and marks.wireguard == 0


def test_wireguard_mark_bit():
    assert mark_bits("3.32", FelixConfig(wireguard_enabled=True)).wireguard == 0x200000
    assert mark_bits("3.29", FelixConfig(wireguard_enabled=True)).wireguard == 0x100000


def test_versions():
    assert SUPPORTED_VERSIONS == ("3.29", "3.30", "3.31", "3.32")
    assert resolve_version(None, "v3.31.2") == "3.31"
    assert resolve_version(None, None) == "3.32"
    with pytest.raises(InputError):
        resolve_version(None, "3.20")
