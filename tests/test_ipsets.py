"""ipset save/list parsing, writing, and the membership index."""

from __future__ import annotations

from ipaddress import IPv4Address
from pathlib import Path

import pytest

from tracer.dataplane.ipsets import IpSetIndex, format_ipsets, parse_ipsets
from tracer.errors import InputError

DATA = Path(__file__).parent / "data"


def ip(text: str) -> int:
    return int(IPv4Address(text))


@pytest.fixture(scope="module")
def fixture_sets():
    return parse_ipsets((DATA / "felix-node.ipset").read_text(), filename="felix-node.ipset")


def test_fixture_sets_and_canonical_members(fixture_sets):
    assert set(fixture_sets) == {
        "cali40all-hosts-net", "cali40all-ipam-pools", "cali40masq-ipam-pools",
        "cali40this-host", "cali40s:Wq3cXb9dVt0LmZs8Ey2fH1k", "cali40n:H3Jx9vQ0Lw2mKp7Tz5Rb1cY"}
    hosts = fixture_sets["cali40all-hosts-net"]
    assert hosts.set_type == "hash:net" and hosts.maxelem == 1048576
    assert hosts.members == ("10.0.0.10", "10.0.0.11")
    assert fixture_sets["cali40n:H3Jx9vQ0Lw2mKp7Tz5Rb1cY"].members == (
        "192.168.1.20,tcp:80", "192.168.2.30,tcp:80")


def test_members_are_spelt_as_ipset_save_prints_them():
    sets = parse_ipsets("create a hash:net family inet\nadd a 10.0.0.7/32\nadd a 10.9.0.1/16\n"
                        "create b hash:ip,port family inet\nadd b 10.0.0.5,8080\n"
                        "add b 10.0.0.5,udp:53-54\n"
                        "create c hash:ip family inet\nadd c 10.0.0.1-10.0.0.3\n")
    assert sets["a"].members == ("10.0.0.7", "10.9.0.0/16")
    assert sets["b"].members == ("10.0.0.5,tcp:8080", "10.0.0.5,udp:53", "10.0.0.5,udp:54")
    assert sets["c"].members == ("10.0.0.1", "10.0.0.2", "10.0.0.3")


def test_format_then_parse_round_trips(fixture_sets):
    text = format_ipsets(fixture_sets)
    assert text.startswith("create ")
    assert parse_ipsets(text) == fixture_sets


def test_list_format_gives_the_same_sets_as_save_format():
    listing = """Name: cali40s:abc
Type: hash:net
Revision: 7
Header: family inet hashsize 1024 maxelem 1048576 bucketsize 12 initval 0x1
Size in memory: 504
References: 1
Number of entries: 2
Members:
10.0.0.0/24
10.1.2.3

Name: cali40n:def
Type: hash:ip,port
Revision: 6
Header: family inet hashsize 1024 maxelem 1048576
Size in memory: 400
References: 0
Number of entries: 1
Members:
10.0.0.5,tcp:8080
"""
    saved = ("create cali40s:abc hash:net family inet maxelem 1048576\n"
             "add cali40s:abc 10.1.2.3\nadd cali40s:abc 10.0.0.0/24\n"
             "create cali40n:def hash:ip,port family inet maxelem 1048576\n"
             "add cali40n:def 10.0.0.5,tcp:8080\n")
    assert parse_ipsets(listing) == parse_ipsets(saved)


def test_hash_net_membership_uses_every_prefix_length():
    index = IpSetIndex(parse_ipsets("create a hash:net family inet\nadd a 10.0.0.0/8\n"
                                    "add a 192.168.1.20\nadd a 172.16.4.0/22\n"))
    assert index.contains("a", (ip("10.200.3.4"),))
    assert index.contains("a", (ip("192.168.1.20"),))
    assert not index.contains("a", (ip("192.168.1.21"),))
    assert index.contains("a", (ip("172.16.7.255"),))
    assert not index.contains("a", (ip("172.16.8.0"),))
    assert not index.contains("missing", (ip("10.0.0.1"),))


def test_hash_ip_port_needs_address_protocol_and_port():
    index = IpSetIndex(parse_ipsets("create p hash:ip,port family inet\n"
                                    "add p 10.0.0.5,tcp:8080\nadd p 10.0.0.6,udp:53\n"))
    assert index.contains("p", (ip("10.0.0.5"), (6, 8080)))
    assert index.contains("p", (ip("10.0.0.5"), 8080), 6)       # bare port + protocol
    assert not index.contains("p", (ip("10.0.0.5"), (17, 8080)))
    assert not index.contains("p", (ip("10.0.0.5"), (6, 8081)))
    assert index.contains("p", (ip("10.0.0.6"), (17, 53)))
    assert not index.contains("p", (ip("10.0.0.6"),))             # too few dimensions


def test_hash_net_net_and_bitmap_port():
    index = IpSetIndex(parse_ipsets("create nn hash:net,net family inet\n"
                                    "add nn 10.0.0.0/24,192.168.0.0/16\n"
                                    "create bp bitmap:port range 0-65535\nadd bp 80\n"))
    assert index.contains("nn", (ip("10.0.0.9"), ip("192.168.44.1")))
    assert not index.contains("nn", (ip("192.168.44.1"), ip("10.0.0.9")))
    assert index.contains("bp", ((6, 80),)) and not index.contains("bp", ((6, 81),))


@pytest.mark.parametrize("text, message", [
    ("add a 10.0.0.1\n", "line 1: add to set 'a' before its create line"),
    ("create a hash:net family inet\nadd a 10.0.0.300\n", "line 2: bad member"),
    ("create a list:set\n", "line 1: unsupported ipset type 'list:set'"),
    ("create a hash:net family inet\nflush a\n", "line 2: unsupported ipset command"),
    ("create a hash:net family inet\ncreate a hash:net family inet\n", "created twice"),
    ("create a hash:net family inet\nadd a 10.0.0.0/8 nomatch\n", "nomatch"),
    ("create a hash:net family inet\nadd a 2001:db8::/64\n", "IPv6 member"),
])
def test_bad_input_names_the_line(text, message):
    with pytest.raises(InputError) as err:
        parse_ipsets(text, filename="sets.txt")
    assert message in str(err.value) and str(err.value).startswith("sets.txt: ")
