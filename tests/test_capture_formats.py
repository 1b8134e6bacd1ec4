"""Every container and link-layer variant, forged, read by us and by tshark."""

from __future__ import annotations

import struct
from ipaddress import IPv4Address

import numpy as np
import pytest
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.l2 import ARP, CookedLinux, CookedLinuxV2, Dot1AD, Dot1Q, Ether
from scapy.layers.inet6 import IPv6
from scapy.packet import Raw

import capture_forge as forge
from capture_tshark import dissect, expected_row
from tracer.capture import Reason, Skip, Tunnel, read_capture
from tracer.errors import InputError

T0 = 1_764_000_000_123_456_789            # ns
A, B = "10.65.0.2", "10.65.1.2"


def ip_packets() -> list[IP]:
    return [IP(src=A, dst=B, ttl=63, flags="DF") / TCP(sport=40000, dport=80, flags="S",
                                                      seq=1000, window=64240),
            IP(src=B, dst=A, id=7) / UDP(sport=53, dport=40001) / Raw(b"x" * 33),
            IP(src=A, dst=B) / ICMP(type=8, id=0x1234, seq=1) / Raw(b"ping"),
            IP(src=B, dst=A) / ICMP(type=3, code=3) / IP(src=A, dst=B) / UDP(sport=1, dport=2)]


def ether(pkts, **kw) -> list[bytes]:
    return [bytes(Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02") / p) for p in pkts]


def write(tmp_path, name: str, data: bytes) -> str:
    path = tmp_path / name
    path.write_bytes(data)
    return str(path)


def assert_matches_tshark(path: str, cap=None) -> None:
    cap = cap or read_capture(path)
    rows = {int(f): i for i, f in enumerate(cap.meta["frame"])}
    # tshark 4.0 shows an unknown pcapng block as a frame of its own; we count packets only
    packets = [f for f in dissect(path) if f["frame.protocols"] != ["data"]]
    for number, frame in enumerate(packets, 1):
        if number not in rows:
            continue
        row = cap.packets[rows[number]]
        for field, value in expected_row(frame).items():
            assert row[field] == value, (path, number, field, row[field], value)
        epoch = (frame["frame.time_epoch"] or ["0"])[0]     # a Simple Packet Block has none
        sec, _, frac = epoch.partition(".")
        assert cap.meta["ts_ns"][rows[number]] == int(sec) * 10**9 + int((frac + "0" * 9)[:9])


@pytest.mark.parametrize("big", [False, True])
@pytest.mark.parametrize("flavour", ["micro", "nano", "kuznetsov"])
def test_pcap_byte_orders_and_timestamp_units(tmp_path, big, flavour):
    frames = ether(ip_packets())
    records = [(T0 + i * 1_000_001, f) for i, f in enumerate(frames)]
    path = write(tmp_path, "x.pcap", forge.pcap(records, big=big, nano=flavour == "nano",
                                                 kuznetsov=flavour == "kuznetsov"))
    cap = read_capture(path)
    assert len(cap) == 4 and not cap.warnings
    unit = 1 if flavour == "nano" else 1000
    assert list(cap.meta["ts_ns"]) == [(t // unit) * unit for t, _ in records]
    assert_matches_tshark(path, cap)


def test_pcapng_sections_interfaces_and_block_kinds(tmp_path):
    pk = ip_packets()
    ts_us = T0 // 1000
    first = (forge.shb(False) + forge.idb(False, 1, name="cali1")
             + forge.idb(False, 101, name="tunl0", tsresol=9)
             + forge.epb(False, 0, ts_us, ether(pk[:1])[0], comment="hello")
             + forge.unknown(False)
             + forge.epb(False, 1, T0 + 5, bytes(pk[1]))
             + forge.spb(False, ether(pk[2:3])[0]))
    second = (forge.shb(True) + forge.idb(True, 276, tsresol=0x80 | 20, tsoffset=100)
              + forge.pb(True, 0, 3 << 20 | 1 << 19, bytes(CookedLinuxV2(proto=0x0800) / pk[3]))
              + forge.unknown(True, 0x80000001))
    path = write(tmp_path, "x.pcapng", first + second)
    cap = read_capture(path)
    assert not cap.warnings and len(cap) == 4 and cap.frames == 4
    assert [i.linktype for i in cap.interfaces] == [1, 101, 276]
    assert [i.name for i in cap.interfaces] == ["cali1", "tunl0", ""]
    assert list(cap.meta["interface"]) == [0, 1, 0, 2]       # the SPB belongs to interface 0
    assert list(cap.meta["ts_ns"]) == [ts_us * 1000, T0 + 5, 0, 103_500_000_000]
    assert_matches_tshark(path, cap)


@pytest.mark.parametrize("linktype,frame", [
    (0, struct.pack("<I", 2)),                 # BSD NULL, little-endian writer
    (108, struct.pack(">I", 2)),               # OpenBSD LOOP, network order
    (101, b""), (228, b""),
    (113, bytes(CookedLinux(pkttype=4, proto=0x0800))),
    (276, bytes(CookedLinuxV2(proto=0x0800, ifindex=7, pkttype=0))),
])
def test_link_types(tmp_path, linktype, frame):
    frames = [frame + bytes(p) for p in ip_packets()]
    path = write(tmp_path, "x.pcap", forge.pcap([(T0, f) for f in frames], linktype=linktype))
    cap = read_capture(path)
    assert len(cap) == 4 and cap.meta["l3_offset"][0] == len(frame)
    assert_matches_tshark(path, cap)


def test_stacked_vlan_tags(tmp_path):
    p = ip_packets()[0]
    frames = [bytes(Ether() / Dot1AD(vlan=100) / Dot1Q(vlan=200) / p),
              bytes(Ether() / Dot1Q(vlan=5) / p),
              bytes(Ether() / Dot1Q(vlan=6) / Dot1Q(vlan=7) / Dot1Q(vlan=8) / p)]
    path = write(tmp_path, "x.pcap", forge.pcap([(T0, f) for f in frames]))
    cap = read_capture(path)
    assert list(cap.meta["vlan"]) == [100, 5, 6] and list(cap.meta["vlan_inner"]) == [200, -1, 7]
    assert list(cap.meta["l3_offset"]) == [22, 18, 26]
    assert_matches_tshark(path, cap)


def test_non_ipv4_frames_are_counted_as_skipped(tmp_path):
    frames = [bytes(Ether() / ARP()), bytes(Ether() / IPv6() / UDP()),
              bytes(Ether(type=0x88CC) / Raw(b"lldp")), bytes(Ether() / ip_packets()[0]),
              bytes(Ether())[:10]]
    path = write(tmp_path, "x.pcap", forge.pcap([(T0, f) for f in frames]))
    cap = read_capture(path)
    assert len(cap) == 1 and cap.meta["frame"][0] == 4
    assert list(cap.skipped["reason"]) == [Skip.ARP, Skip.IPV6, Skip.OTHER_ETHERTYPE,
                                           Skip.TRUNCATED_LINK_HEADER]
    raw6 = write(tmp_path, "r.pcap", forge.pcap([(T0, bytes(IPv6() / UDP()))], linktype=101))
    assert read_capture(raw6).skipped_counts() == {"IPv6 (not modelled yet)": 1}
    other = write(tmp_path, "o.pcap", forge.pcap([(T0, b"\x00" * 40)], linktype=147))
    assert read_capture(other).skipped_counts() == {"link type not read": 1}


def test_ipip_is_decapsulated_with_the_outer_header_kept(tmp_path):
    inner = ip_packets()[0]
    outer = IP(src="172.18.0.11", dst="172.18.0.12", ttl=61) / inner
    path = write(tmp_path, "x.pcap", forge.pcap([(T0, bytes(Ether() / outer))]))
    cap = read_capture(path)
    row, meta = cap.packets[0], cap.meta[0]
    assert meta["tunnel"] == Tunnel.IPIP and meta["outer_ttl"] == 61
    assert IPv4Address(int(meta["outer_saddr"])) == IPv4Address("172.18.0.11")
    assert (IPv4Address(int(row["saddr"])), row["dport"], row["ttl"]) == (IPv4Address(A), 80, 63)
    assert_matches_tshark(path, cap)


def malformed_cases() -> list[tuple[bytes, Reason]]:
    good = bytes(IP(src=A, dst=B) / TCP(sport=1, dport=2))

    def edit(data: bytes, at: int, value: bytes, fix_sum: bool = True) -> bytes:
        data = data[:at] + value + data[at + len(value):]
        if fix_sum:
            hlen = (data[0] & 15) * 4
            data = data[:10] + b"\0\0" + data[12:]
            words = struct.unpack(f"!{hlen // 2}H", data[:hlen])
            total = sum(words)
            while total >> 16:
                total = (total & 0xFFFF) + (total >> 16)
            data = data[:10] + struct.pack("!H", ~total & 0xFFFF) + data[12:]
        return data

    return [
        (edit(good, 0, b"\x65"), Reason.BAD_VERSION),
        (edit(good, 0, b"\x44", fix_sum=False), Reason.BAD_IHL),
        (good[:12], Reason.TRUNCATED_IP_HEADER),
        (edit(good, 2, struct.pack("!H", 100)), Reason.BAD_TOTAL_LENGTH),
        (edit(good, 2, struct.pack("!H", 16)), Reason.BAD_TOTAL_LENGTH),
        (edit(good, 8, b"\x01", fix_sum=False), Reason.BAD_IP_CHECKSUM),
        (bytes(IP(src=A, dst=B, proto=6) / Raw(b"\0" * 10)), Reason.TRUNCATED_L4_HEADER),
        (edit(good, 32, b"\x40"), Reason.BAD_TCP_HEADER_LENGTH),
        (bytes(IP(src=A, dst=B) / UDP(sport=1, dport=2, len=50)), Reason.BAD_UDP_LENGTH),
        (bytes(IP(src=A, dst=B, proto=1) / Raw(b"\x08\x00\x00")), Reason.TRUNCATED_L4_HEADER),
    ]


def test_malformed_packets_are_rows_with_a_reason(tmp_path):
    cases = malformed_cases()
    path = write(tmp_path, "x.pcap", forge.pcap([(T0, d) for d, _ in cases], linktype=228))
    cap = read_capture(path)
    assert [Reason(r) for r in cap.meta["reason"]] == [why for _, why in cases]
    assert cap.reason_counts()["bad IPv4 header checksum"] == 1


def test_a_snap_length_is_not_malformed(tmp_path):
    full = bytes(IP(src=A, dst=B) / TCP(sport=1, dport=2) / Raw(b"x" * 100))
    path = write(tmp_path, "x.pcap", forge.pcap([(T0, full[:54], len(full)),
                                                 (T0, full[:30], len(full))], linktype=228))
    cap = read_capture(path)
    assert list(cap.meta["reason"]) == [Reason.OK, Reason.SNAPPED]
    assert cap.packets["payload_len"][0] == 100 and cap.packets["dport"][0] == 2


def test_cut_files_give_the_packets_before_the_cut_and_a_warning(tmp_path):
    frames = ether(ip_packets())
    whole = forge.pcap([(T0, f) for f in frames])
    cut = len(whole) - 10
    path = write(tmp_path, "cut.pcap", whole[:cut])
    cap = read_capture(path)
    assert len(cap) == 3
    start = len(whole) - 16 - len(frames[-1])
    assert cap.warnings == (f"{path}: file is cut short at byte {start}; read the 3 packets "
                            "before it",)
    ng = forge.shb() + forge.idb() + b"".join(forge.epb(False, 0, i, f)
                                              for i, f in enumerate(frames))
    path = write(tmp_path, "cut.pcapng", ng[:-7])
    cap = read_capture(path)
    assert len(cap) == 3 and "cut short" in cap.warnings[0] and path in cap.warnings[0]
    corrupt = bytearray(ng)
    last = len(ng) - len(forge.epb(False, 0, 3, frames[-1]))
    corrupt[last + 20:last + 24] = b"\xff\xff\x00\x00"           # its caplen, past the block
    path = write(tmp_path, "corrupt.pcapng", bytes(corrupt))
    assert "corrupt" in read_capture(path).warnings[0]
    header_only = write(tmp_path, "h.pcap", whole[:10])
    assert len(read_capture(header_only)) == 0 and read_capture(header_only).warnings


@pytest.mark.parametrize("content,problem", [
    (b"", "empty file"), (b"hello, this is text\n" * 3, "not a pcap or pcapng capture"),
    (b"\x0a\x0d\x0d\x0a" + b"\x00" * 40, "not a pcapng capture"),
])
def test_files_that_are_not_captures_are_input_errors(tmp_path, content, problem):
    path = write(tmp_path, "bad.pcap", content)
    with pytest.raises(InputError) as err:
        read_capture(path)
    assert str(err.value).startswith(f"{path}: ") and problem in str(err.value)


def test_a_missing_file_is_an_input_error(tmp_path):
    with pytest.raises(InputError, match="cannot read capture"):
        read_capture(str(tmp_path / "nope.pcap"))


def test_batch_columns_default_to_none_markers(tmp_path):
    path = write(tmp_path, "x.pcap", forge.pcap([(T0, bytes(p)) for p in ip_packets()],
                                                linktype=101))
    pk = read_capture(path).packets
    assert list(pk["sport"]) == [40000, 53, -1, -1] and list(pk["iif"]) == [-1] * 4
    assert list(pk["icmp_type"]) == [-1, -1, 8, 3] and list(pk["icmp_id"][2:3]) == [0x1234]
    assert np.all(pk["tcp_flags"][1:] == -1)


def test_decoding_into_a_batch_writes_every_field():
    from tracer.capture import headers
    from tracer.dataplane.batch import PACKET_DTYPE

    datagrams = [bytes(p) for p in ip_packets()] + [d for d, _ in malformed_cases()]
    buf = np.frombuffer(b"".join(datagrams) + bytes(64), np.uint8)
    starts = np.cumsum([0] + [len(d) for d in datagrams[:-1]])
    sizes = np.array([len(d) for d in datagrams])
    garbage = np.empty(len(datagrams), PACKET_DTYPE)
    garbage.view(np.uint8)[:] = 0xAB
    headers.parse_ipv4(buf, starts, sizes, sizes, out=garbage)
    fresh = headers.parse_ipv4(buf, starts, sizes, sizes)
    assert garbage.tobytes() == fresh.packets.tobytes()
