"""Differential test: the numba array table gives the reference table's verdicts and entries."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tracer.conntrack.arrays import (ACT_CONFIRM, ACT_DISCARD, ACT_LEAVE, ArrayConntrackTable,
                                     pack_packets, unpack_verdict)
from tracer.conntrack.reference import ConntrackTable
from tracer.conntrack.timeouts import Timeouts
from tracer.conntrack.tuples import ACK, FIN, PSH, RST, SYN, URG, PacketKey, ip

HOSTS = [ip("10.65.0.2"), ip("10.65.0.3"), ip("10.65.0.4")]
PORTS = [80, 40000]
SEQS = [0, 1000, 1001, 1002, 1101, 5000, 5001, 5002, 3_000_000_000, 4_294_967_295]
FLAG_SETS = [SYN, SYN | ACK, ACK, ACK | PSH, FIN | ACK, RST, RST | ACK, FIN, SYN | FIN, 0,
             ACK | URG, SYN | URG]
TIMEOUTS = Timeouts(tcp_syn_sent=20, tcp_established=500, tcp_time_wait=15, udp=10,
                    udp_stream=40, icmp=8, generic=25)

hosts = st.sampled_from(HOSTS)
ports = st.sampled_from(PORTS)

tcp_packet = st.builds(
    PacketKey.tcp, hosts, hosts, ports, ports, st.sampled_from(FLAG_SETS),
    seq=st.sampled_from(SEQS), ack=st.sampled_from(SEQS),
    window=st.sampled_from([0, 502, 65535]), payload_len=st.sampled_from([0, 0, 100, 70000]),
    wscale=st.sampled_from([None, None, 7, 20]), sack_perm=st.booleans())
udp_packet = st.builds(PacketKey.udp, hosts, hosts, ports, ports)
echo_packet = st.builds(PacketKey.icmp, hosts, hosts, st.sampled_from([0, 8, 9, 13, 30]),
                        st.just(0), ident=st.sampled_from([1, 2]))
inner_packet = st.one_of(udp_packet, st.builds(PacketKey.tcp, hosts, hosts, ports, ports,
                                               st.just(SYN)), echo_packet)
error_packet = st.builds(PacketKey.icmp, hosts, hosts, st.sampled_from([3, 11]),
                         st.sampled_from([0, 3, 4]), inner=st.one_of(st.none(), inner_packet))
generic_packet = st.builds(PacketKey, hosts, hosts, st.sampled_from([4, 47]))


@st.composite
def conversation(draw):
    """A scripted handshake, data and FIN/RST teardown on one flow, to reach deep states."""
    a, b = draw(hosts), draw(hosts)
    sp, dp = draw(ports), draw(ports)
    isn_a, isn_b = draw(st.sampled_from(SEQS)), draw(st.sampled_from(SEQS))
    m = 0xFFFFFFFF
    script = [
        PacketKey.tcp(a, b, sp, dp, SYN, seq=isn_a, window=64240, wscale=7, sack_perm=True),
        PacketKey.tcp(b, a, dp, sp, SYN | ACK, seq=isn_b, ack=(isn_a + 1) & m, window=65160,
                      wscale=7, sack_perm=True),
        PacketKey.tcp(a, b, sp, dp, ACK, seq=(isn_a + 1) & m, ack=(isn_b + 1) & m, window=502),
        PacketKey.tcp(a, b, sp, dp, ACK | PSH, seq=(isn_a + 1) & m, ack=(isn_b + 1) & m,
                      window=502, payload_len=100),
        PacketKey.tcp(b, a, dp, sp, ACK, seq=(isn_b + 1) & m, ack=(isn_a + 101) & m, window=509),
    ]
    if draw(st.booleans()):
        script += [
            PacketKey.tcp(a, b, sp, dp, FIN | ACK, seq=(isn_a + 101) & m, ack=(isn_b + 1) & m,
                          window=502),
            PacketKey.tcp(b, a, dp, sp, FIN | ACK, seq=(isn_b + 1) & m, ack=(isn_a + 102) & m,
                          window=509),
            PacketKey.tcp(a, b, sp, dp, ACK, seq=(isn_a + 102) & m, ack=(isn_b + 2) & m,
                          window=502),
        ]
    else:
        script.append(PacketKey.tcp(b, a, dp, sp, RST | ACK, seq=(isn_b + 1) & m,
                                    ack=(isn_a + 101) & m))
    cut = draw(st.integers(1, len(script)))
    return script[:cut]


single = st.one_of(tcp_packet, tcp_packet, udp_packet, echo_packet, error_packet, generic_packet)
block = st.one_of(single.map(lambda k: [k]), conversation())
step = st.tuples(block, st.sampled_from([0.0, 0.0, 0.5, 1.0, 3.0, 12.0, 45.0]),
                 st.sampled_from([ACT_CONFIRM] * 6 + [ACT_DISCARD, ACT_LEAVE]),
                 st.booleans())


def run_reference(table: ConntrackTable, ops):
    results = []
    for key, now, action, notrack in ops:
        verdict = table.process(key, now, notrack=notrack)
        ok = True
        if verdict.entry_id is not None and action == ACT_CONFIRM:
            ok = table.confirm(verdict.entry_id, now)
        elif verdict.entry_id is not None and action == ACT_DISCARD:
            table.discard(verdict.entry_id)
        results.append((verdict, ok))
    return results


def flatten(steps):
    ops, now = [], 0.0
    for keys, dt, action, notrack in steps:
        now += dt
        for key in keys:
            ops.append((key, now, action, notrack and len(keys) == 1))
    return ops


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(step, min_size=1, max_size=25), st.integers(1, 6), st.booleans(),
       st.booleans())
def test_array_table_matches_reference(steps, capacity, loose, liberal):
    ops = flatten(steps)
    ref = ConntrackTable(capacity, tcp_loose=loose, timeouts=TIMEOUTS, be_liberal=liberal)
    arr = ArrayConntrackTable(capacity, tcp_loose=loose, timeouts=TIMEOUTS, be_liberal=liberal)
    expected = run_reference(ref, ops)
    batch = pack_packets([o[0] for o in ops], [o[1] for o in ops], [o[2] for o in ops],
                         [o[3] for o in ops])
    out = arr.process_batch(batch)
    got = [(unpack_verdict(rec), bool(rec["confirm_ok"])) for rec in out]
    assert got == expected
    end = ops[-1][1]
    assert arr.entries(end) == ref.entries(end)
    assert arr.count == ref.count
    assert arr.expire(end + 1000) == ref.expire(end + 1000)


def test_single_packet_api_matches_reference():
    ref, arr = ConntrackTable(), ArrayConntrackTable(capacity=64)
    a, b = "10.65.0.2", "10.65.0.3"
    keys = [PacketKey.tcp(a, b, 40000, 80, SYN, seq=1),
            PacketKey.tcp(b, a, 80, 40000, SYN | ACK, seq=9, ack=2),
            PacketKey.tcp(a, b, 40000, 80, ACK, seq=2, ack=10)]
    for now, key in enumerate(keys):
        v_ref, v_arr = ref.process(key, float(now)), arr.process(key, float(now))
        assert v_ref == v_arr
        assert ref.confirm(v_ref.entry_id, float(now)) == arr.confirm(v_arr.entry_id, float(now))
    assert arr.entries(3.0) == ref.entries(3.0)


def test_array_nat_and_discard():
    arr = ArrayConntrackTable(capacity=8)
    v = arr.process(PacketKey.udp("10.65.0.2", "10.96.0.10", 5000, 53), 0.0)
    arr.dnat(v.entry_id, ip("10.65.0.9"), 5353)
    assert arr.confirm(v.entry_id, 0.0)
    back = arr.process(PacketKey.udp("10.65.0.9", "10.65.0.2", 5353, 5000), 0.1)
    assert (back.ctstate, back.direction, back.entry_id) == ("ESTABLISHED", "reply", v.entry_id)
    rw = arr.translate(v.entry_id, "reply")
    assert (rw.src, rw.sport, rw.src_changed) == (ip("10.96.0.10"), 53, True)
    w = arr.process(PacketKey.udp("10.65.0.2", "10.65.0.3", 1, 2), 0.2)
    arr.discard(w.entry_id)
    assert arr.count == 1 and len(arr.entries(0.2)) == 1


@settings(max_examples=200, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(st.lists(step, min_size=1, max_size=25), st.sampled_from([1, 3, 6, 40]))
def test_arrays_that_grow_packet_by_packet_match_reference(monkeypatch, steps, capacity):
    """The arrays start at one slot and double as entries arrive (up to ``capacity``)."""
    import tracer.conntrack.arrays as arrays
    monkeypatch.setattr(arrays, "INITIAL_SLOTS", 1)
    ops = flatten(steps)
    ref = ConntrackTable(capacity, timeouts=TIMEOUTS)
    arr = ArrayConntrackTable(capacity, timeouts=TIMEOUTS)
    expected = run_reference(ref, ops)
    got = run_reference(arr, ops)
    assert got == expected
    end = ops[-1][1]
    assert arr.entries(end) == ref.entries(end) and arr.count == ref.count
    assert arr.pool.shape[0] <= capacity


# ----------------------------------------------------------------- replay (live's fast path)

from test_conntrack_reference import _open_tcp  # noqa: E402  (the same opened connection)

def test_replay_on_the_twin_does_what_the_reference_does():
    segment = PacketKey.tcp("10.0.0.1", "10.0.0.2", 4000, 80, PSH | ACK, seq=101, ack=901,
                            payload_len=50)
    twin, reference = ArrayConntrackTable(), ConntrackTable()
    _open_tcp(twin)
    _open_tcp(reference)
    before, tcp_before = twin.entries(1.0), twin.tcp.copy()
    assert twin.replay(segment, 1.0, "NEW") is None          # another state: untouched
    assert twin.entries(1.0) == before and (twin.tcp == tcp_before).all()
    undo = twin.replay(segment, 1.0, "ESTABLISHED")
    assert undo is not None and reference.replay(segment, 1.0, "ESTABLISHED") is not None
    assert twin.entries(1.0) == reference.entries(1.0) != before
    undo()
    assert twin.entries(1.0) == before and (twin.tcp == tcp_before).all()
