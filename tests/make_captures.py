"""Make the bundled captures in tests/data/captures/ from real traffic (root).

Realises ``tracer.kernel.samples.two_node_topology(vxlan=True, b_ingress=80)`` with the
kernel judge's lab (network namespaces, felix-shaped rules, the kernel's ``vxlan.calico``),
adds a Service DNAT rule on node-1, runs real programs in the pods (a Python HTTP
server, ``curl``, ``ping``, Python sockets) and captures with ``tcpdump`` (pcap) and
``dumpcap`` (pcapng; tcpdump cannot write it). Every namespace is removed on exit.

    .venv/bin/python tests/make_captures.py tests/data/captures
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

from tracer.kernel import nsexec
from tracer.kernel.realise import KernelLab
from kernel_samples import POD_A, two_node_topology

CLIENT, WEB = "10.65.0.2", "10.65.1.2"
SERVICE = "10.96.0.10"
PY = sys.executable

# A minimal HTTP server (http.server would first wait for a reverse DNS lookup of its address).
SERVER = f"""
import socket
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("{WEB}", 80))
s.listen()
while True:
    conn, _ = s.accept()
    conn.recv(4096)
    conn.sendall(b"HTTP/1.0 200 OK\\r\\nContent-Length: 3\\r\\n\\r\\nok\\n")
    conn.close()
"""

# A TCP segment with only ACK set, sent from a raw socket: no connection exists for it.
STRAY_ACK = f"""
import socket, struct
src, dst = socket.inet_aton("{CLIENT}"), socket.inet_aton("{WEB}")
hdr = struct.pack("!HHIIBBHHH", 40123, 80, 123456, 654321, 5 << 4, 0x10, 5000, 0, 0)
pseudo = src + dst + struct.pack("!BBH", 0, 6, len(hdr))
data = pseudo + hdr
s = sum(struct.unpack("!%dH" % (len(data) // 2), data))
while s >> 16: s = (s & 0xffff) + (s >> 16)
hdr = hdr[:16] + struct.pack("!H", ~s & 0xffff) + hdr[18:]
sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_TCP)
sock.sendto(hdr, ("{WEB}", 0))
"""

# UDP to a port nobody listens on: the client's kernel answers ICMP port unreachable.
CLOSED_PORT = f"""
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("{WEB}", 40999))
s.sendto(b"is anyone there", ("{CLIENT}", 9999))
"""

# A 3000-byte UDP datagram with PMTU discovery off: the sender's kernel fragments it.
FRAGMENTED = f"""
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.IPPROTO_IP, 10, 0)      # IP_MTU_DISCOVER = IP_PMTUDISC_DONT
s.bind(("{CLIENT}", 41000))
s.sendto(bytes(range(256)) * 11 + bytes(184), ("{WEB}", 5000))
"""


class Capture:
    """tcpdump or dumpcap running in a namespace until the block ends."""

    def __init__(self, ns: str, argv: list[str]):
        self.ns, self.argv = ns, argv

    def __enter__(self) -> "Capture":
        self.proc = nsexec.popen(self.ns, self.argv, stdout=subprocess.DEVNULL,
                                 stderr=subprocess.PIPE, text=True)
        deadline = time.time() + 10
        while time.time() < deadline:          # both print a line once the socket is open
            line = self.proc.stderr.readline()
            if "listening on" in line or "Capturing on" in line:
                break
        time.sleep(1.0)
        return self

    def __exit__(self, *exc) -> None:
        time.sleep(1.5)                        # libpcap's ring blocks time out after 1 s
        self.proc.send_signal(signal.SIGINT)
        self.proc.wait(timeout=10)


def tcpdump(ns: str, out: Path, *args: str) -> Capture:
    return Capture(ns, ["tcpdump", "-n", "-U", "--immediate-mode", "-w", str(out), *args])


def dumpcap(ns: str, out: Path, *ifaces: str) -> Capture:
    argv = ["dumpcap", "-q", "-w", str(out)]
    for iface in ifaces:
        argv += ["-i", iface]
    return Capture(ns, argv)


def run(ns: str, *argv: str, check: bool = True) -> None:
    try:
        nsexec.run(ns, list(argv), timeout=20)
    except nsexec.CommandFailed:
        if check:
            raise


def main(out_dir: str) -> None:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with KernelLab(two_node_topology(vxlan=True, b_ingress=80)) as lab:
        node1 = lab.netns_of_node("node-1")
        client, web = lab.netns_of_pod("default/client"), lab.netns_of_pod("default/web")
        run(node1, "iptables", "-w", "-t", "nat", "-I", "PREROUTING", "-d", SERVICE, "-p",
            "tcp", "--dport", "80", "-j", "DNAT", "--to-destination", f"{WEB}:80")
        server = nsexec.popen(web, [PY, "-c", SERVER],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            time.sleep(1.0)
            curl = ("curl", "-s", "-o", "/dev/null", "--max-time", "5")
            with tcpdump(node1, out / "tcp-handshake.pcap", "-i", POD_A):
                run(client, *curl, f"http://{WEB}/")
            with dumpcap(node1, out / "denied.pcapng", POD_A):
                run(client, "curl", "-s", "--max-time", "2", f"http://{WEB}:81/", check=False)
            with tcpdump(node1, out / "icmp-error.pcap", "-i", POD_A,
                         "--time-stamp-precision=nano"):
                run(web, PY, "-c", CLOSED_PORT)
            with tcpdump(node1, out / "stray-ack.pcap", "-i", POD_A):
                run(client, PY, "-c", STRAY_ACK)
            with tcpdump(node1, out / "service-dnat-sll2.pcap", "-i", "any"):
                run(client, *curl, f"http://{SERVICE}/")
            with tcpdump(node1, out / "service-dnat-sll.pcap", "-i", "any", "-y", "LINUX_SLL"):
                run(client, *curl, f"http://{SERVICE}/")
            with tcpdump(node1, out / "vxlan-underlay.pcap", "-i", "eth0"):
                run(client, *curl, f"http://{WEB}/")
                run(web, "ping", "-c", "2", "-i", "0.2", CLIENT)
            with dumpcap(node1, out / "fragments.pcapng", POD_A, "eth0"):
                run(client, PY, "-c", FRAGMENTED)
        finally:
            server.kill()
            server.wait()


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "tests/data/captures")
