"""The TCP reset live mode answers a ``REJECT --reject-with tcp-reset`` with, against the
reset the kernel itself sends for the same segment (root, a throwaway namespace)."""

from __future__ import annotations

import socket
import struct
import time

import pytest
from scapy.layers.inet import IP, TCP

from conftest import in_netns
from tracer.kernel.nsexec import socket_in
from tracer.live import frames

pytestmark = pytest.mark.root

PORT = 8080


def _kernel_reset(ns: str, segment: bytes) -> bytes:
    """Send ``segment`` to the namespace's loopback, where INPUT rejects it with tcp-reset,
    and return the reset the kernel answers with."""
    sender = socket_in(ns, socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
    listener = socket_in(ns, socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_TCP)
    listener.settimeout(0.2)
    try:
        sender.sendto(segment, ("127.0.0.1", 0))
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            try:
                data = listener.recv(65535)
            except TimeoutError:
                continue
            hlen = (data[0] & 0x0F) * 4
            if struct.unpack_from("!H", data, hlen)[0] == PORT and data[hlen + 13] & 0x04:
                return data
        raise AssertionError("the kernel sent no reset")
    finally:
        sender.close()
        listener.close()


@pytest.mark.parametrize("flags,seq,ack,payload", [
    ("S", 1000, 0, b""), ("PA", 5000, 777, b"hello"), ("F", 42, 0, b"xy")])
def test_our_reset_is_the_kernels(netns, flags, seq, ack, payload):
    in_netns(netns, "ip", "link", "set", "lo", "up")
    in_netns(netns, "iptables", "-A", "INPUT", "-p", "tcp", "--dport", str(PORT),
             "-j", "REJECT", "--reject-with", "tcp-reset")
    segment = bytes(IP(src="127.0.0.1", dst="127.0.0.1") / TCP(
        sport=40000, dport=PORT, flags=flags, seq=seq, ack=ack) / payload)
    kernel = IP(_kernel_reset(netns, segment))
    ours = IP(frames.tcp_reset(segment))
    assert (ours.src, ours.dst, ours.ttl, ours.flags) == (kernel.src, kernel.dst, kernel.ttl,
                                                          kernel.flags)
    # loopback leaves the kernel's checksum to "hardware" (only the pseudo-header sum is
    # there), so the checksum is compared by validity, every other byte as is
    ours_tcp, kernel_tcp = bytes(ours[TCP]), bytes(kernel[TCP])
    assert ours_tcp[:16] + ours_tcp[18:] == kernel_tcp[:16] + kernel_tcp[18:]
    recomputed = IP(bytes(ours))
    del recomputed[TCP].chksum
    assert IP(bytes(recomputed))[TCP].chksum == ours[TCP].chksum
