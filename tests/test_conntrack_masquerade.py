"""The numba conntrack twin's MASQUERADE / SNAT port search against the reference table:
the same chosen tuples, statuses, clashes and entries, draw for draw (same ``nat_seed``)."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tracer.conntrack.arrays import ArrayConntrackTable
from tracer.conntrack.reference import ConntrackTable
from tracer.conntrack.tuples import SYN, PacketKey, ip

CLIENTS = [ip("10.65.0.2"), ip("10.65.0.3"), ip("10.65.1.4")]
SERVERS = [ip("8.8.8.8"), ip("1.1.1.1")]
NODE = ip("172.18.0.2")

connection = st.fixed_dictionaries({
    "client": st.sampled_from(CLIENTS), "server": st.sampled_from(SERVERS),
    "protocol": st.sampled_from(("tcp", "udp", "icmp")),
    "sport": st.sampled_from([40000, 40001, 300, 700, 1024]),
    "to_src": st.sampled_from([NODE, NODE, ip("172.18.0.3")]),
    "port_range": st.sampled_from([None, None, (1024, 1025), (5000, 5003)]),
    "confirm": st.booleans(), "advance": st.sampled_from([0.0, 0.0, 50.0]),
})


def _key(c) -> PacketKey:
    if c["protocol"] == "tcp":
        return PacketKey.tcp(c["client"], c["server"], c["sport"], 80, SYN, seq=1000)
    if c["protocol"] == "udp":
        return PacketKey.udp(c["client"], c["server"], c["sport"], 53)
    return PacketKey.icmp(c["client"], c["server"], 8, 0, ident=c["sport"])


@settings(max_examples=300, deadline=None, suppress_health_check=(HealthCheck.too_slow,))
@given(st.lists(connection, min_size=1, max_size=14), st.integers(0, 3))
def test_masquerade_matches_reference(connections, seed):
    ref = ConntrackTable(capacity=64, nat_seed=seed)
    arr = ArrayConntrackTable(capacity=64, nat_seed=seed)
    now = 1.0
    seen: set[int] = set()
    for c in connections:
        now += c["advance"]
        verdicts = [t.process(_key(c), now) for t in (ref, arr)]
        assert verdicts[0] == verdicts[1]
        entry = verdicts[0].entry_id
        if entry is None or verdicts[0].ctstate != "NEW" or entry in seen:
            continue                   # NAT binds only a connection's first packet
        seen.add(entry)
        for table in (ref, arr):
            table.masquerade(entry, c["to_src"], now, port_range=c["port_range"])
        for direction in ("original", "reply"):
            assert arr.translate(entry, direction) == ref.translate(entry, direction)
        if c["confirm"]:
            assert arr.confirm(entry, now) == ref.confirm(entry, now)
        else:
            ref.discard(entry)
            arr.discard(entry)
        assert sorted(arr.entries(now), key=lambda e: e.entry_id) == \
            sorted(ref.entries(now), key=lambda e: e.entry_id)


def test_a_clash_moves_the_second_flow_to_another_port():
    arr = ArrayConntrackTable(capacity=16)
    ids = []
    for client in CLIENTS[:2]:
        v = arr.process(PacketKey.udp(client, SERVERS[0], 40000, 53), 1.0)
        arr.masquerade(v.entry_id, NODE, 1.0)
        assert arr.confirm(v.entry_id, 1.0)
        ids.append(v.entry_id)
    first, second = (arr.translate(i, "original") for i in ids)
    assert (first.src, first.sport) == (NODE, 40000)
    assert second.src == NODE and second.sport != 40000 and 1024 <= second.sport <= 65535
