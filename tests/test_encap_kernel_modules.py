"""IPIP and WireGuard against the kernel, when this kernel has the modules.

IPIP: like the VXLAN judge, node A's ``tunl0`` (ttl inherit, nopmtudisc, as on a Calico
node) sends a crafted inner packet; the outer packet captured on node B's underlay veth must
equal ``IpipEncap().encapsulate`` byte for byte, with only the outer IP Identification taken
from the capture (``__ip_select_ident`` uses a boot-time random key).

WireGuard: the kernel is node A's ``wireguard.cali``; our WireGuardSession plays node B from a
plain UDP socket. Our initiation must be answered, the kernel's response must pass our
checks, and an ICMP echo we encrypt must come back as an echo reply we can decrypt. The
kernel's ephemeral keys are random, so here interoperability is the judge, not byte equality.

Each test probes for its module and skips only when the kernel really lacks it.
"""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
import sys
import uuid
from ipaddress import IPv4Address

import pytest
from scapy.all import ICMP, IP, UDP, raw

from tracer.encap import IpipEncap, TunnelEndpoint, noise

pytestmark = pytest.mark.root

CAPTURER = r"""
import select, socket, sys
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0003))
s.bind(("vb", 0))
print("ready", flush=True)
while select.select([s], [], [], 10)[0]:
    frame, addr = s.recvfrom(65535)
    if addr[2] != socket.PACKET_OUTGOING and frame[12:14] == b"\x08\x00" and frame[23] == 4:
        print(frame.hex(), flush=True)
        break
"""

SENDER = r"""
import socket, sys
pkt = bytes.fromhex(sys.argv[1])
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
s.sendto(pkt, (socket.inet_ntoa(pkt[16:20]), 0))
"""


def _sh(*args: str) -> None:
    subprocess.run(args, check=True, capture_output=True, text=True)


@pytest.fixture()
def two_nodes():
    """Two netns joined by veth va (10.99.0.1) <-> vb (10.99.0.2); always removed."""
    if os.geteuid() != 0:
        pytest.skip("needs root for network namespaces")
    if shutil.which("ip") is None:
        pytest.skip("iproute2 'ip' binary missing")
    tag = uuid.uuid4().hex[:8]
    names = [f"ctvx-{tag}a", f"ctvx-{tag}b"]
    created: list[str] = []
    try:
        for ns in names:
            _sh("ip", "netns", "add", ns)
            created.append(ns)
            _sh("ip", "-n", ns, "link", "set", "lo", "up")
        _sh("ip", "link", "add", "va", "netns", names[0], "type", "veth", "peer", "name", "vb",
            "netns", names[1])
        for ns, dev, addr in ((names[0], "va", "10.99.0.1"), (names[1], "vb", "10.99.0.2")):
            _sh("ip", "-n", ns, "addr", "add", f"{addr}/24", "dev", dev)
            _sh("ip", "-n", ns, "link", "set", dev, "up")
        yield names[0], names[1]
    finally:
        for ns in created:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)


def _probe(ns: str, kind: str) -> None:
    probe = subprocess.run(["ip", "-n", ns, "link", "add", "probe0", "type", kind],
                           capture_output=True, text=True)
    if probe.returncode != 0:
        pytest.skip(f"kernel has no {kind} support here: {probe.stderr.strip()}")
    subprocess.run(["ip", "-n", ns, "link", "del", "probe0"], capture_output=True)


def test_kernel_ipip_matches_ours_byte_for_byte(two_nodes):
    ns_a, ns_b = two_nodes
    _probe(ns_a, "ipip")
    # Loading the module created the fallback tunl0 in every netns, as on a Calico node.
    _sh("ip", "-n", ns_a, "link", "set", "tunl0", "mtu", "1480", "up")
    _sh("ip", "-n", ns_a, "addr", "add", "192.168.10.0/32", "dev", "tunl0")
    _sh("ip", "-n", ns_a, "route", "add", "192.168.20.0/26", "via", "10.99.0.2", "dev",
        "tunl0", "onlink")
    inner = raw(IP(src="192.168.10.0", dst="192.168.20.5", ttl=61, id=0x4321, tos=0x01,
                   flags="DF") / UDP(sport=1111, dport=2222) / b"ipip judge")
    cap = subprocess.Popen(["ip", "netns", "exec", ns_b, sys.executable, "-c", CAPTURER],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert cap.stdout is not None and cap.stdout.readline().strip() == "ready"
        _sh("ip", "netns", "exec", ns_a, sys.executable, "-c", SENDER, inner.hex())
        out, err = cap.communicate(timeout=15)
    finally:
        if cap.poll() is None:
            cap.kill()
            cap.wait()
    assert out.strip(), f"no IPIP packet captured: {err}"
    kernel_outer = bytes.fromhex(out.strip())[14:]
    a = TunnelEndpoint("node-a", IPv4Address("10.99.0.1"))
    b = TunnelEndpoint("node-b", IPv4Address("10.99.0.2"))
    ours = IpipEncap().encapsulate(inner, a, b, ident=int.from_bytes(kernel_outer[4:6], "big"))
    assert ours.hex() == kernel_outer.hex()


def test_kernel_wireguard_interoperates_with_our_session(two_nodes, tmp_path):
    ns_a, ns_b = two_nodes
    _probe(ns_a, "wireguard")
    if shutil.which("wg") is None:
        pytest.skip("wireguard-tools 'wg' binary missing (needed to configure the device)")
    priv_a, priv_b = os.urandom(32), os.urandom(32)
    pub_a, pub_b = noise.public_key(priv_a), noise.public_key(priv_b)
    key_file = tmp_path / "a.key"
    key_file.write_text(base64.b64encode(priv_a).decode())
    _sh("ip", "-n", ns_a, "link", "add", "wireguard.cali", "type", "wireguard")
    _sh("ip", "netns", "exec", ns_a, "wg", "set", "wireguard.cali", "private-key",
        str(key_file), "listen-port", "51820", "peer", base64.b64encode(pub_b).decode(),
        "endpoint", "10.99.0.2:51820", "allowed-ips", "192.168.20.0/26")
    _sh("ip", "-n", ns_a, "addr", "add", "192.168.10.1/32", "dev", "wireguard.cali")
    _sh("ip", "-n", ns_a, "link", "set", "wireguard.cali", "mtu", "1440", "up")
    _sh("ip", "-n", ns_a, "route", "add", "192.168.20.0/26", "dev", "wireguard.cali")

    script = _peer_script(priv_b, pub_a)
    result = subprocess.run(["ip", "netns", "exec", ns_b, sys.executable, "-c", script],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "echo-reply-from 192.168.10.1"


def _peer_script(priv_b: bytes, pub_a: bytes) -> str:
    """Node B as our WireGuardSession over a UDP socket inside node B's netns."""
    echo = raw(IP(src="192.168.20.5", dst="192.168.10.1") / ICMP(id=7, seq=1) / b"ping")
    return f"""
import socket, time
from tracer.encap.wireguard import WireGuardSession
s = WireGuardSession(bytes.fromhex({priv_b.hex()!r}), bytes.fromhex({pub_a.hex()!r}),
                     seed=b"kernel-judge")
sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sock.bind(("10.99.0.2", 51820))
sock.settimeout(5)
sock.sendto(s.create_initiation(now=time.time()), ("10.99.0.1", 51820))
s.consume_response(sock.recv(2048))
sock.sendto(s.encrypt(bytes.fromhex({echo.hex()!r})), ("10.99.0.1", 51820))
while True:
    plain, _ = s.decrypt(sock.recv(2048))
    if plain and plain[9] == 1 and plain[20] == 0:
        print("echo-reply-from", socket.inet_ntoa(plain[12:16]))
        break
"""

