"""WireGuard as Calico's ``wireguard.cali`` puts it on the wire (60 bytes overhead for IPv4).

Framing follows drivers/net/wireguard: message types 1-4 with little-endian headers
(messages.h); handshake messages carry mac1 = MAC(HASH("mac1----" || receiver's static
public), message up to mac1) and a zero mac2 (no cookie under normal load, cookie.c);
transport data is type 4, receiver index, LE64 counter, then ChaCha20-Poly1305 over the inner
packet zero-padded to a multiple of 16 but never past the device MTU (send.c
``calculate_skb_padding``), with empty AAD. The UDP socket sends with a computed UDP
checksum, DF clear, TTL 64, TOS = inner ECN bits for data and 0x88 (AF41) for handshakes
(socket.c ``send4``). Receiving follows receive.c: decrypt, then the RFC 6479 replay window,
then the inner packet's size and AllowedIPs source check.

Calico specifics: interface ``wireguard.cali``, listen port 51820 (felix
``WireguardListeningPort``), no preshared key, MTU = host MTU - 60.
"""

from __future__ import annotations

import base64
import hashlib
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from ipaddress import IPv4Address

from tracer.encap import ipv4, noise
from tracer.encap.base import DecapResult, OuterFields, TunnelEndpoint, TunnelTemplate
from tracer.errors import InputError
from tracer.protocols import WIREGUARD_DEFAULT_PORT

WG_OVERHEAD = 60                   # 20 IPv4 + 8 UDP + 16 data header + 16 Poly1305 tag
WG_MTU = 1440                      # felix default for a 1500-byte host
MSG_INITIATION, MSG_RESPONSE, MSG_COOKIE, MSG_DATA = 1, 2, 3, 4
INITIATION_LEN = 148
RESPONSE_LEN = 92
COOKIE_LEN = 64
DATA_HEADER_LEN = 16
PADDING_MULTIPLE = 16
HANDSHAKE_DSCP = 0x88
BITS_PER_LONG = 64
COUNTER_BITS_TOTAL = 8192
COUNTER_WINDOW_SIZE = COUNTER_BITS_TOTAL - BITS_PER_LONG
REJECT_AFTER_MESSAGES = (1 << 64) - 1 - COUNTER_WINDOW_SIZE - 1
INITIATION_MIN_INTERVAL = 1 / 50   # INITIATIONS_PER_SECOND

# Drop reasons (receive.c / noise.c paths that end in a drop)
UNKNOWN_PEER_KEY = "unknown peer key"
BAD_AUTH_TAG = "bad auth tag"
REPLAYED_COUNTER = "replayed counter"
UNKNOWN_INDEX = "unknown receiver index"
BAD_MAC1 = "invalid handshake MAC"
REPLAYED_INITIATION = "replayed handshake initiation (timestamp not newer)"
FLOODED_INITIATION = "handshake initiation flood (under 20 ms since the last)"
UNALLOWED_SRC = "inner source IP not in the peer's AllowedIPs"
DISHONEST_SIZE = "inner packet has incorrect size"
NOT_IP = "inner packet is neither IPv4 nor IPv6"


def b64(key: bytes) -> str:
    return base64.b64encode(key).decode()


def padded_length(length: int, mtu: int) -> int:
    """Plaintext length after send.c ``calculate_skb_padding``."""
    if not mtu:
        return -(-length // PADDING_MULTIPLE) * PADDING_MULTIPLE
    last_unit = length % mtu if length > mtu else length
    padded = min(mtu, -(-last_unit // PADDING_MULTIPLE) * PADDING_MULTIPLE)
    return length + padded - last_unit


class ReplayCounter:
    """receive.c ``counter_validate``: RFC 6479 bitmap of 8192 bits in 64-bit words."""

    def __init__(self) -> None:
        self.counter = 0                   # highest accepted counter + 1
        self.backtrack = [0] * (COUNTER_BITS_TOTAL // BITS_PER_LONG)

    def validate(self, their_counter: int) -> bool:
        if self.counter >= REJECT_AFTER_MESSAGES + 1 or their_counter >= REJECT_AFTER_MESSAGES:
            return False
        their_counter += 1
        if COUNTER_WINDOW_SIZE + their_counter < self.counter:
            return False
        words = len(self.backtrack)
        index = their_counter >> 6
        if their_counter > self.counter:
            index_current = self.counter >> 6
            for i in range(1, min(index - index_current, words) + 1):
                self.backtrack[(i + index_current) & (words - 1)] = 0
            self.counter = their_counter
        index &= words - 1
        bit = 1 << (their_counter & (BITS_PER_LONG - 1))
        if self.backtrack[index] & bit:
            return False
        self.backtrack[index] |= bit
        return True


@dataclass
class Keypair:
    """One session's transport keys (noise_keypair)."""

    sending_key: bytes
    receiving_key: bytes
    local_index: int
    remote_index: int
    initiator: bool
    confirmed: bool                    # responder keys are 'next' until the first data arrives
    sending_counter: int = 0
    replay: ReplayCounter | None = None

    def __post_init__(self) -> None:
        self.replay = self.replay or ReplayCounter()


class WireGuardDrop(Exception):
    """A message the receiver drops; ``str()`` is the reason."""


class WireGuardSession:
    """One node's state for one peer (the kernel's wg_peer): handshake, keypair, counters.

    Deterministic: ephemeral secrets and sender indices derive from ``seed`` and a per-session
    handshake count, timestamps from the ``now`` the caller passes.
    """

    def __init__(self, local_private: bytes, remote_public: bytes, *,
                 preshared_key: bytes = bytes(32), seed: bytes = b"calico-trace",
                 mtu: int = WG_MTU):
        self.local_private = local_private
        self.local_public = noise.public_key(local_private)
        self.remote_public = remote_public
        self.preshared_key = preshared_key
        self.seed = seed
        self.mtu = mtu
        self.keypair: Keypair | None = None
        self.previous: Keypair | None = None
        self._handshake: noise.Handshake | None = None
        self._handshake_index = 0
        self._remote_handshake_index = 0
        self._handshakes = 0
        self._latest_timestamp = bytes(noise.TIMESTAMP_LEN)
        self._last_initiation_consumed: float | None = None
        self._keylog: list[tuple[str, bytes]] = []

    # ------------------------------------------------------------ deterministic secrets
    def _derive(self, label: bytes, size: int = 32) -> bytes:
        return hashlib.blake2s(b"|".join([self.seed, label, self.local_public,
                                          self.remote_public, str(self._handshakes).encode()]),
                               digest_size=size).digest()

    def _next_ephemeral(self) -> bytes:
        self._handshakes += 1
        return self._derive(b"ephemeral")

    def _new_index(self) -> int:
        return int.from_bytes(self._derive(b"index", 4), "little")

    # ---------------------------------------------------------------------- handshake
    def create_initiation(self, now: float) -> bytes:
        ephemeral = self._next_ephemeral()
        hs, body = noise.create_initiation(self.local_private, self.remote_public, ephemeral,
                                           noise.tai64n(now))
        self._handshake = hs
        self._handshake_index = self._new_index()
        self._record_keylog(ephemeral)
        msg = struct.pack("<II", MSG_INITIATION, self._handshake_index) + body.ephemeral \
            + body.encrypted_static + body.encrypted_timestamp
        return add_macs(msg, self.remote_public)

    def consume_initiation(self, message: bytes, now: float) -> None:
        """Responder side for a known pairing; raises WireGuardDrop with the reason."""
        hs, initiator, timestamp, sender = open_initiation(self.local_private, message)
        if initiator != self.remote_public:
            raise WireGuardDrop(UNKNOWN_PEER_KEY)
        self.accept_initiation(hs, timestamp, sender, now)

    def accept_initiation(self, hs: noise.Handshake, timestamp: bytes, sender_index: int,
                          now: float) -> None:
        """noise.c: the timestamp must be newer than the last one and initiations at most
        50 per second, else the initiation is ignored."""
        if timestamp <= self._latest_timestamp:
            raise WireGuardDrop(REPLAYED_INITIATION)
        last = self._last_initiation_consumed
        if last is not None and now - last < INITIATION_MIN_INTERVAL:
            raise WireGuardDrop(FLOODED_INITIATION)
        self._latest_timestamp = timestamp
        self._last_initiation_consumed = now
        self._handshake = hs
        self._remote_handshake_index = sender_index

    def create_response(self) -> bytes:
        if self._handshake is None or not self._handshake.remote_ephemeral:
            raise WireGuardDrop("no initiation consumed")
        ephemeral = self._next_ephemeral()
        hs = self._handshake
        e_pub, sealed = noise.create_response(hs, ephemeral, self.preshared_key)
        index = self._new_index()
        self._record_keylog(ephemeral)
        msg = struct.pack("<III", MSG_RESPONSE, index, self._remote_handshake_index) \
            + e_pub + sealed
        recv_key, send_key = hs.transport_keys()
        self._install(Keypair(send_key, recv_key, index, self._remote_handshake_index,
                              initiator=False, confirmed=False))
        return add_macs(msg, self.remote_public)

    def consume_response(self, message: bytes) -> None:
        if len(message) != RESPONSE_LEN or message[0] != MSG_RESPONSE:
            raise WireGuardDrop("not a handshake response")
        check_mac1(message, self.local_public)
        sender, receiver = struct.unpack("<II", message[4:12])
        if self._handshake is None or receiver != self._handshake_index:
            raise WireGuardDrop(UNKNOWN_INDEX)
        hs = self._handshake
        try:
            noise.consume_response(hs, self.local_private, message[12:44], message[44:60],
                                   self.preshared_key)
        except noise.HandshakeError as err:
            raise WireGuardDrop(f"invalid handshake response: {err}") from None
        send_key, recv_key = hs.transport_keys()
        self._install(Keypair(send_key, recv_key, self._handshake_index, sender,
                              initiator=True, confirmed=True))

    def _install(self, keypair: Keypair) -> None:
        self.previous, self.keypair = self.keypair, keypair
        self._handshake = None

    # ---------------------------------------------------------------------- transport
    @property
    def can_send(self) -> bool:
        return self.keypair is not None and self.keypair.confirmed

    def encrypt(self, inner: bytes) -> bytes:
        """A type-4 message; ``inner`` empty is a keepalive."""
        kp = self.keypair
        if kp is None:
            raise WireGuardDrop("no session keys (handshake first)")
        counter = kp.sending_counter
        kp.sending_counter += 1
        plain = inner.ljust(padded_length(len(inner), self.mtu), b"\x00")
        header = struct.pack("<IIQ", MSG_DATA, kp.remote_index, counter)
        return header + noise.aead_encrypt(kp.sending_key, counter, plain, b"")

    def decrypt(self, message: bytes) -> tuple[bytes, int]:
        """(padded plaintext, counter); raises WireGuardDrop with the kernel's reason."""
        if len(message) < DATA_HEADER_LEN + noise.TAG_LEN or message[0] != MSG_DATA:
            raise WireGuardDrop("not a transport data message")
        _, index, counter = struct.unpack("<IIQ", message[:DATA_HEADER_LEN])
        kp = self._keypair_for(index)
        plain = noise.aead_decrypt(kp.receiving_key, counter, message[DATA_HEADER_LEN:], b"")
        if plain is None:
            raise WireGuardDrop(BAD_AUTH_TAG)
        assert kp.replay is not None
        if not kp.replay.validate(counter):
            raise WireGuardDrop(REPLAYED_COUNTER)
        kp.confirmed = True                  # wg_noise_received_with_keypair
        return plain, counter

    def _keypair_for(self, index: int) -> Keypair:
        for kp in (self.keypair, self.previous):
            if kp is not None and kp.local_index == index:
                return kp
        raise WireGuardDrop(UNKNOWN_INDEX)

    def owns_index(self, index: int) -> bool:
        indices = {kp.local_index for kp in (self.keypair, self.previous) if kp}
        return index in indices or (self._handshake is not None
                                    and index == self._handshake_index)

    # ------------------------------------------------------------------------- keylog
    def _record_keylog(self, ephemeral: bytes) -> None:
        self._keylog.append(("LOCAL_EPHEMERAL_PRIVATE_KEY", ephemeral))

    def keylog_lines(self) -> str:
        """Wireshark's WireGuard key log (wg.keylog_file): ``KEY_TYPE = base64`` lines, the
        format of wireguard's extract-handshakes.sh. Static keys first, then each handshake's
        ephemeral private key followed by the preshared key that belongs to it."""
        lines = [f"LOCAL_STATIC_PRIVATE_KEY = {b64(self.local_private)}",
                 f"REMOTE_STATIC_PUBLIC_KEY = {b64(self.remote_public)}"]
        for kind, key in self._keylog:
            lines.append(f"{kind} = {b64(key)}")
            lines.append(f"PRESHARED_KEY = {b64(self.preshared_key)}")
        return "\n".join(lines) + "\n"


def add_macs(message: bytes, receiver_public: bytes) -> bytes:
    mac1_key = noise.blake2s_hash(noise.LABEL_MAC1, receiver_public)
    return message + noise.mac(mac1_key, message) + bytes(16)


def check_mac1(message: bytes, own_public: bytes) -> None:
    mac1_key = noise.blake2s_hash(noise.LABEL_MAC1, own_public)
    if noise.mac(mac1_key, message[:-32]) != message[-32:-16]:
        raise WireGuardDrop(BAD_MAC1)


def open_initiation(static_private: bytes, message: bytes
                    ) -> tuple[noise.Handshake, bytes, bytes, int]:
    """Verify mac1 and open a type-1 message: (state, initiator static, timestamp, sender)."""
    if len(message) != INITIATION_LEN or message[0] != MSG_INITIATION:
        raise WireGuardDrop("not a handshake initiation")
    check_mac1(message, noise.public_key(static_private))
    (sender,) = struct.unpack("<I", message[4:8])
    body = noise.InitiationBody(message[8:40], message[40:88], message[88:116])
    try:
        hs, initiator, timestamp = noise.consume_initiation(static_private, body)
    except noise.HandshakeError as err:
        raise WireGuardDrop(f"invalid handshake initiation: {err}") from None
    return hs, initiator, timestamp, sender


class WireGuardDevice:
    """One node's ``wireguard.cali``: static identity, peers by public key, index lookup."""

    def __init__(self, node: str, private_key: bytes, *, seed: bytes, mtu: int,
                 preshared_key: bytes):
        self.node = node
        self.private_key = private_key
        self.public_key = noise.public_key(private_key)
        self.seed = seed
        self.mtu = mtu
        self.preshared_key = preshared_key
        self.peers: dict[bytes, WireGuardSession] = {}

    def peer(self, remote_public: bytes) -> WireGuardSession:
        if remote_public not in self.peers:
            self.peers[remote_public] = WireGuardSession(
                self.private_key, remote_public, preshared_key=self.preshared_key,
                seed=self.seed + b"|" + self.node.encode(), mtu=self.mtu)
        return self.peers[remote_public]

    def session_for_index(self, index: int) -> WireGuardSession | None:
        return next((s for s in self.peers.values() if s.owns_index(index)), None)


class WireGuardEncap(TunnelTemplate):
    """WireGuard between Calico nodes, with simulated (deterministic) keys per node.

    A node's private key comes from ``private_keys`` or is derived from ``seed`` and the node
    name; an endpoint's ``wg_public_key``, when set, must match it. Handshakes run in memory
    the first time two nodes talk; their outer packets (and keepalives) are kept in
    ``control_packets`` so a trace or pcap can show them.
    """

    name = "wireguard"
    overhead = WG_OVERHEAD
    ip_protocol = ipv4.PROTO_UDP

    def __init__(self, *, private_keys: Mapping[str, bytes] | None = None,
                 seed: bytes = b"calico-trace", mtu: int = WG_MTU,
                 port: int = WIREGUARD_DEFAULT_PORT,
                 preshared_key: bytes = bytes(32), start_time: float = 1_700_000_000.0):
        self.private_keys = dict(private_keys or {})
        self.seed = seed
        self.mtu = mtu
        self.port = port
        self.preshared_key = preshared_key
        self.now = start_time
        self.devices: dict[str, WireGuardDevice] = {}
        self.control_packets: list[tuple[str, bytes]] = []

    # ------------------------------------------------------------------------ keys
    def private_key(self, node: str) -> bytes:
        return self.private_keys.get(node) or hashlib.blake2s(
            self.seed + b"|static|" + node.encode()).digest()

    def public_key(self, node: str) -> bytes:
        return noise.public_key(self.private_key(node))

    def endpoint(self, node: str, underlay_ip: IPv4Address, **extra) -> TunnelEndpoint:
        return TunnelEndpoint(node, underlay_ip, wg_public_key=self.public_key(node), **extra)

    def key_of(self, ep: TunnelEndpoint) -> bytes:
        ours = self.public_key(ep.node)
        if ep.wg_public_key is not None and ep.wg_public_key != ours:
            raise InputError("WireGuard public key does not match the private key the "
                             "simulator holds (pass private_keys=...)", obj=f"node {ep.node}")
        return ours

    def device(self, ep: TunnelEndpoint) -> WireGuardDevice:
        if ep.node not in self.devices:
            self.devices[ep.node] = WireGuardDevice(
                ep.node, self.private_key(ep.node), seed=self.seed, mtu=self.mtu,
                preshared_key=self.preshared_key)
        return self.devices[ep.node]

    # ---------------------------------------------------------------------- sending
    def _wrap(self, inner: bytes, src: TunnelEndpoint, dst: TunnelEndpoint, **pins: int) -> bytes:
        session = self.session(src, dst)
        return ipv4.build_udp(src.underlay_ip, dst.underlay_ip, self.port, self.port,
                              session.encrypt(inner))

    def _outer_fields(self, inner: ipv4.IPv4Header) -> OuterFields:
        # send.c: ds = ip_tunnel_ecn_encap(0, ip_hdr(skb), skb); socket.c: df 0, ttl hoplimit.
        return OuterFields(tos=ipv4.ecn_encapsulate(0, inner.tos), ttl=ipv4.DEFAULT_TTL,
                           df=False)

    def session(self, src: TunnelEndpoint, dst: TunnelEndpoint) -> WireGuardSession:
        """src's session toward dst, running the handshake first when there are no keys."""
        mine = self.device(src).peer(self.key_of(dst))
        theirs = self.device(dst).peer(self.key_of(src))
        if mine.keypair is None:
            self._handshake(src, dst, mine, theirs)
        elif not mine.can_send:
            # The responder may not send before the initiator's first data packet
            # confirms the keys; the initiator sends a keepalive when it has nothing queued.
            keepalive = theirs.encrypt(b"")
            self._control(dst, src, keepalive, 0, "keepalive")
            mine.decrypt(keepalive)
        return mine

    def _handshake(self, src: TunnelEndpoint, dst: TunnelEndpoint,
                   mine: WireGuardSession, theirs: WireGuardSession) -> None:
        self.now += 1.0
        initiation = mine.create_initiation(self.now)
        self._control(src, dst, initiation, HANDSHAKE_DSCP, "handshake initiation")
        theirs.consume_initiation(initiation, self.now)
        response = theirs.create_response()
        self._control(dst, src, response, HANDSHAKE_DSCP, "handshake response")
        mine.consume_response(response)

    def _control(self, src: TunnelEndpoint, dst: TunnelEndpoint, message: bytes, tos: int,
                 what: str) -> None:
        self.control_packets.append((what, self.outer_packet(src, dst, message, tos)))

    def outer_packet(self, src: TunnelEndpoint, dst: TunnelEndpoint, message: bytes,
                     tos: int = 0) -> bytes:
        """IPv4 + UDP around a WireGuard message, as socket.c ``send4`` emits it."""
        udp = ipv4.build_udp(src.underlay_ip, dst.underlay_ip, self.port, self.port, message)
        ident = ipv4.flow_ident(src.underlay_ip.packed, dst.underlay_ip.packed, message[:16])
        return ipv4.build_header(src.underlay_ip, dst.underlay_ip, ipv4.PROTO_UDP, len(udp),
                                 tos=tos, ident=ident) + udp

    def keylog_lines(self, src: TunnelEndpoint, dst: TunnelEndpoint) -> str:
        return self.device(src).peer(self.key_of(dst)).keylog_lines()

    # -------------------------------------------------------------------- receiving
    def _unwrap(self, hdr: ipv4.IPv4Header, payload: bytes, receiver: TunnelEndpoint,
                peers: list[TunnelEndpoint]) -> DecapResult:
        _, dport, length, _, message = ipv4.parse_udp(payload)
        if dport != self.port:
            return DecapResult.drop(f"not WireGuard (UDP port {dport})")
        if not ipv4.udp_checksum_ok(hdr.src, hdr.dst, payload[:length]):
            return DecapResult.drop("bad outer UDP checksum")
        known = {self.key_of(p): p for p in peers}
        try:
            return self._receive(hdr, message, self.device(receiver), known)
        except WireGuardDrop as drop:
            return DecapResult.drop(str(drop))

    def _receive(self, hdr: ipv4.IPv4Header, message: bytes, dev: WireGuardDevice,
                 known: dict[bytes, TunnelEndpoint]) -> DecapResult:
        if len(message) < 4 or message[1:4] != b"\x00\x00\x00" or not 1 <= message[0] <= 4:
            return DecapResult.drop("not a WireGuard message")
        if message[0] == MSG_INITIATION:
            return self._receive_initiation(message, dev, known)
        if message[0] == MSG_RESPONSE:
            return self._receive_response(message, dev, known)
        if message[0] == MSG_COOKIE:
            return DecapResult(inner=None, info=(("message", "cookie reply (not modelled)"),))
        return self._receive_data(hdr, message, dev, known)

    def _receive_initiation(self, message: bytes, dev: WireGuardDevice,
                            known: dict[bytes, TunnelEndpoint]) -> DecapResult:
        hs, initiator, timestamp, sender = open_initiation(dev.private_key, message)
        if initiator not in known:
            return DecapResult.drop(UNKNOWN_PEER_KEY)
        self.now += 1.0
        dev.peer(initiator).accept_initiation(hs, timestamp, sender, self.now)
        return DecapResult(inner=None, peer=known[initiator].node,
                           info=(("message", "handshake initiation"),))

    def _receive_response(self, message: bytes, dev: WireGuardDevice,
                          known: dict[bytes, TunnelEndpoint]) -> DecapResult:
        (receiver_index,) = struct.unpack("<I", message[8:12])
        session = dev.session_for_index(receiver_index)
        if session is None:
            return DecapResult.drop(UNKNOWN_INDEX)
        if session.remote_public not in known:
            return DecapResult.drop(UNKNOWN_PEER_KEY)
        session.consume_response(message)
        return DecapResult(inner=None, peer=known[session.remote_public].node,
                           info=(("message", "handshake response"),))

    def _receive_data(self, hdr: ipv4.IPv4Header, message: bytes, dev: WireGuardDevice,
                      known: dict[bytes, TunnelEndpoint]) -> DecapResult:
        if len(message) < DATA_HEADER_LEN + noise.TAG_LEN:
            return DecapResult.drop("truncated transport data message")
        _, index, counter = struct.unpack("<IIQ", message[:DATA_HEADER_LEN])
        session = dev.session_for_index(index)
        if session is None:
            return DecapResult.drop(UNKNOWN_INDEX)
        peer = known.get(session.remote_public)
        if peer is None:                        # felix removed the peer: keys are gone too
            return DecapResult.drop(UNKNOWN_PEER_KEY)
        info = (("receiver_index", str(index)), ("counter", str(counter)))
        try:
            plain, _ = session.decrypt(message)
        except WireGuardDrop as drop:
            return DecapResult.drop(str(drop), peer.node, info)
        if not plain:
            return DecapResult(inner=b"", peer=peer.node, info=info + (("message", "keepalive"),))
        return self._deliver(hdr, plain, peer, info)

    @staticmethod
    def _deliver(hdr: ipv4.IPv4Header, plain: bytes, peer: TunnelEndpoint,
                 info: tuple[tuple[str, str], ...]) -> DecapResult:
        """receive.c ``wg_packet_consume_data_done``: size, type and AllowedIPs checks."""
        if plain[0] >> 4 != 4 or len(plain) < ipv4.IPV4_HLEN:
            return DecapResult.drop(NOT_IP, peer.node, info)
        (total,) = struct.unpack("!H", plain[2:4])
        if total < ipv4.IPV4_HLEN or total > len(plain):
            return DecapResult.drop(DISHONEST_SIZE, peer.node, info)
        inner = ipv4.ecn_decapsulate(hdr.tos, plain[:total])
        if inner is None:
            return DecapResult.drop("outer ECN CE over a Not-ECT inner packet", peer.node, info)
        src = IPv4Address(inner[12:16])
        if peer.wg_allowed_ips and not any(src in net for net in peer.wg_allowed_ips):
            return DecapResult.drop(UNALLOWED_SRC, peer.node, info)
        return DecapResult(inner=inner, peer=peer.node, info=info)

