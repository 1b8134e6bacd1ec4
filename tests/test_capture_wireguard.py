"""WireGuard on an underlay capture: handshakes followed with a key log, transport data
decrypted, against the project's own framing (which tshark already decrypts) and tshark."""

from __future__ import annotations

from ipaddress import IPv4Address

import pytest
from scapy.layers.inet import IP, TCP

import capture_forge as forge
from capture_tshark import dissect
from tracer.capture import Reason, Tunnel, read_capture
from tracer.capture.wgkeys import parse_keylog
from tracer.encap import WireGuardEncap
from tracer.errors import InputError

T0 = 1_764_000_000 * 10**9
N1, N2 = IPv4Address("172.18.0.11"), IPv4Address("172.18.0.12")


def session():
    enc = WireGuardEncap()
    one, two = enc.endpoint("node-1", N1), enc.endpoint("node-2", N2)
    forward = bytes(IP(src="10.65.0.2", dst="10.65.1.2") / TCP(sport=40000, dport=6379,
                                                               flags="S"))
    reply = bytes(IP(src="10.65.1.2", dst="10.65.0.2") / TCP(sport=6379, dport=40000,
                                                             flags="SA"))
    data = [enc.encapsulate(forward, one, two)]
    data.append(enc.encapsulate(reply, two, one))
    packets = [outer for _, outer in enc.control_packets[:2]] + data
    return enc, one, two, packets, (forward, reply)


def write(tmp_path, packets, name="wg.pcap") -> str:
    path = tmp_path / name
    path.write_bytes(forge.pcap([(T0 + i, p) for i, p in enumerate(packets)], linktype=101))
    return str(path)


@pytest.mark.parametrize("side", ["initiator", "responder"])
def test_transport_data_is_decrypted_with_either_sides_keylog(tmp_path, side):
    enc, one, two, packets, inner = session()
    keys = tmp_path / "wg.keys"
    keys.write_text(enc.keylog_lines(one, two) if side == "initiator"
                    else enc.keylog_lines(two, one))
    path = write(tmp_path, packets)
    cap = read_capture(path, keylog=str(keys))
    assert list(cap.meta["tunnel"]) == [Tunnel.WIREGUARD] * 4
    assert [Reason(r) for r in cap.meta["reason"]] == [Reason.WIREGUARD_HANDSHAKE] * 2 + [
        Reason.OK] * 2
    assert cap.datagram(2) == inner[0] and cap.datagram(3) == inner[1]
    assert list(cap.packets["dport"][2:]) == [6379, 40000]
    assert list(cap.packets["tcp_flags"][2:]) == [0x02, 0x12]
    assert int(cap.meta["outer_saddr"][2]) == int(N1) and cap.meta["outer_dport"][2] == 51820
    # tshark, given the same key log, sees the same inner ports
    frames = dissect(path, f"wg.keylog_file:{keys}")
    assert [f["tcp.dstport"] for f in frames[2:]] == [["6379"], ["40000"]]


def test_without_keys_transport_data_stays_an_outer_row(tmp_path):
    _, _, _, packets, _ = session()
    cap = read_capture(write(tmp_path, packets))
    assert [Reason(r) for r in cap.meta["reason"]] == [Reason.WIREGUARD_HANDSHAKE] * 2 + [
        Reason.WIREGUARD_NO_KEYS] * 2
    assert list(cap.packets["dport"]) == [51820] * 4 and list(cap.packets["protocol"]) == [17] * 4


def test_other_keys_do_not_decrypt(tmp_path):
    enc, one, two, packets, _ = session()
    other = WireGuardEncap(seed=b"another cluster")
    a, b = other.endpoint("node-1", N1), other.endpoint("node-2", N2)
    other.encapsulate(session()[4][0], a, b)
    keys = tmp_path / "k"
    keys.write_text(other.keylog_lines(a, b))
    cap = read_capture(write(tmp_path, packets), keylog=str(keys))
    assert set(cap.meta["reason"][2:]) == {Reason.WIREGUARD_NO_KEYS}


def test_a_tampered_data_message_is_undecryptable(tmp_path):
    enc, one, two, packets, _ = session()
    bad = bytearray(packets[2])
    bad[-1] ^= 1                                   # the Poly1305 tag
    keys = tmp_path / "k"
    keys.write_text(enc.keylog_lines(one, two))
    cap = read_capture(write(tmp_path, packets[:2] + [bytes(bad)]), keylog=str(keys))
    assert cap.meta["reason"][2] == Reason.WIREGUARD_UNDECRYPTABLE


def test_keys_embedded_in_a_pcapng_secrets_block(tmp_path):
    enc, one, two, packets, inner = session()
    blocks = forge.shb() + forge.idb(linktype=101)
    blocks += forge.dsb(False, 0x57474B4C, enc.keylog_lines(one, two).encode())
    blocks += b"".join(forge.epb(False, 0, i, p) for i, p in enumerate(packets))
    path = tmp_path / "wg.pcapng"
    path.write_bytes(blocks)
    cap = read_capture(str(path))
    assert cap.datagram(2) == inner[0]


def test_a_bad_keylog_line_names_file_and_line(tmp_path):
    keys = tmp_path / "bad.keys"
    keys.write_text("LOCAL_STATIC_PRIVATE_KEY = " + "A" * 43 + "=\nNOT A KEY LINE\n")
    with pytest.raises(InputError) as err:
        read_capture(write(tmp_path, session()[3]), keylog=str(keys))
    assert str(err.value).startswith(f"{keys}: line 2: ")
    with pytest.raises(InputError, match="line 1: PRESHARED_KEY: not a base64 32-byte key"):
        parse_keylog("PRESHARED_KEY = abc\n", "k")
