"""Captures for the replay tests, written with scapy from the bundled scenarios' addresses:
what a pod's eth0 or a node's underlay shows when these exchanges happen."""

from __future__ import annotations

from pathlib import Path

from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.l2 import ARP, Ether
from scapy.layers.vxlan import VXLAN
from scapy.utils import wrpcap

from tracer.model.loader import load_cluster

ROOT = Path(__file__).resolve().parent.parent / "scenarios"
BACKEND_FROM_FRONTEND = ROOT / "backend-from-frontend"
MULTINODE_VXLAN = ROOT / "multinode-vxlan"
T0 = 1_700_000_000.0


def pod_ips(scenario: Path) -> dict[str, str]:
    cluster = load_cluster([scenario])
    return {key: str(ep.pod.ip) for key, ep in cluster.endpoints.items()}


def _timed(frames, step: float = 0.01):
    for i, frame in enumerate(frames):
        frame.time = T0 + i * step
    return frames


def handshake(client: str, server: str, sport: int, dport: int) -> list:
    """A TCP connection as the client's eth0 sees it: handshake, a request, the answer,
    both FINs."""
    e = Ether()
    c, s = 1000, 5000
    return [
        e / IP(src=client, dst=server) / TCP(sport=sport, dport=dport, flags="S", seq=c),
        e / IP(src=server, dst=client) / TCP(sport=dport, dport=sport, flags="SA", seq=s,
                                             ack=c + 1),
        e / IP(src=client, dst=server) / TCP(sport=sport, dport=dport, flags="A", seq=c + 1,
                                             ack=s + 1),
        e / IP(src=client, dst=server) / TCP(sport=sport, dport=dport, flags="PA", seq=c + 1,
                                             ack=s + 1) / (b"x" * 10),
        e / IP(src=server, dst=client) / TCP(sport=dport, dport=sport, flags="PA", seq=s + 1,
                                             ack=c + 11) / (b"y" * 20),
        e / IP(src=client, dst=server) / TCP(sport=sport, dport=dport, flags="FA", seq=c + 11,
                                             ack=s + 21),
        e / IP(src=server, dst=client) / TCP(sport=dport, dport=sport, flags="FA", seq=s + 21,
                                             ack=c + 12),
        e / IP(src=client, dst=server) / TCP(sport=sport, dport=dport, flags="A", seq=c + 12,
                                             ack=s + 22),
    ]


def mixed_capture(path: Path) -> Path:
    """On backend-from-frontend: an allowed connection (frontend -> backend:6379), a denied
    one (other -> backend:6379, SYN and its retransmission), a stray SYN-ACK, a stray ACK, a
    frame cut inside its IPv4 header, and an ARP request."""
    ips = pod_ips(BACKEND_FROM_FRONTEND)
    fe, be, other = ips["myns/frontend"], ips["myns/backend"], ips["myns/other"]
    e = Ether()
    frames = handshake(fe, be, 40000, 6379)
    frames += [e / IP(src=other, dst=be) / TCP(sport=40001, dport=6379, flags="S", seq=1)] * 2
    frames.append(e / IP(src=be, dst=fe) / TCP(sport=6379, dport=40002, flags="SA", seq=9,
                                               ack=7))
    frames.append(e / IP(src=fe, dst=be) / TCP(sport=40003, dport=6379, flags="A", seq=9,
                                               ack=7))
    cut = bytes(e / IP(src=fe, dst=be) / TCP(sport=40004, dport=6379, flags="S"))[:14 + 12]
    frames.append(Ether(cut))
    frames.append(e / ARP(psrc=fe, pdst=be))
    wrpcap(str(path), _timed([f.copy() for f in frames]))
    return path


def vxlan_capture(path: Path) -> Path:
    """On multinode-vxlan's underlay: frontend (node-1) -> backend (node-2) on TCP 6379
    (allowed) and on TCP 80 (denied), inside VXLAN between the nodes (VNI 4096, felix's
    default), as tcpdump on eth0 shows them."""
    ips = pod_ips(MULTINODE_VXLAN)
    fe, be = ips["shop/frontend-7d4b9"], ips["shop/backend-5f8c2"]

    def framed(inner):
        return (Ether() / IP(src="10.0.0.1", dst="10.0.0.2") / UDP(sport=51000, dport=4789) /
                VXLAN(vni=4096, flags=0x08) / Ether() / inner)

    frames = [framed(IP(src=fe, dst=be) / TCP(sport=40000, dport=6379, flags="S", seq=1)),
              framed(IP(src=fe, dst=be) / TCP(sport=40001, dport=80, flags="S", seq=1))]
    wrpcap(str(path), _timed(frames))
    return path


def many_flows_capture(path: Path, flows: int = 30) -> Path:
    """``flows`` connections to the backend, from frontend (allowed) and other (denied) in
    turn, their packets interleaved as concurrent connections are, and a stray SYN-ACK per
    five flows: conntrack must keep each flow's state apart."""
    ips = pod_ips(BACKEND_FROM_FRONTEND)
    be = ips["myns/backend"]
    clients = [ips["myns/frontend"], ips["myns/other"]]
    streams = []
    for i in range(flows):
        frames = handshake(clients[i % 2], be, 41000 + i, 6379)
        if i % 5 == 0:
            frames.append(Ether() / IP(src=be, dst=clients[0]) /
                          TCP(sport=6379, dport=50000 + i, flags="SA", seq=3, ack=4))
        streams.append(frames)
    interleaved = []
    depth = max(len(s) for s in streams)
    for step in range(depth):
        for stream in streams:
            if step < len(stream):
                interleaved.append(stream[step])
    wrpcap(str(path), _timed([f.copy() for f in interleaved], step=0.001))
    return path


SERVICE_CLUSTERIP = ROOT / "service-clusterip"


def service_capture(path: Path) -> Path:
    """On service-clusterip, at demo/client's eth0: the handshake to the Service's cluster IP
    (10.96.0.50:80); the SYN-ACK shows the cluster IP, already de-NATed."""
    client = pod_ips(SERVICE_CLUSTERIP)["demo/client"]
    wrpcap(str(path), _timed([f.copy() for f in handshake(client, "10.96.0.50", 40000, 80)]))
    return path
