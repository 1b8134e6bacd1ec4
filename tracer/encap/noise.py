"""Noise_IKpsk2_25519_ChaChaPoly_BLAKE2s as WireGuard uses it (drivers/net/wireguard/noise.c).

Pure protocol steps over a small handshake state: create/consume the initiation
(``e, es, s, ss, {t}``) and the response (``e, ee, se, psk, {}``), then derive the two
transport keys. Primitives follow the WireGuard paper §5.4: HASH = BLAKE2s-256, HMAC over
BLAKE2s (64-byte block), HKDF with one to three outputs, AEAD = ChaCha20-Poly1305 with a
96-bit nonce of 4 zero bytes and the little-endian 64-bit counter, DH = X25519.
Message framing (type, indices, MACs) lives in :mod:`tracer.encap.wireguard`.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

CONSTRUCTION = b"Noise_IKpsk2_25519_ChaChaPoly_BLAKE2s"
IDENTIFIER = b"WireGuard v1 zx2c4 Jason@zx2c4.com"
LABEL_MAC1 = b"mac1----"
LABEL_COOKIE = b"cookie--"
KEY_LEN = 32
TAG_LEN = 16
TIMESTAMP_LEN = 12
BLAKE2S_BLOCK = 64


class HandshakeError(Exception):
    """A handshake message the receiver rejects; ``str()`` is the drop reason."""


def blake2s_hash(*parts: bytes) -> bytes:
    h = hashlib.blake2s(digest_size=32)
    for part in parts:
        h.update(part)
    return h.digest()


def hmac_blake2s(key: bytes, data: bytes) -> bytes:
    """HMAC (RFC 2104) with BLAKE2s-256, exactly as noise.c ``hmac`` builds it."""
    if len(key) > BLAKE2S_BLOCK:
        key = blake2s_hash(key)
    key = key.ljust(BLAKE2S_BLOCK, b"\x00")
    inner = blake2s_hash(bytes(b ^ 0x36 for b in key), data)
    return blake2s_hash(bytes(b ^ 0x5C for b in key), inner)


def kdf(chaining_key: bytes, data: bytes, outputs: int) -> list[bytes]:
    """HKDF: extract with the chaining key, then expand 1..3 outputs of 32 bytes."""
    secret = hmac_blake2s(chaining_key, data)
    out: list[bytes] = []
    prev = b""
    for i in range(1, outputs + 1):
        prev = hmac_blake2s(secret, prev + bytes([i]))
        out.append(prev)
    return out


def mac(key: bytes, data: bytes, size: int = 16) -> bytes:
    """Keyed BLAKE2s with a 16-byte output (the paper's MAC, used for mac1/mac2)."""
    return hashlib.blake2s(data, digest_size=size, key=key).digest()


def aead_nonce(counter: int) -> bytes:
    return b"\x00" * 4 + struct.pack("<Q", counter)


def aead_encrypt(key: bytes, counter: int, plaintext: bytes, aad: bytes) -> bytes:
    return ChaCha20Poly1305(key).encrypt(aead_nonce(counter), plaintext, aad or None)


def aead_decrypt(key: bytes, counter: int, ciphertext: bytes, aad: bytes) -> bytes | None:
    """Plaintext, or None when the Poly1305 tag does not verify."""
    try:
        return ChaCha20Poly1305(key).decrypt(aead_nonce(counter), ciphertext, aad or None)
    except InvalidTag:
        return None


def public_key(private: bytes) -> bytes:
    return X25519PrivateKey.from_private_bytes(private).public_key().public_bytes(
        Encoding.Raw, PublicFormat.Raw)


def dh(private: bytes, public: bytes) -> bytes:
    shared = X25519PrivateKey.from_private_bytes(private).exchange(
        X25519PublicKey.from_public_bytes(public))
    if shared == bytes(32):                         # curve25519() returns false on all-zero
        raise HandshakeError("X25519 produced the all-zero shared secret")
    return shared


def tai64n(seconds: float) -> bytes:
    """TAI64N label, with the nanoseconds rounded down like noise.c ``tai64n_now`` does
    (to a power of two below 1e9 / INITIATIONS_PER_SECOND, i.e. 2**24 ns)."""
    sec = int(seconds)
    nsec = int(round((seconds - sec) * 1e9))
    nsec -= nsec % (1 << 24)
    return struct.pack(">QI", 0x400000000000000A + sec, nsec)


def initial_chain() -> tuple[bytes, bytes]:
    """(chaining key, hash) before anything is mixed in: Ci = HASH(construction),
    Hi = HASH(Ci || identifier)."""
    ck = blake2s_hash(CONSTRUCTION)
    return ck, blake2s_hash(ck, IDENTIFIER)


@dataclass
class Handshake:
    """The symmetric state of one handshake in progress (noise_handshake in the kernel)."""

    chaining_key: bytes
    hash: bytes
    ephemeral_private: bytes = b""
    remote_ephemeral: bytes = b""
    remote_static: bytes = b""

    @classmethod
    def start(cls, responder_static_public: bytes) -> Handshake:
        ck, h = initial_chain()
        return cls(chaining_key=ck, hash=blake2s_hash(h, responder_static_public))

    def mix_hash(self, data: bytes) -> None:
        self.hash = blake2s_hash(self.hash, data)

    def mix_ephemeral(self, ephemeral_public: bytes) -> None:
        self.mix_hash(ephemeral_public)
        (self.chaining_key,) = kdf(self.chaining_key, ephemeral_public, 1)

    def mix_dh(self, private: bytes, public: bytes) -> bytes:
        """Returns the new symmetric key (the second KDF output)."""
        self.chaining_key, key = kdf(self.chaining_key, dh(private, public), 2)
        return key

    def mix_psk(self, psk: bytes) -> bytes:
        self.chaining_key, tau, key = kdf(self.chaining_key, psk, 3)
        self.mix_hash(tau)
        return key

    def encrypt_and_hash(self, key: bytes, plaintext: bytes) -> bytes:
        sealed = aead_encrypt(key, 0, plaintext, self.hash)
        self.mix_hash(sealed)
        return sealed

    def decrypt_and_hash(self, key: bytes, sealed: bytes) -> bytes:
        opened = aead_decrypt(key, 0, sealed, self.hash)
        if opened is None:
            raise HandshakeError("handshake AEAD tag does not verify")
        self.mix_hash(sealed)
        return opened

    def transport_keys(self) -> tuple[bytes, bytes]:
        """(initiator->responder key, responder->initiator key) = KDF2(C, empty)."""
        first, second = kdf(self.chaining_key, b"", 2)
        return first, second


@dataclass(frozen=True)
class InitiationBody:
    """The Noise part of message type 1: ephemeral, sealed static, sealed timestamp."""

    ephemeral: bytes
    encrypted_static: bytes
    encrypted_timestamp: bytes


def create_initiation(static_private: bytes, responder_public: bytes, ephemeral_private: bytes,
                      timestamp: bytes) -> tuple[Handshake, InitiationBody]:
    hs = Handshake.start(responder_public)
    hs.ephemeral_private = ephemeral_private
    hs.remote_static = responder_public
    e_pub = public_key(ephemeral_private)
    hs.mix_ephemeral(e_pub)                                        # e
    key = hs.mix_dh(ephemeral_private, responder_public)           # es
    enc_static = hs.encrypt_and_hash(key, public_key(static_private))  # s
    key = hs.mix_dh(static_private, responder_public)              # ss
    enc_time = hs.encrypt_and_hash(key, timestamp)                 # {t}
    return hs, InitiationBody(e_pub, enc_static, enc_time)


def consume_initiation(static_private: bytes, body: InitiationBody
                       ) -> tuple[Handshake, bytes, bytes]:
    """Responder side: returns (state, initiator static public, timestamp)."""
    hs = Handshake.start(public_key(static_private))
    hs.remote_ephemeral = body.ephemeral
    hs.mix_ephemeral(body.ephemeral)                               # e
    key = hs.mix_dh(static_private, body.ephemeral)                # es
    initiator_static = hs.decrypt_and_hash(key, body.encrypted_static)  # s
    hs.remote_static = initiator_static
    key = hs.mix_dh(static_private, initiator_static)              # ss
    timestamp = hs.decrypt_and_hash(key, body.encrypted_timestamp)  # {t}
    return hs, initiator_static, timestamp


def create_response(hs: Handshake, ephemeral_private: bytes, psk: bytes) -> tuple[bytes, bytes]:
    """Responder side, continuing ``hs``: returns (ephemeral public, sealed empty)."""
    hs.ephemeral_private = ephemeral_private
    e_pub = public_key(ephemeral_private)
    hs.mix_ephemeral(e_pub)                                        # e
    hs.mix_dh(ephemeral_private, hs.remote_ephemeral)              # ee
    hs.mix_dh(ephemeral_private, hs.remote_static)                 # se
    key = hs.mix_psk(psk)                                          # psk
    return e_pub, hs.encrypt_and_hash(key, b"")                    # {}


def consume_response(hs: Handshake, static_private: bytes, ephemeral: bytes, sealed: bytes,
                     psk: bytes) -> None:
    """Initiator side, continuing ``hs``; raises HandshakeError if the response is forged."""
    hs.remote_ephemeral = ephemeral
    hs.mix_ephemeral(ephemeral)                                    # e
    hs.mix_dh(hs.ephemeral_private, ephemeral)                     # ee
    hs.mix_dh(static_private, ephemeral)                           # se
    key = hs.mix_psk(psk)                                          # psk
    hs.decrypt_and_hash(key, sealed)                               # {}
