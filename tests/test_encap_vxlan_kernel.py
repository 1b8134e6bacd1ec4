"""Judge tracer.encap.vxlan against the kernel's own vxlan driver, byte for byte.

Two throwaway netns joined by a veth "underlay" each get a ``vxlan.calico`` device set up the
way felix does it (VNI 4096, port 4789, local = underlay IP, nolearning, felix's VTEP MAC,
static neighbour VTEP IP -> MAC and FDB MAC -> remote underlay IP, onlink block route). Node A
sends a crafted inner packet into the tunnel; a raw AF_PACKET socket on node B's veth captures
the outer frame, and we compare it with ``VxlanEncap().encapsulate`` of the same inner packet.

Fields taken from the capture instead of predicted (the kernel picks them per flow from
randomly keyed hashes, so no userspace model can know them):
  * outer IPv4 Identification: ``__ip_select_ident`` (net/ipv4/ip_tunnel_core.c
    ``iptunnel_xmit``) hashes (saddr, daddr, proto) with a boot-time random key;
  * outer UDP source port: ``udp_flow_src_port`` maps ``skb_get_hash`` (keyed with a random
    seed) into the local port range; we only check it lies in that range.
Both are pinned into our encapsulation; every other byte (including the outer IPv4 and UDP
checksums that depend on them) must then match exactly.

The sender's veth has TX checksum offload turned off (ETHTOOL_STXCSUM), otherwise the capture
would show the partial (pseudo-header only) outer UDP checksum that the NIC would complete.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from ipaddress import IPv4Address

import pytest
from scapy.all import IP, UDP, raw

from tracer.encap.base import TunnelEndpoint
from tracer.encap.vxlan import LOCAL_PORT_RANGE, VxlanEncap, vtep_mac

pytestmark = pytest.mark.root

UNDERLAY_A, UNDERLAY_B = "10.99.0.1", "10.99.0.2"
VTEP_A, VTEP_B = "192.168.10.0", "192.168.20.0"

SENDER = r"""
import array, fcntl, socket, struct, sys
sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
buf = array.array("B", struct.pack("II", 0x17, 0))          # ETHTOOL_STXCSUM, off
fcntl.ioctl(sock, 0x8946, struct.pack("16sP", b"va", buf.buffer_info()[0]))  # SIOCETHTOOL
pkt = bytes.fromhex(sys.argv[1])
raw_sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
raw_sock.sendto(pkt, (socket.inet_ntoa(pkt[16:20]), 0))
"""

CAPTURER = r"""
import select, socket, struct, sys
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0003))
s.bind(("vb", 0))
print("ready", flush=True)
while select.select([s], [], [], 10)[0]:
    frame, addr = s.recvfrom(65535)
    if addr[2] == socket.PACKET_OUTGOING or frame[12:14] != b"\x08\x00":
        continue
    ihl = (frame[14] & 0x0F) * 4
    if frame[23] == 17 and struct.unpack("!H", frame[14 + ihl + 2:14 + ihl + 4])[0] == 4789:
        print(frame.hex(), flush=True)
        break
"""


def _missing_prereq() -> str | None:
    if os.geteuid() != 0:
        return "needs root for network namespaces"
    if shutil.which("ip") is None:
        return "iproute2 'ip' binary missing"
    if shutil.which("bridge") is None:
        return "iproute2 'bridge' binary missing"
    return None


def _sh(*args: str) -> None:
    subprocess.run(args, check=True, capture_output=True, text=True)


def _node_setup(ns: str, dev: str, underlay: str, vtep: str, mac: str,
                peer_underlay: str, peer_vtep: str, peer_mac: str, peer_block: str) -> None:
    _sh("ip", "-n", ns, "link", "set", "lo", "up")
    _sh("ip", "-n", ns, "addr", "add", f"{underlay}/24", "dev", dev)
    _sh("ip", "-n", ns, "link", "set", dev, "up")
    _sh("ip", "-n", ns, "link", "add", "vxlan.calico", "address", mac, "type", "vxlan",
        "id", "4096", "dstport", "4789", "local", underlay, "dev", dev, "nolearning")
    _sh("ip", "-n", ns, "link", "set", "vxlan.calico", "mtu", "1450", "up")
    _sh("ip", "-n", ns, "addr", "add", f"{vtep}/32", "dev", "vxlan.calico")
    _sh("ip", "-n", ns, "neigh", "add", peer_vtep, "lladdr", peer_mac, "dev", "vxlan.calico",
        "nud", "permanent")
    _sh("ip", "netns", "exec", ns, "bridge", "fdb", "add", peer_mac, "dev", "vxlan.calico",
        "dst", peer_underlay, "self", "permanent")
    _sh("ip", "-n", ns, "route", "add", peer_block, "via", peer_vtep, "dev", "vxlan.calico",
        "onlink")


@pytest.fixture()
def vxlan_pair():
    reason = _missing_prereq()
    if reason:
        pytest.skip(reason)
    tag = uuid.uuid4().hex[:8]
    ns_a, ns_b = f"ctvx-{tag}a", f"ctvx-{tag}b"
    created: list[str] = []
    try:
        for ns in (ns_a, ns_b):
            _sh("ip", "netns", "add", ns)
            created.append(ns)
        probe = subprocess.run(["ip", "-n", ns_a, "link", "add", "probe0", "type", "vxlan",
                                "id", "1", "dstport", "4789"], capture_output=True, text=True)
        if probe.returncode != 0:
            pytest.skip(f"kernel vxlan device unavailable: {probe.stderr.strip()}")
        _sh("ip", "-n", ns_a, "link", "del", "probe0")
        _sh("ip", "link", "add", "va", "netns", ns_a, "type", "veth", "peer", "name", "vb",
            "netns", ns_b)
        mac_a, mac_b = vtep_mac("node-a"), vtep_mac("node-b")
        _node_setup(ns_a, "va", UNDERLAY_A, VTEP_A, mac_a, UNDERLAY_B, VTEP_B, mac_b,
                    "192.168.20.0/26")
        _node_setup(ns_b, "vb", UNDERLAY_B, VTEP_B, mac_b, UNDERLAY_A, VTEP_A, mac_a,
                    "192.168.10.0/26")
        yield ns_a, ns_b
    finally:
        for ns in created:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)


def _kernel_encapsulate(ns_a: str, ns_b: str, inner: bytes) -> bytes:
    """Send ``inner`` from node A; return the outer frame seen on node B's underlay veth."""
    cap = subprocess.Popen(["ip", "netns", "exec", ns_b, sys.executable, "-c", CAPTURER],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert cap.stdout is not None
        assert cap.stdout.readline().strip() == "ready", cap.stderr.read() if cap.stderr else ""
        _sh("ip", "netns", "exec", ns_a, sys.executable, "-c", SENDER, inner.hex())
        out, err = cap.communicate(timeout=15)
    finally:
        if cap.poll() is None:
            cap.kill()
            cap.wait()
    assert out.strip(), f"no VXLAN frame captured: {err}"
    return bytes.fromhex(out.strip())


def _endpoints() -> tuple[TunnelEndpoint, TunnelEndpoint]:
    a = TunnelEndpoint("node-a", IPv4Address(UNDERLAY_A), vtep_ip=IPv4Address(VTEP_A))
    b = TunnelEndpoint("node-b", IPv4Address(UNDERLAY_B), vtep_ip=IPv4Address(VTEP_B))
    return a, b


@pytest.mark.parametrize("inner_pkt", [
    IP(src=VTEP_A, dst="192.168.20.5", ttl=64, id=0x1234, flags="DF")
    / UDP(sport=5555, dport=7777) / b"hello calico",
    IP(src=VTEP_A, dst="192.168.20.9", ttl=17, id=0x0101, tos=0x03, flags=0)
    / UDP(sport=40000, dport=53) / (b"x" * 301),
], ids=["udp-df-ect0", "udp-nodf-ce"])
def test_kernel_vxlan_matches_ours_byte_for_byte(vxlan_pair, inner_pkt):
    ns_a, ns_b = vxlan_pair
    inner = raw(inner_pkt)
    frame = _kernel_encapsulate(ns_a, ns_b, inner)
    kernel_outer = frame[14:]                       # drop the veth's underlay Ethernet header
    ihl = (kernel_outer[0] & 0x0F) * 4
    kernel_id = int.from_bytes(kernel_outer[4:6], "big")
    kernel_sport = int.from_bytes(kernel_outer[ihl:ihl + 2], "big")
    low, high = LOCAL_PORT_RANGE
    assert low <= kernel_sport < high

    a, b = _endpoints()
    ours = VxlanEncap().encapsulate(inner, a, b, ident=kernel_id, sport=kernel_sport)
    assert ours.hex() == kernel_outer.hex()
    # And the receiving side of our model takes the kernel's packet apart again.
    result = VxlanEncap().decapsulate(kernel_outer, b, [a])
    assert result.ok and result.inner == inner and result.peer == "node-a"
