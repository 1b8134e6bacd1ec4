"""IPv4 reassembly as ip_defrag does it, on forged fragment sequences."""

from __future__ import annotations

import pytest
from scapy.layers.inet import IP, UDP, fragment
from scapy.packet import Raw

import capture_forge as forge
from tracer.capture import Reason, Skip, read_capture

T0 = 1_764_000_000 * 10**9
SECOND = 10**9


def datagram(ident=77, size=3000, **ip):
    return IP(src="10.65.0.2", dst="10.65.1.2", id=ident, **ip) / UDP(sport=1, dport=2) / Raw(
        bytes(i % 251 for i in range(size)))


def frags(ident=77, **ip) -> list[bytes]:
    return [bytes(f) for f in fragment(datagram(ident, **ip), fragsize=1000)]


def read(tmp_path, packets, times=None):
    times = times or [T0 + i * 1000 for i in range(len(packets))]
    path = tmp_path / "f.pcap"
    path.write_bytes(forge.pcap(list(zip(times, packets)), linktype=228))
    return read_capture(str(path))


def test_in_order_fragments_become_one_row_where_the_last_arrives(tmp_path):
    parts = frags()
    other = bytes(IP(src="10.0.0.9", dst="10.0.0.8") / UDP(sport=5, dport=6))
    cap = read(tmp_path, [parts[0], other, parts[1], parts[2], parts[3]])
    assert list(cap.meta["frame"]) == [2, 5]               # the other packet comes first
    row, meta = cap.packets[1], cap.meta[1]
    assert (row["tot_len"], row["payload_len"], row["dport"], row["df"]) == (3028, 3000, 2, 0)
    assert (meta["frags"], meta["first_frame"], meta["reason"]) == (4, 1, Reason.OK)
    assert cap.datagram(1)[20:] == bytes(datagram())[20:]
    assert list(cap.skipped["reason"]) == [Skip.FRAGMENT_QUEUED] * 3


def test_out_of_order_fragments_reassemble_with_fragment_zero_header(tmp_path):
    parts = frags()
    cap = read(tmp_path, [parts[2], parts[0], parts[3], parts[1]])
    assert len(cap) == 1 and cap.meta["frame"][0] == 4 and cap.meta["first_frame"][0] == 2
    assert cap.datagram(0)[20:] == bytes(datagram())[20:]


def test_a_duplicate_is_dropped_alone(tmp_path):
    parts = frags()
    cap = read(tmp_path, [parts[0], parts[1], parts[1], parts[2], parts[3]])
    assert [Reason(r) for r in cap.meta["reason"]] == [Reason.FRAG_DUPLICATE, Reason.OK]
    assert cap.meta["frags"][1] == 4


def test_an_overlap_discards_the_whole_queue(tmp_path):
    parts = frags()
    shifted = bytes(IP(src="10.65.0.2", dst="10.65.1.2", id=77, proto=17, flags="MF", frag=100)
                    / Raw(b"y" * 400))                      # bytes 800..1200 overlap 0..1008
    cap = read(tmp_path, [parts[0], shifted, parts[1], parts[2], parts[3]])
    reasons = [Reason(r) for r in cap.meta["reason"]]
    assert reasons[:2] == [Reason.FRAG_OVERLAP, Reason.FRAG_OVERLAP]
    # the later fragments start a fresh queue that never completes
    assert reasons[2:] == [Reason.FRAG_INCOMPLETE] * 3


def test_reassembly_times_out_after_ipfrag_time(tmp_path):
    parts = frags()
    times = [T0, T0 + 31 * SECOND, T0 + 31 * SECOND + 1, T0 + 31 * SECOND + 2]
    cap = read(tmp_path, parts, times)
    assert [Reason(r) for r in cap.meta["reason"]] == [Reason.FRAG_TIMEOUT] + [
        Reason.FRAG_INCOMPLETE] * 3
    times = [T0, T0 + 29 * SECOND, T0 + 29 * SECOND, T0 + 29 * SECOND]
    assert len(read(tmp_path, parts, times)) == 1            # within 30 s: reassembled


def test_a_changed_end_or_empty_fragment_discards_the_queue(tmp_path):
    parts = frags()
    last_again = bytes(IP(src="10.65.0.2", dst="10.65.1.2", id=77, proto=17, frag=250)
                       / Raw(b"z" * 16))                    # a second, different last fragment
    cap = read(tmp_path, [parts[3], last_again])
    assert set(cap.meta["reason"]) == {Reason.FRAG_BAD_LENGTH}
    empty = bytes(IP(src="10.65.0.2", dst="10.65.1.2", id=78, proto=17, flags="MF", frag=5))
    assert read(tmp_path, [empty]).meta["reason"][0] == Reason.FRAG_BAD_LENGTH


def test_oversize_datagram_fails(tmp_path):
    first = bytes(IP(src="1.1.1.1", dst="2.2.2.2", id=9, proto=17, flags="MF") / Raw(b"a" * 1000))
    last = bytes(IP(src="1.1.1.1", dst="2.2.2.2", id=9, proto=17, frag=8125) / Raw(b"b" * 1000))
    middle = [bytes(IP(src="1.1.1.1", dst="2.2.2.2", id=9, proto=17, flags="MF", frag=o // 8)
                    / Raw(b"c" * 1000)) for o in range(1000, 65000, 1000)]
    cap = read(tmp_path, [first, *middle, last])
    assert set(cap.meta["reason"]) == {Reason.FRAG_OVERSIZE}


def manual_frags(df: bool) -> list[bytes]:
    body = bytes(datagram())[20:]
    out = []
    for start in range(0, len(body), 1000):
        last = start + 1000 >= len(body)
        flags = ("DF" if df else "") + ("" if last else "+MF" if df else "MF")
        out.append(bytes(IP(src="10.65.0.2", dst="10.65.1.2", id=77, proto=17,
                            flags=flags.strip("+") or 0, frag=start // 8)
                         / Raw(body[start:start + 1000])))
    return out


@pytest.mark.parametrize("df,expect", [(True, 1), (False, 0)])
def test_df_survives_only_if_every_largest_fragment_had_it(tmp_path, df, expect):
    cap = read(tmp_path, manual_frags(df))
    assert cap.packets["df"][0] == expect and cap.datagram(0)[20:] == bytes(datagram())[20:]
    # ip_frag_reasm: DF only when the largest DF fragment is as large as the largest one
    mixed = manual_frags(False)[:-1] + manual_frags(True)[-1:]
    assert read(tmp_path, mixed).packets["df"][0] == 0
    mixed = manual_frags(True)[:1] + manual_frags(False)[1:]
    assert read(tmp_path, mixed).packets["df"][0] == 1
