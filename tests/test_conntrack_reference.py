"""Reference conntrack table: kernel ctstate/TCP-state semantics, timeouts, NAT, capacity."""

from __future__ import annotations

import pytest

from tracer.conntrack.format import format_conntrack_list
from tracer.conntrack.reference import ConntrackTable
from tracer.conntrack.timeouts import Timeouts
from tracer.conntrack.tuples import ACK, FIN, PSH, RST, SYN, URG, FlowTuple, PacketKey, ip

A, B, NODE = "10.65.0.2", "10.65.0.3", "192.168.0.10"


def run(table: ConntrackTable, key: PacketKey, now: float, confirm: bool = True):
    verdict = table.process(key, now)
    if confirm and verdict.entry_id is not None:
        assert table.confirm(verdict.entry_id, now)
    return verdict


def remaining(table: ConntrackTable, now: float) -> list[int]:
    return [int(e.expires - now) for e in table.entries(now)]


def handshake(table: ConntrackTable, now: float = 0.0, sport: int = 40000):
    syn = run(table, PacketKey.tcp(A, B, sport, 80, SYN, seq=1000, window=64240), now)
    synack = run(table, PacketKey.tcp(B, A, 80, sport, SYN | ACK, seq=5000, ack=1001,
                                      window=65160), now + 0.001)
    ack = run(table, PacketKey.tcp(A, B, sport, 80, ACK, seq=1001, ack=5001, window=502),
              now + 0.002)
    return syn, synack, ack


def test_handshake_ctstates_and_tcp_states():
    table = ConntrackTable()
    syn, synack, ack = handshake(table)
    assert (syn.ctstate, syn.direction, syn.tcp_state) == ("NEW", "original", "SYN_SENT")
    assert (synack.ctstate, synack.direction, synack.tcp_state) == ("ESTABLISHED", "reply", "SYN_RECV")
    assert (ack.ctstate, ack.tcp_state) == ("ESTABLISHED", "ESTABLISHED")
    assert "ASSURED" in ack.status and "ASSURED" not in synack.status
    assert syn.entry_id == synack.entry_id == ack.entry_id
    assert remaining(table, 1.0) == [431999]


def test_syn_timeouts_before_reply():
    table = ConntrackTable()
    run(table, PacketKey.tcp(A, B, 40000, 80, SYN, seq=1), 0.0)
    assert remaining(table, 0.0) == [120]
    run(table, PacketKey.tcp(B, A, 80, 40000, SYN | ACK, seq=9, ack=2), 1.0)
    assert remaining(table, 1.0) == [60]


def test_syn_retransmit_does_not_renew_timeout():
    table = ConntrackTable()
    run(table, PacketKey.tcp(A, B, 40000, 80, SYN, seq=1), 0.0)
    again = run(table, PacketKey.tcp(A, B, 40000, 80, SYN, seq=1), 50.0)
    assert again.ctstate == "NEW"
    assert remaining(table, 50.0) == [70]


def test_fin_teardown_states_and_timeouts():
    table = ConntrackTable()
    handshake(table)
    steps = [
        (PacketKey.tcp(A, B, 40000, 80, FIN | ACK, seq=1001, ack=5001, window=502), "FIN_WAIT", 120),
        (PacketKey.tcp(B, A, 80, 40000, ACK, seq=5001, ack=1002, window=509), "CLOSE_WAIT", 60),
        (PacketKey.tcp(B, A, 80, 40000, FIN | ACK, seq=5001, ack=1002, window=509), "LAST_ACK", 30),
        (PacketKey.tcp(A, B, 40000, 80, ACK, seq=1002, ack=5002, window=502), "TIME_WAIT", 120),
    ]
    for now, (key, state, timeout) in enumerate(steps, start=1):
        verdict = run(table, key, float(now))
        assert (verdict.ctstate, verdict.tcp_state) == ("ESTABLISHED", state)
        assert remaining(table, float(now)) == [timeout]
    assert table.expire(4.0 + 120.0) == 1
    assert table.entries(200.0) == []


def test_rst_closes_with_close_timeout():
    table = ConntrackTable()
    handshake(table)
    verdict = run(table, PacketKey.tcp(B, A, 80, 40000, RST | ACK, seq=5001, ack=1001), 1.0)
    assert (verdict.ctstate, verdict.tcp_state) == ("ESTABLISHED", "CLOSE")
    assert remaining(table, 1.0) == [10]


def test_rst_answering_syn_kills_unreplied_entry():
    table = ConntrackTable()
    run(table, PacketKey.tcp(A, B, 40000, 80, SYN, seq=1000), 0.0)
    verdict = run(table, PacketKey.tcp(B, A, 80, 40000, RST | ACK, seq=0, ack=1001), 0.1)
    assert verdict.ctstate == "ESTABLISHED" and verdict.direction == "reply"
    assert table.entries(0.1) == []


@pytest.mark.parametrize("flags", [RST, FIN | ACK, SYN | ACK])
def test_stray_rst_fin_synack_are_invalid_and_leave_no_entry(flags):
    table = ConntrackTable()
    verdict = run(table, PacketKey.tcp(A, B, 40000, 80, flags, seq=7, ack=9), 0.0)
    assert verdict.ctstate == "INVALID" and verdict.entry_id is None
    assert table.count == 0 and table.entries(0.0) == []


@pytest.mark.parametrize("flags", [SYN | FIN, SYN | RST, FIN, 0, FIN | PSH | URG])
def test_bad_flag_combinations_are_invalid(flags):
    table = ConntrackTable()
    verdict = table.process(PacketKey.tcp(A, B, 40000, 80, flags), 0.0)
    assert verdict.ctstate == "INVALID"
    assert verdict.reason == "invalid tcp flag combination"


def test_stray_ack_pickup_with_loose_on():
    table = ConntrackTable()
    first = run(table, PacketKey.tcp(A, B, 40000, 80, ACK, seq=100, ack=200), 0.0)
    # The kernel gives a picked-up flow NEW (no reply seen) with TCP state ESTABLISHED, and caps
    # its timeout at the UNACK timeout until the peer answers.
    assert (first.ctstate, first.tcp_state) == ("NEW", "ESTABLISHED")
    assert remaining(table, 0.0) == [300]
    reply = run(table, PacketKey.tcp(B, A, 80, 40000, ACK, seq=200, ack=100), 1.0)
    assert reply.ctstate == "ESTABLISHED" and "ASSURED" not in reply.status
    again = run(table, PacketKey.tcp(A, B, 40000, 80, ACK, seq=100, ack=200), 2.0)
    assert again.ctstate == "ESTABLISHED" and "ASSURED" in again.status


def test_stray_ack_invalid_with_loose_off():
    table = ConntrackTable(tcp_loose=False)
    verdict = run(table, PacketKey.tcp(A, B, 40000, 80, ACK, seq=100, ack=200), 0.0)
    assert verdict.ctstate == "INVALID" and "tcp_loose=0" in verdict.reason
    assert table.count == 0


def test_out_of_window_data_is_invalid():
    table = ConntrackTable()
    handshake(table)
    far = PacketKey.tcp(A, B, 40000, 80, ACK, seq=1001 + 10_000_000, ack=5001, window=502)
    verdict = run(table, far, 1.0)
    assert verdict.ctstate == "INVALID" and verdict.reason.startswith("SEQ is over upper bound")
    bad_ack = PacketKey.tcp(A, B, 40000, 80, ACK, seq=1001, ack=5001 + 1_000_000, window=502)
    assert run(table, bad_ack, 1.0).reason.startswith("ACK is over upper bound")
    ok = PacketKey.tcp(A, B, 40000, 80, ACK, seq=1001, ack=5001, window=502)
    assert run(table, ok, 1.0).ctstate == "ESTABLISHED"


def test_be_liberal_accepts_out_of_window():
    table = ConntrackTable(be_liberal=True)
    handshake(table)
    far = PacketKey.tcp(A, B, 40000, 80, ACK, seq=1001 + 10_000_000, ack=5001)
    assert run(table, far, 1.0).ctstate == "ESTABLISHED"


def test_syn_in_established_is_ignored_not_invalid():
    table = ConntrackTable()
    handshake(table)
    verdict = run(table, PacketKey.tcp(A, B, 40000, 80, SYN, seq=77777), 1.0)
    assert verdict.ctstate == "ESTABLISHED" and verdict.tcp_state == "ESTABLISHED"
    assert verdict.reason == "packet ignored by state table"


def test_reopen_from_time_wait_creates_fresh_entry():
    table = ConntrackTable()
    handshake(table)
    for now, key in enumerate([
            PacketKey.tcp(A, B, 40000, 80, FIN | ACK, seq=1001, ack=5001, window=502),
            PacketKey.tcp(B, A, 80, 40000, FIN | ACK, seq=5001, ack=1002, window=509),
            PacketKey.tcp(A, B, 40000, 80, ACK, seq=1002, ack=5002, window=502)], start=1):
        run(table, key, float(now))
    old_id = table.entries(4.0)[0].entry_id
    verdict = run(table, PacketKey.tcp(A, B, 40000, 80, SYN, seq=90000), 5.0)
    assert (verdict.ctstate, verdict.tcp_state) == ("NEW", "SYN_SENT")
    assert verdict.entry_id != old_id and len(table.entries(5.0)) == 1


def test_udp_new_then_established_and_stream_timeout():
    table = ConntrackTable()
    first = run(table, PacketKey.udp(A, B, 5000, 53), 0.0)
    assert first.ctstate == "NEW" and remaining(table, 0.0) == [30]
    reply = run(table, PacketKey.udp(B, A, 53, 5000), 0.5)
    assert reply.ctstate == "ESTABLISHED" and "ASSURED" not in reply.status
    assert remaining(table, 0.5) == [30]
    quick = run(table, PacketKey.udp(A, B, 5000, 53), 1.0)   # within 2 s: not yet a stream
    assert "ASSURED" not in quick.status and remaining(table, 1.0) == [30]
    later = run(table, PacketKey.udp(A, B, 5000, 53), 3.0)
    assert later.ctstate == "ESTABLISHED" and "ASSURED" in later.status
    assert remaining(table, 3.0) == [120]


def test_icmp_echo_request_reply():
    table = ConntrackTable()
    req = run(table, PacketKey.icmp(A, B, 8, ident=77), 0.0)
    rep = run(table, PacketKey.icmp(B, A, 0, ident=77), 0.1)
    assert (req.ctstate, rep.ctstate, rep.direction) == ("NEW", "ESTABLISHED", "reply")
    assert remaining(table, 0.1) == [30]
    entry = table.entries(0.1)[0]
    assert entry.original == FlowTuple(ip(A), ip(B), 1, 77, 8 << 8)
    assert entry.reply == FlowTuple(ip(B), ip(A), 1, 77, 0)


def test_lone_echo_reply_is_invalid():
    table = ConntrackTable()
    verdict = run(table, PacketKey.icmp(B, A, 0, ident=5), 0.0)
    assert verdict.ctstate == "INVALID" and table.count == 0


@pytest.mark.parametrize("icmp_type,code", [(3, 3), (11, 0), (3, 4)])
def test_icmp_error_for_tracked_flow_is_related(icmp_type, code):
    table = ConntrackTable()
    run(table, PacketKey.udp(A, B, 5000, 53), 0.0)
    inner = PacketKey.udp(A, B, 5000, 53)
    error = PacketKey.icmp(B, A, icmp_type, code, inner=inner)
    verdict = run(table, error, 0.5)
    assert (verdict.ctstate, verdict.direction) == ("RELATED", "reply")
    assert len(table.entries(0.5)) == 1   # the error creates no entry of its own


def test_icmp_error_for_untracked_flow_is_invalid():
    table = ConntrackTable()
    inner = PacketKey.udp(A, B, 5000, 53)
    verdict = run(table, PacketKey.icmp(B, A, 3, 3, inner=inner), 0.0)
    assert verdict.ctstate == "INVALID" and table.count == 0


def test_icmp_error_with_wrong_outer_destination_is_invalid():
    table = ConntrackTable()
    run(table, PacketKey.udp(A, B, 5000, 53), 0.0)
    inner = PacketKey.udp(A, B, 5000, 53)
    verdict = run(table, PacketKey.icmp(B, "10.9.9.9", 3, 3, inner=inner), 0.5)
    assert verdict.ctstate == "INVALID"


def test_unconfirmed_entry_vanishes_when_packet_dropped():
    table = ConntrackTable()
    verdict = table.process(PacketKey.tcp(A, B, 40000, 80, SYN, seq=1), 0.0)
    assert verdict.ctstate == "NEW" and table.count == 1
    assert table.entries(0.0) == []          # unconfirmed entries are not listed
    again = table.process(PacketKey.tcp(A, B, 40000, 80, SYN, seq=1), 0.0)
    assert again.ctstate == "NEW" and again.entry_id != verdict.entry_id
    table.discard(verdict.entry_id)
    table.discard(again.entry_id)
    assert table.count == 0
    reply = table.process(PacketKey.tcp(B, A, 80, 40000, SYN | ACK, seq=5, ack=2), 0.1)
    assert reply.ctstate == "INVALID"        # no confirmed entry to match


def test_timeout_counts_from_confirmation():
    table = ConntrackTable()
    verdict = table.process(PacketKey.udp(A, B, 1, 2), 0.0)
    table.confirm(verdict.entry_id, 10.0)
    assert remaining(table, 10.0) == [30]


def test_expiry_makes_flow_new_again():
    table = ConntrackTable()
    run(table, PacketKey.udp(A, B, 5000, 53), 0.0)
    assert table.process(PacketKey.udp(B, A, 53, 5000), 30.0).ctstate == "NEW"


def test_table_full_early_drops_unassured_then_drops_packet():
    table = ConntrackTable(capacity=2)
    handshake(table, sport=1)                                 # assured
    run(table, PacketKey.udp(A, B, 7, 7), 1.0)                # unassured
    third = run(table, PacketKey.udp(A, B, 8, 8), 2.0)        # early-drops the UDP entry
    assert third.ctstate == "NEW" and not third.dropped
    kept = sorted(e.original.sport for e in table.entries(2.0))
    assert kept == [1, 8]
    handshake(table, now=3.0, sport=2)                        # drops udp 8, becomes assured
    dropped = run(table, PacketKey.udp(A, B, 9, 9), 4.0)
    assert dropped.dropped and dropped.reason == "conntrack table full"
    assert sorted(e.original.sport for e in table.entries(4.0)) == [1, 2]


def test_table_full_counts_unconfirmed_and_reaps_expired():
    table = ConntrackTable(capacity=1)
    table.process(PacketKey.udp(A, B, 1, 1), 0.0)
    assert table.process(PacketKey.udp(A, B, 2, 2), 0.0).dropped   # unconfirmed counts
    table = ConntrackTable(capacity=1, timeouts=Timeouts(udp=5.0))
    run(table, PacketKey.udp(A, B, 1, 1), 0.0)
    handshake_free = run(table, PacketKey.udp(A, B, 2, 2), 10.0)
    assert handshake_free.ctstate == "NEW" and not handshake_free.dropped


def test_dnat_reply_lookup_and_translate():
    table = ConntrackTable()
    svc, backend = "10.96.0.10", "10.65.0.9"
    verdict = table.process(PacketKey.tcp(A, svc, 40000, 80, SYN, seq=1), 0.0)
    table.dnat(verdict.entry_id, ip(backend), 8080)
    assert table.confirm(verdict.entry_id, 0.0)
    entry = table.entries(0.0)[0]
    assert entry.reply == FlowTuple(ip(backend), ip(A), 6, 8080, 40000)
    assert {"DST_NAT"} <= entry.status and "SRC_NAT" not in entry.status
    fwd = table.translate(verdict.entry_id, "original")
    assert (fwd.dst, fwd.dport, fwd.dst_changed, fwd.src_changed) == (ip(backend), 8080, True, False)
    reply = table.process(PacketKey.tcp(backend, A, 8080, 40000, SYN | ACK, seq=9, ack=2), 0.1)
    assert (reply.ctstate, reply.direction) == ("ESTABLISHED", "reply")
    back = table.translate(reply.entry_id, "reply")
    assert (back.src, back.sport, back.src_changed) == (ip(svc), 80, True)


def test_masquerade_keeps_port_then_picks_free_one_on_clash():
    table = ConntrackTable()
    first = table.process(PacketKey.tcp(A, "8.8.8.8", 40000, 443, SYN, seq=1), 0.0)
    table.masquerade(first.entry_id, ip(NODE), 0.0)
    table.confirm(first.entry_id, 0.0)
    assert table.entries(0.0)[0].reply.dport == 40000        # port kept when free
    second = table.process(PacketKey.tcp(B, "8.8.8.8", 40000, 443, SYN, seq=1), 0.0)
    table.masquerade(second.entry_id, ip(NODE), 0.0)
    assert table.confirm(second.entry_id, 0.0)
    replies = [e.reply for e in table.entries(0.0)]
    assert replies[1].dst == ip(NODE) and replies[1].dport != 40000
    assert 1024 <= replies[1].dport <= 65535
    assert "SRC_NAT" in table.entries(0.0)[1].status
    back = table.process(PacketKey.tcp("8.8.8.8", NODE, 443, replies[1].dport, SYN | ACK,
                                       seq=5, ack=2), 0.1)
    assert back.entry_id == second.entry_id
    rewrite = table.translate(back.entry_id, "reply")
    assert (rewrite.dst, rewrite.dport) == (ip(B), 40000)


def test_low_source_port_stays_in_low_range_on_clash():
    table = ConntrackTable()
    for src in (A, B):
        verdict = table.process(PacketKey.udp(src, "8.8.8.8", 123, 123), 0.0)
        table.masquerade(verdict.entry_id, ip(NODE), 0.0)
        table.confirm(verdict.entry_id, 0.0)
    ports = [e.reply.dport for e in table.entries(0.0)]
    assert ports[0] == 123 and 1 <= ports[1] <= 511 and ports[1] != 123


def test_set_nat_on_confirmed_entry_is_refused():
    table = ConntrackTable()
    verdict = run(table, PacketKey.udp(A, B, 1, 2), 0.0)
    with pytest.raises(ValueError):
        table.set_nat(verdict.entry_id, reply_src=ip("1.2.3.4"))


def test_conntrack_list_format():
    table = ConntrackTable()
    handshake(table)
    run(table, PacketKey.udp(A, B, 5000, 53), 0.0)
    run(table, PacketKey.icmp(A, B, 8, ident=7), 0.0)
    run(table, PacketKey.icmp(B, A, 0, ident=7), 0.0)
    verdict = run(table, PacketKey.tcp(A, B, 1, 2, SYN, seq=3), 0.0)
    table.set_mark(verdict.entry_id, 0x10000)
    text = format_conntrack_list(table.entries(0.5), 0.5)
    assert text.splitlines() == [
        "tcp      6 431999 ESTABLISHED src=10.65.0.2 dst=10.65.0.3 sport=40000 dport=80 "
        "src=10.65.0.3 dst=10.65.0.2 sport=80 dport=40000 [ASSURED] mark=0 use=1",
        "udp      17 29 src=10.65.0.2 dst=10.65.0.3 sport=5000 dport=53 [UNREPLIED] "
        "src=10.65.0.3 dst=10.65.0.2 sport=53 dport=5000 mark=0 use=1",
        "icmp     1 29 src=10.65.0.2 dst=10.65.0.3 type=8 code=0 id=7 "
        "src=10.65.0.3 dst=10.65.0.2 type=0 code=0 id=7 mark=0 use=1",
        "tcp      6 119 SYN_SENT src=10.65.0.2 dst=10.65.0.3 sport=1 dport=2 [UNREPLIED] "
        "src=10.65.0.3 dst=10.65.0.2 sport=2 dport=1 mark=65536 use=1",
    ]


def test_untracked_and_generic_protocols():
    table = ConntrackTable()
    assert table.process(PacketKey.udp(A, B, 1, 2), 0.0, notrack=True).ctstate == "UNTRACKED"
    ipip = PacketKey(ip(A), ip(B), 4)
    assert run(table, ipip, 0.0).ctstate == "NEW"
    assert run(table, PacketKey(ip(B), ip(A), 4), 1.0).ctstate == "ESTABLISHED"
    assert remaining(table, 1.0) == [600]
    assert format_conntrack_list(table.entries(1.0), 1.0).startswith("unknown  4 600 src=")


def test_truncated_headers_become_invalid_verdicts():
    table = ConntrackTable()
    assert table.process(PacketKey(ip(A), ip(B), 6, 1, 2), 0.0).reason == "truncated packet"
    assert table.process(PacketKey(ip(A), ip(B), 1), 0.0).ctstate == "INVALID"
    assert table.process(PacketKey.icmp(A, B, 40), 0.0).reason == "invalid icmp type"


# ----------------------------------------------------------------- replay (the fast path's)

def _internals(table: ConntrackTable) -> list:
    from dataclasses import asdict
    return [(c.status, c.mark, c.expires, c.timeout, c.stream_ts,
             asdict(c.tcp) if c.tcp is not None else None) for c in table._conns.values()]


def _open_tcp(table: ConntrackTable) -> None:
    a, b = "10.0.0.1", "10.0.0.2"
    for key, now in ((PacketKey.tcp(a, b, 4000, 80, SYN, seq=100), 0.0),
                     (PacketKey.tcp(b, a, 80, 4000, SYN | ACK, seq=900, ack=101), 0.1),
                     (PacketKey.tcp(a, b, 4000, 80, ACK, seq=101, ack=901), 0.2)):
        verdict = table.process(key, now)
        if verdict.entry_id is not None:
            table.confirm(verdict.entry_id, now)


def test_replay_keeps_what_process_did_and_can_undo_it():
    table = ConntrackTable()
    _open_tcp(table)
    before = _internals(table)
    segment = PacketKey.tcp("10.0.0.1", "10.0.0.2", 4000, 80, PSH | ACK, seq=101, ack=901,
                            payload_len=50)
    undo = table.replay(segment, 1.0, "ESTABLISHED")
    assert undo is not None
    after = _internals(table)
    assert after != before                        # the window and the timeout moved on
    twin = ConntrackTable()
    _open_tcp(twin)
    twin.process(segment, 1.0)
    assert _internals(twin) == after              # exactly what process does
    undo()
    assert _internals(table) == before


@pytest.mark.parametrize("segment,expect,now", [
    (PacketKey.tcp("10.0.0.1", "10.0.0.2", 4000, 80, ACK, seq=101, ack=901), "NEW", 1.0),
    (PacketKey.tcp("10.0.0.1", "10.0.0.2", 4000, 80, ACK, seq=101, ack=901), "ESTABLISHED",
     10 ** 7),                                    # the entry has expired
    (PacketKey.tcp("10.0.0.1", "10.0.0.2", 4001, 80, ACK, seq=101, ack=901), "ESTABLISHED",
     1.0),                                        # no entry
])
def test_replay_that_finds_another_state_changes_nothing(segment, expect, now):
    table = ConntrackTable()
    _open_tcp(table)
    before, count = _internals(table), table.count
    assert table.replay(segment, now, expect) is None
    assert _internals(table) == before and table.count == count
