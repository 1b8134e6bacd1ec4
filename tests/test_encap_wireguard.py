"""WireGuard: primitives against published vectors, the handshake between two sessions,
transport both ways, padding, keepalives and every receive-side drop."""

from __future__ import annotations

import hashlib
import hmac
import struct
from ipaddress import IPv4Address, IPv4Network

import pytest
from scapy.all import IP, TCP, UDP, raw

from tracer.encap import noise
from tracer.encap.wireguard import (BAD_AUTH_TAG, BAD_MAC1, REPLAYED_COUNTER,
                                    REPLAYED_INITIATION, UNALLOWED_SRC, UNKNOWN_INDEX,
                                    UNKNOWN_PEER_KEY, ReplayCounter, WireGuardDrop,
                                    WireGuardEncap, WireGuardSession, padded_length)

A_PRIV = hashlib.blake2s(b"test-a").digest()
B_PRIV = hashlib.blake2s(b"test-b").digest()
INNER = raw(IP(src="192.168.10.5", dst="192.168.20.7") / TCP(sport=1234, dport=80))
REPLY = raw(IP(src="192.168.20.7", dst="192.168.10.5") / TCP(sport=80, dport=1234, flags="SA"))


# ---------------------------------------------------------------- known-answer vectors
def test_chacha20poly1305_rfc8439_aead_vector():
    """RFC 8439 §2.8.2; the nonce there is 07000000 || 4041424344454647, i.e. not WireGuard's
    4-zero-byte form, so this drives the cipher directly."""
    from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
    key = bytes(range(0x80, 0xA0))
    nonce = bytes.fromhex("070000004041424344454647")
    aad = bytes.fromhex("50515253c0c1c2c3c4c5c6c7")
    plaintext = (b"Ladies and Gentlemen of the class of '99: If I could offer you only one "
                 b"tip for the future, sunscreen would be it.")
    sealed = ChaCha20Poly1305(key).encrypt(nonce, plaintext, aad)
    assert sealed[:16].hex() == "d31a8d34648e60db7b86afbc53ef7ec2"
    assert sealed[-16:].hex() == "1ae10b594f09e26a7e902ecbd0600691"


def test_wireguard_nonce_layout():
    assert noise.aead_nonce(0x0102030405060708) == bytes(4) + bytes.fromhex("0807060504030201")


def test_blake2s_rfc7693_vector():
    assert noise.blake2s_hash(b"abc").hex() == (
        "508c5e8c327c14e2e1a72ba34eeb452f37458b209ed63a294d999b4c86675982")


def test_hmac_blake2s_matches_stdlib_hmac():
    key, msg = b"k" * 32, b"the message"
    assert noise.hmac_blake2s(key, msg) == hmac.new(key, msg, hashlib.blake2s).digest()


def test_x25519_rfc7748_vector():
    alice = bytes.fromhex("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a")
    assert noise.public_key(alice).hex() == (
        "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a")


def test_initial_chaining_key_and_hash_follow_the_paper():
    ck, h = noise.initial_chain()
    assert ck == hashlib.blake2s(b"Noise_IKpsk2_25519_ChaChaPoly_BLAKE2s").digest()
    assert h == hashlib.blake2s(ck + b"WireGuard v1 zx2c4 Jason@zx2c4.com").digest()


def test_tai64n_rounds_nanoseconds_like_the_kernel():
    stamp = noise.tai64n(1000.123456789)
    sec, nsec = struct.unpack(">QI", stamp)
    assert sec == 0x400000000000000A + 1000
    assert nsec % (1 << 24) == 0 and 123456789 - (1 << 24) < nsec <= 123456789


# -------------------------------------------------------------------------- sessions
def paired_sessions(seed: bytes = b"s") -> tuple[WireGuardSession, WireGuardSession]:
    a = WireGuardSession(A_PRIV, noise.public_key(B_PRIV), seed=seed)
    b = WireGuardSession(B_PRIV, noise.public_key(A_PRIV), seed=seed)
    initiation = a.create_initiation(now=1_000.0)
    b.consume_initiation(initiation, now=1_000.0)
    a.consume_response(b.create_response())
    return a, b


def test_handshake_message_layout():
    a = WireGuardSession(A_PRIV, noise.public_key(B_PRIV))
    b = WireGuardSession(B_PRIV, noise.public_key(A_PRIV))
    initiation = a.create_initiation(now=5.0)
    assert len(initiation) == 148 and initiation[:4] == b"\x01\x00\x00\x00"
    assert initiation[-16:] == bytes(16)                       # mac2: no cookie
    b.consume_initiation(initiation, now=5.0)
    response = b.create_response()
    assert len(response) == 92 and response[:4] == b"\x02\x00\x00\x00"
    assert response[8:12] == initiation[4:8]                  # receiver = initiator's sender


def test_transport_both_directions_and_counters():
    a, b = paired_sessions()
    first = a.encrypt(INNER)
    assert first[:4] == b"\x04\x00\x00\x00"
    assert struct.unpack("<I", first[4:8])[0] == b.keypair.local_index
    assert struct.unpack("<Q", first[8:16])[0] == 0
    plain, counter = b.decrypt(first)
    assert plain[:len(INNER)] == INNER and counter == 0
    assert b.can_send                                         # confirmed by the first data
    second = a.encrypt(INNER)
    assert struct.unpack("<Q", second[8:16])[0] == 1
    back = b.encrypt(REPLY)
    assert a.decrypt(back)[0][:len(REPLY)] == REPLY


def test_sessions_are_deterministic_for_a_seed():
    a1, _ = paired_sessions(b"same")
    a2, _ = paired_sessions(b"same")
    a3, _ = paired_sessions(b"other")
    assert a1.encrypt(INNER) == a2.encrypt(INNER)
    assert a1.keypair.sending_key != a3.keypair.sending_key


def test_responder_keys_wait_for_confirmation():
    a, b = paired_sessions()
    assert a.can_send and not b.can_send


def test_replayed_counter_is_rejected():
    a, b = paired_sessions()
    msg = a.encrypt(INNER)
    b.decrypt(msg)
    with pytest.raises(WireGuardDrop, match=REPLAYED_COUNTER):
        b.decrypt(msg)


def test_out_of_order_inside_window_is_accepted():
    a, b = paired_sessions()
    msgs = [a.encrypt(INNER) for _ in range(5)]
    for i in (4, 0, 2, 1, 3):
        assert b.decrypt(msgs[i])[1] == i


def test_bad_tag_is_rejected_before_the_replay_window_moves():
    a, b = paired_sessions()
    msg = bytearray(a.encrypt(INNER))
    msg[-1] ^= 0xFF
    with pytest.raises(WireGuardDrop, match=BAD_AUTH_TAG):
        b.decrypt(bytes(msg))
    msg[-1] ^= 0xFF
    assert b.decrypt(bytes(msg))[1] == 0                     # the forged copy used nothing up


def test_unknown_receiver_index():
    a, b = paired_sessions()
    msg = bytearray(a.encrypt(INNER))
    msg[4:8] = struct.pack("<I", b.keypair.local_index ^ 1)
    with pytest.raises(WireGuardDrop, match=UNKNOWN_INDEX):
        b.decrypt(bytes(msg))


def test_initiation_replay_and_wrong_peer():
    a = WireGuardSession(A_PRIV, noise.public_key(B_PRIV))
    b = WireGuardSession(B_PRIV, noise.public_key(A_PRIV))
    initiation = a.create_initiation(now=10.0)
    b.consume_initiation(initiation, now=10.0)
    with pytest.raises(WireGuardDrop, match="replayed handshake initiation"):
        b.consume_initiation(initiation, now=11.0)
    assert REPLAYED_INITIATION.startswith("replayed handshake initiation")
    stranger = WireGuardSession(hashlib.blake2s(b"x").digest(), noise.public_key(B_PRIV))
    with pytest.raises(WireGuardDrop, match=UNKNOWN_PEER_KEY):
        b.consume_initiation(stranger.create_initiation(now=12.0), now=12.0)


def test_initiation_with_bad_mac1_is_dropped():
    a = WireGuardSession(A_PRIV, noise.public_key(B_PRIV))
    b = WireGuardSession(B_PRIV, noise.public_key(A_PRIV))
    initiation = bytearray(a.create_initiation(now=10.0))
    initiation[120] ^= 1
    with pytest.raises(WireGuardDrop, match=BAD_MAC1):
        b.consume_initiation(bytes(initiation), now=10.0)


@pytest.mark.parametrize("length,mtu,expected", [
    (0, 1440, 0), (1, 1440, 16), (40, 1440, 48), (48, 1440, 48), (1435, 1440, 1440),
    (1440, 1440, 1440), (1500, 1440, 1504), (33, 0, 48),
])
def test_padding_like_calculate_skb_padding(length, mtu, expected):
    assert padded_length(length, mtu) == expected


def test_keepalive_is_32_bytes_and_delivers_nothing():
    a, b = paired_sessions()
    keepalive = a.encrypt(b"")
    assert len(keepalive) == 32
    assert b.decrypt(keepalive)[0] == b""


def test_replay_counter_window_edges():
    rc = ReplayCounter()
    assert rc.validate(10_000)
    assert not rc.validate(10_000 - 8128 - 1)                # fell out of the window
    assert rc.validate(10_000 - 100)
    assert not rc.validate(10_000 - 100)


def test_keylog_lines_format():
    a, _ = paired_sessions()
    lines = a.keylog_lines().splitlines()
    kinds = [line.split(" = ")[0] for line in lines]
    assert kinds == ["LOCAL_STATIC_PRIVATE_KEY", "REMOTE_STATIC_PUBLIC_KEY",
                     "LOCAL_EPHEMERAL_PRIVATE_KEY", "PRESHARED_KEY"]
    assert all(len(line.split(" = ")[1]) == 44 for line in lines)


# ---------------------------------------------------------------- as an encapsulation
A_IP, B_IP = IPv4Address("10.0.0.1"), IPv4Address("10.0.0.2")


def test_encap_runs_handshake_once_and_records_control_packets():
    wg = WireGuardEncap()
    a, b = wg.endpoint("node-a", A_IP), wg.endpoint("node-b", B_IP)
    wg.encapsulate(INNER, a, b)
    wg.encapsulate(INNER, a, b)
    assert [what for what, _ in wg.control_packets] == ["handshake initiation",
                                                        "handshake response"]
    initiation = wg.control_packets[0][1]
    assert initiation[1] == 0x88                              # HANDSHAKE_DSCP on the outer TOS


def test_reverse_direction_before_confirmation_sends_a_keepalive_first():
    wg = WireGuardEncap()
    a, b = wg.endpoint("node-a", A_IP), wg.endpoint("node-b", B_IP)
    wg.encapsulate(INNER, a, b)                               # never decapsulated at b
    outer = wg.encapsulate(REPLY, b, a)
    assert wg.control_packets[-1][0] == "keepalive"
    assert wg.decapsulate(outer, a, [b]).inner == REPLY


def test_encap_drops_from_removed_peer_and_replays():
    wg = WireGuardEncap()
    a, b = wg.endpoint("node-a", A_IP), wg.endpoint("node-b", B_IP)
    outer = wg.encapsulate(INNER, a, b)
    assert wg.decapsulate(outer, b, []).drop_reason == UNKNOWN_PEER_KEY
    assert wg.decapsulate(outer, b, [a]).ok
    assert wg.decapsulate(outer, b, [a]).drop_reason == REPLAYED_COUNTER


def test_encap_allowed_ips_source_check():
    wg = WireGuardEncap()
    a = wg.endpoint("node-a", A_IP, wg_allowed_ips=(IPv4Network("192.168.99.0/26"),))
    b = wg.endpoint("node-b", B_IP)
    outer = wg.encapsulate(INNER, a, b)
    assert wg.decapsulate(outer, b, [a]).drop_reason == UNALLOWED_SRC


def test_encap_outer_fields_like_socket_send4():
    wg = WireGuardEncap()
    a, b = wg.endpoint("node-a", A_IP), wg.endpoint("node-b", B_IP)
    inner = raw(IP(src="192.168.10.5", dst="192.168.20.7", tos=0xB9, flags="DF", ttl=9)
                / UDP(sport=1, dport=2))
    outer = wg.encapsulate(inner, a, b)
    assert outer[1] == 0x01                                   # only the inner ECN bits
    assert outer[6] & 0x40 == 0 and outer[8] == 64            # DF clear, TTL 64
    assert outer[20:24] == struct.pack("!HH", 51820, 51820)
    assert outer[26:28] != b"\x00\x00"                        # UDP checksum computed
