"""The reference table against the real kernel: same packets, same states (root, netns)."""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from tracer.conntrack.format import format_conntrack_list
from tracer.conntrack.reference import ConntrackTable
from tracer.conntrack.tuples import PacketKey

pytestmark = pytest.mark.root

NEEDED = ("ip", "iptables", "conntrack", "tcpdump")

# Runs inside the netns: an established TCP flow with data, one closed by both sides, a UDP
# request/reply/request flow, a one-way UDP flow; then lists conntrack while sockets are open.
SCENARIO = textwrap.dedent("""
    import socket, subprocess, time
    srv = socket.socket(); srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", 5555)); srv.listen()
    keep = socket.create_connection(("127.0.0.1", 5555)); peer, _ = srv.accept()
    keep.sendall(b"hello"); peer.recv(10); peer.sendall(b"world"); keep.recv(10)
    gone = socket.create_connection(("127.0.0.1", 5555)); gpeer, _ = srv.accept()
    gone.close(); time.sleep(0.2); gpeer.close(); time.sleep(0.2)
    u_srv = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u_srv.bind(("127.0.0.1", 5353))
    u_cli = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    u_cli.sendto(b"q", ("127.0.0.1", 5353)); data, addr = u_srv.recvfrom(10)
    u_srv.sendto(b"a", addr); u_cli.recvfrom(10); u_cli.sendto(b"q2", ("127.0.0.1", 5353))
    one = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); one.sendto(b"x", ("127.0.0.1", 9))
    time.sleep(0.5)
    print("T", time.time())
    print(subprocess.run(["conntrack", "-L"], capture_output=True, text=True).stdout, end="")
""")


def _skip_reason() -> str | None:
    if os.geteuid() != 0:
        return "needs root for network namespaces"
    missing = [tool for tool in NEEDED if shutil.which(tool) is None]
    return f"missing binaries: {', '.join(missing)}" if missing else None


def _ns(name: str, *cmd: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", "netns", "exec", name, *cmd], check=True, capture_output=True,
                          text=True, timeout=60, **kw)


def _pcap_keys(path: Path) -> list[tuple[float, PacketKey]]:
    from scapy.layers.inet import IP, TCP, UDP
    from scapy.utils import rdpcap

    keys = []
    for pkt in rdpcap(str(path)):
        if IP not in pkt:
            continue
        ip4 = pkt[IP]
        if TCP in pkt:
            tcp = pkt[TCP]
            opts = dict((name, value) for name, value in tcp.options if isinstance(name, str))
            key = PacketKey.tcp(ip4.src, ip4.dst, tcp.sport, tcp.dport, int(tcp.flags),
                                seq=tcp.seq, ack=tcp.ack, window=tcp.window,
                                payload_len=len(bytes(tcp.payload)), wscale=opts.get("WScale"),
                                sack_perm="SAckOK" in opts)
        elif UDP in pkt:
            udp = pkt[UDP]
            key = PacketKey.udp(ip4.src, ip4.dst, udp.sport, udp.dport, len(bytes(udp.payload)))
        else:
            continue
        keys.append((float(pkt.time), key))
    return keys


def _fields(line: str) -> tuple[str, str, bool, bool, int]:
    """(protocol, tcp state or '', ASSURED, UNREPLIED, timeout) of a conntrack -L line."""
    parts = line.split()
    state = parts[3] if parts[0] == "tcp" else ""
    return parts[0], state, "[ASSURED]" in parts, "[UNREPLIED]" in parts, int(parts[2])


def _orig(line: str) -> str:
    """The original-direction tuple text (first src= .. dport= group)."""
    parts = line.split()
    start = next(i for i, p in enumerate(parts) if p.startswith("src="))
    return " ".join(parts[start:start + 4])


def test_reference_matches_kernel_conntrack(tmp_path):
    reason = _skip_reason()
    if reason:
        pytest.skip(reason)
    name = f"ctct-{secrets.token_hex(4)}"
    pcap = tmp_path / "lo.pcap"
    subprocess.run(["ip", "netns", "add", name], check=True, timeout=30)
    dump = None
    try:
        _ns(name, "ip", "link", "set", "lo", "up")
        # A conntrack match makes the kernel register its hooks in this namespace.
        _ns(name, "iptables", "-A", "OUTPUT", "-m", "conntrack", "--ctstate", "INVALID",
            "-j", "ACCEPT")
        dump = subprocess.Popen(["ip", "netns", "exec", name, "tcpdump", "-i", "lo", "-U", "-n",
                                 "-w", str(pcap), "tcp or udp"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        time.sleep(1.5)
        listing = _ns(name, sys.executable, "-c", SCENARIO).stdout
        time.sleep(0.5)
    finally:
        if dump is not None:
            dump.terminate()
            dump.wait(timeout=10)
        subprocess.run(["ip", "netns", "del", name], timeout=30)

    marker, _, listing = listing.partition("\n")
    listed_at = float(marker.split()[1])
    # Replay only what the kernel had seen when it listed (sockets close after the listing).
    keys = [(stamp, key) for stamp, key in _pcap_keys(pcap) if stamp < listed_at]
    assert keys, "tcpdump captured nothing"
    start = keys[0][0]
    table = ConntrackTable()
    for stamp, key in keys:
        verdict = table.process(key, stamp - start)
        if verdict.entry_id is not None:
            table.confirm(verdict.entry_id, stamp - start)
    now = listed_at - start
    ours = {_orig(line): line for line in format_conntrack_list(table.entries(now), now).splitlines()}
    kernel = [line for line in listing.splitlines() if line.strip()]
    assert len(kernel) == 4, listing
    assert set(ours) == {_orig(line) for line in kernel}
    for line in kernel:
        mine = ours[_orig(line)]
        k_proto, k_state, k_assured, k_unreplied, k_timeout = _fields(line)
        proto, state, assured, unreplied, timeout = _fields(mine)
        assert (proto, state, assured, unreplied) == (k_proto, k_state, k_assured, k_unreplied), \
            f"kernel: {line}\nours:   {mine}"
        assert 0 <= timeout - k_timeout <= 3, f"kernel: {line}\nours:   {mine}"
