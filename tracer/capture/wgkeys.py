"""WireGuard on an underlay capture: follow the handshakes with a key log, decrypt transport data.

Key log format: Wireshark's ``wg.keylog_file`` (the output of wireguard's
``contrib/extract-handshakes``): ``KEY_TYPE = base64`` lines with ``LOCAL_STATIC_PRIVATE_KEY``,
``REMOTE_STATIC_PUBLIC_KEY``, ``LOCAL_EPHEMERAL_PRIVATE_KEY`` and ``PRESHARED_KEY``; the same
text may sit in a pcapng Decryption Secrets Block of type ``WGKL``.

As Wireshark's dissector does, a handshake is opened from either side: the responder's
static public key is the one whose mac1 verifies (``MAC(HASH("mac1----" || S_r), msg)``);
with the responder's static private key the initiation opens directly, with the
initiator's ephemeral and static private keys it is replayed. The response then needs the
initiator's ephemeral and static private keys or the responder's ephemeral one, and a
preshared key from the log (or none). Transport keys come from ``KDF2(C, ε)`` exactly as in
:mod:`tracer.encap.noise`, whose primitives this reuses; data messages are looked up by
receiver index and opened with ChaCha20-Poly1305 at their counter. Replay windows are not
applied: a capture shows what was on the wire, and the receiving node's drop of a replay is
not a header fact.
"""

from __future__ import annotations

import base64
import binascii
import copy
import struct
from dataclasses import dataclass, field

from tracer.capture.columns import Reason
from tracer.encap import noise
from tracer.encap.wireguard import (DATA_HEADER_LEN, INITIATION_LEN, MSG_COOKIE, MSG_DATA,
                                    MSG_INITIATION, MSG_RESPONSE, RESPONSE_LEN)
from tracer.errors import InputError

KEY_TYPES = ("LOCAL_STATIC_PRIVATE_KEY", "REMOTE_STATIC_PUBLIC_KEY",
             "LOCAL_EPHEMERAL_PRIVATE_KEY", "PRESHARED_KEY")


@dataclass
class KeyLog:
    static_private: list[bytes] = field(default_factory=list)
    remote_public: list[bytes] = field(default_factory=list)
    ephemeral_private: list[bytes] = field(default_factory=list)
    preshared: list[bytes] = field(default_factory=list)

    def merge(self, other: KeyLog) -> None:
        for name in ("static_private", "remote_public", "ephemeral_private", "preshared"):
            getattr(self, name).extend(getattr(other, name))


def parse_keylog(text: str, source: str) -> KeyLog:
    """Parse key log text; a bad line is an InputError naming ``source`` and the line."""
    log = KeyLog()
    slots = dict(zip(KEY_TYPES, (log.static_private, log.remote_public,
                                 log.ephemeral_private, log.preshared)))
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, value = (part.strip() for part in line.partition("="))
        if not sep or name not in slots:
            raise InputError(f"expected 'KEY_TYPE = base64' with one of {', '.join(KEY_TYPES)}",
                             file=source, obj=f"line {number}")
        try:
            key = base64.b64decode(value + "=" * (-len(value) % 4), validate=True)
        except (binascii.Error, ValueError):
            key = b""
        if len(key) != noise.KEY_LEN:
            raise InputError(f"{name}: not a base64 32-byte key", file=source,
                             obj=f"line {number}")
        slots[name].append(key)
    return log


def read_keylog(path: str) -> KeyLog:
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except (OSError, UnicodeDecodeError) as err:
        raise InputError(f"cannot read WireGuard key log: {err}", file=path) from None
    return parse_keylog(text, path)


@dataclass
class _Pending:
    """An initiation seen, waiting for its response."""

    hs: noise.Handshake
    responder_public: bytes
    initiator_public: bytes
    initiator_ephemeral: bytes
    ephemeral_private: bytes | None     # initiator's, when logged
    static_private: bytes | None        # initiator's, when logged


class Decryptor:
    """State over one capture: pending handshakes and transport keys by receiver index."""

    def __init__(self, keylog: KeyLog | None):
        self.log = keylog or KeyLog()
        self.statics = {noise.public_key(k): k for k in self.log.static_private}
        self.ephemerals = {noise.public_key(k): k for k in self.log.ephemeral_private}
        self.publics = list(self.statics) + [k for k in self.log.remote_public
                                             if k not in self.statics]
        self.pending: dict[int, _Pending] = {}
        self.keys: dict[int, bytes] = {}        # receiver index -> key that opens its data

    def message(self, payload: bytes) -> tuple[Reason, bytes | None]:
        """(reason, inner datagram) for one WireGuard UDP payload."""
        kind = payload[0]
        if kind == MSG_INITIATION and len(payload) == INITIATION_LEN:
            self._initiation(payload)
        elif kind == MSG_RESPONSE and len(payload) == RESPONSE_LEN:
            self._response(payload)
        if kind != MSG_DATA:
            return Reason.WIREGUARD_HANDSHAKE, None
        if len(payload) < DATA_HEADER_LEN + noise.TAG_LEN:
            return Reason.TRUNCATED_L4_HEADER, None
        _, index, counter = struct.unpack("<IIQ", payload[:DATA_HEADER_LEN])
        key = self.keys.get(index)
        if key is None:
            return Reason.WIREGUARD_NO_KEYS, None
        plain = noise.aead_decrypt(key, counter, payload[DATA_HEADER_LEN:], b"")
        if plain is None:
            return Reason.WIREGUARD_UNDECRYPTABLE, None
        if len(plain) < 20 or plain[0] >> 4 != 4:
            return (Reason.WIREGUARD_HANDSHAKE if not plain else Reason.TUNNEL_NOT_IPV4), None
        (total,) = struct.unpack("!H", plain[2:4])
        return Reason.OK, plain[:max(total, 20)]

    # -------------------------------------------------------------- handshakes
    def _initiation(self, msg: bytes) -> None:
        sender = struct.unpack("<I", msg[4:8])[0]
        body = noise.InitiationBody(msg[8:40], msg[40:88], msg[88:116])
        for responder in self.publics:
            if noise.mac(noise.blake2s_hash(noise.LABEL_MAC1, responder), msg[:116]) \
                    != msg[116:132]:
                continue
            pending = self._open_initiation(responder, body)
            if pending is not None:
                self.pending[sender] = pending
                return

    def _open_initiation(self, responder: bytes, body: noise.InitiationBody
                         ) -> _Pending | None:
        if responder in self.statics:
            try:
                hs, initiator, _ = noise.consume_initiation(self.statics[responder], body)
            except noise.HandshakeError:
                return None
            return _Pending(hs, responder, initiator, body.ephemeral,
                            self.ephemerals.get(body.ephemeral),
                            self._static_of(initiator))
        e_priv = self.ephemerals.get(body.ephemeral)
        if e_priv is None:
            return None
        try:
            hs = noise.Handshake.start(responder)
            hs.mix_ephemeral(body.ephemeral)
            initiator = hs.decrypt_and_hash(hs.mix_dh(e_priv, responder), body.encrypted_static)
            s_priv = self._static_of(initiator)
            if s_priv is None:
                return None
            hs.decrypt_and_hash(hs.mix_dh(s_priv, responder), body.encrypted_timestamp)
        except noise.HandshakeError:
            return None
        hs.ephemeral_private, hs.remote_static = e_priv, responder
        return _Pending(hs, responder, initiator, body.ephemeral, e_priv, s_priv)

    def _static_of(self, public: bytes) -> bytes | None:
        return self.statics.get(public)

    def _response(self, msg: bytes) -> None:
        sender, receiver = struct.unpack("<II", msg[4:12])
        pending = self.pending.get(receiver)
        if pending is None:
            return
        ephemeral, sealed = msg[12:44], msg[44:60]
        for psk in self.log.preshared or [bytes(32)]:
            hs = self._open_response(pending, ephemeral, sealed, psk)
            if hs is not None:
                to_responder, to_initiator = hs.transport_keys()
                self.keys[sender] = to_responder
                self.keys[receiver] = to_initiator
                del self.pending[receiver]
                return

    def _open_response(self, pending: _Pending, ephemeral: bytes, sealed: bytes,
                       psk: bytes) -> noise.Handshake | None:
        hs = copy.copy(pending.hs)
        try:
            hs.mix_ephemeral(ephemeral)                                         # e
            if pending.ephemeral_private and pending.static_private:
                hs.mix_dh(pending.ephemeral_private, ephemeral)                 # ee
                hs.mix_dh(pending.static_private, ephemeral)                    # se
            elif ephemeral in self.ephemerals:
                mine = self.ephemerals[ephemeral]
                hs.mix_dh(mine, pending.initiator_ephemeral)                    # ee
                hs.mix_dh(mine, pending.initiator_public)                       # se
            else:
                return None
            hs.decrypt_and_hash(hs.mix_psk(psk), sealed)                        # psk, {}
        except noise.HandshakeError:
            return None
        return hs


def is_wireguard(payload: bytes) -> bool:
    """The four message types: type byte 1-4, three reserved zero bytes."""
    return (len(payload) >= 4 and payload[1:4] == b"\x00\x00\x00"
            and payload[0] in (MSG_INITIATION, MSG_RESPONSE, MSG_COOKIE, MSG_DATA))
