"""Live mode throughput and latency: the kernel, a bare Python TUN forwarder, `calico-trace up`.

Three paths carry the same traffic between two pods, measured in one run:

- kernel: pod A -- veth -- router namespace (ip_forward) -- veth -- pod B; no userspace.
- bare: the pods' TUN devices as `up` makes them, one Python loop that reads a packet and
  writes it to the TUN owning its destination: the floor any Python TUN forwarder pays.
- live: `calico-trace up` on the scenario: parse, the full pipeline (policy, conntrack,
  routing), rewrite, write.

Workloads: iperf3 UDP (datagrams/s received, at an offered rate far above what Python
forwards), iperf3 TCP (Gbit/s), ping RTT (p50/p99). Medians of --repeat runs.

    .venv/bin/python benchmarks/bench_live.py --repeat 3 --seconds 3 [--write]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import select
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from pathlib import Path

from pyroute2 import IPRoute
from pyroute2 import netns as pyroute2_netns

from tracer.kernel import cleanup, nsexec
from tracer.live.frames import VNET_HDR_LEN
from tracer.live.netns import LiveNamespaces
from tracer.live.topology import live_pods
from tracer.model.loader import load_cluster

REPO = Path(__file__).resolve().parent.parent
SCENARIO = "backend-from-frontend"
CLIENT, SERVER = "myns/backend", "myns/frontend"      # no policy selects the frontend
CROSS_CLIENT, CROSS_SERVER = "shop/backend-5f8c2", "shop/frontend-7d4b9"  # node-2 -> node-1
CLI = [sys.executable, "-c", "from tracer.cli import main; main()"]
UDP_RATE, UDP_LEN = "2G", 1200          # far above what any path here forwards
PORT = 5201


# ------------------------------------------------------------------ the three paths

@contextmanager
def kernel_path():
    """Two pod namespaces routed through a third by the kernel; yields (client, server, ip)."""
    dog = cleanup.Watchdog()
    dog.start()
    names = []
    try:
        for _ in range(3):
            name = cleanup.new_namespace_name()
            dog.announce(name)
            pyroute2_netns.create(name)
            names.append(name)
        a, r, b = names
        for pod, port, net in ((a, "ra", "10.1.0"), (b, "rb", "10.2.0")):
            with IPRoute(netns=r, flags=0) as ipr:
                ipr.link("add", ifname=port, kind="veth", peer={"ifname": "eth0",
                                                                 "net_ns_fd": pod})
                idx = ipr.link_lookup(ifname=port)[0]
                ipr.addr("add", index=idx, address=f"{net}.254", prefixlen=24)
                ipr.link("set", index=idx, state="up")
            with IPRoute(netns=pod, flags=0) as ipr:
                idx = ipr.link_lookup(ifname="eth0")[0]
                ipr.addr("add", index=idx, address=f"{net}.1", prefixlen=24)
                ipr.link("set", index=idx, state="up")
                ipr.link("set", index=ipr.link_lookup(ifname="lo")[0], state="up")
                ipr.route("add", dst="0.0.0.0/0", gateway=f"{net}.254")
        nsexec.write_sysctls(r, {"net/ipv4/ip_forward": 1})
        yield a, b, "10.2.0.1"
    finally:
        for name in names:
            cleanup.remove_namespace(name)
        dog.release()


@contextmanager
def bare_path(offload: bool = False):
    """The scenario's pods on TUNs, forwarded by a minimal Python loop (no pipeline)."""
    cluster = load_cluster([str(REPO / "scenarios" / SCENARIO)])
    skip = VNET_HDR_LEN if offload else 0
    with LiveNamespaces(live_pods(cluster), offload=offload) as spaces:
        by_ip = {port.end.ip.packed: port.fd for port in spaces.ports.values()}
        stop = threading.Event()

        def forward() -> None:
            poller = select.epoll()
            for fd in by_ip.values():
                poller.register(fd, select.EPOLLIN)
            while not stop.is_set():
                for fd, _ in poller.poll(0.2):
                    for _ in range(64):
                        try:
                            data = os.read(fd, 1 << 17)
                        except BlockingIOError:
                            break
                        out = by_ip.get(data[skip + 16:skip + 20])
                        if out is not None:
                            try:
                                os.write(out, data)
                            except OSError:
                                pass

        thread = threading.Thread(target=forward, daemon=True)
        thread.start()
        try:
            yield (spaces.ports[CLIENT].netns, spaces.ports[SERVER].netns,
                   str(spaces.ports[SERVER].end.ip))
        finally:
            stop.set()
            thread.join()


@contextmanager
def live_path(offload: bool = True, scenario: str = SCENARIO, client: str = CLIENT,
              server: str = SERVER):
    """`calico-trace up` on the scenario, in a private state directory."""
    with tempfile.TemporaryDirectory() as run_dir:
        env = {**os.environ, "CALICO_TRACE_RUN_DIR": run_dir}
        log = open(Path(run_dir) / "up.out", "w")
        proc = subprocess.Popen([*CLI, "up", "-f", str(REPO / "scenarios" / scenario),
                                 "--no-cache", "--offload" if offload else "--no-offload"],
                                stdout=log, stderr=subprocess.STDOUT, env=env)
        state = Path(run_dir) / "live.json"
        try:
            while not state.exists():
                if proc.poll() is not None:
                    raise SystemExit(f"up failed: {(Path(run_dir) / 'up.out').read_text()}")
                time.sleep(0.05)
            pods = json.loads(state.read_text())["pods"]
            yield pods[client]["netns"], pods[server]["netns"], pods[server]["ip"]
        finally:
            proc.terminate()
            proc.wait(timeout=30)
            log.close()


BARE = "bare Python TUN forwarder, no offloads"
PATHS = {"kernel (veth + forwarding netns)": kernel_path,
         BARE: bare_path,
         "bare Python TUN forwarder, offloads": lambda: bare_path(True),
         "calico-trace up --no-offload": lambda: live_path(False),
         "calico-trace up (offloads: TSO, checksum)": live_path,
         # across two nodes: the pipeline frames and unframes every walked packet
         "calico-trace up, cross-node VXLAN (offloads)": lambda: live_path(
             True, "multinode-vxlan", CROSS_CLIENT, CROSS_SERVER),
         "calico-trace up, cross-node WireGuard (offloads)": lambda: live_path(
             True, "multinode-wireguard", CROSS_CLIENT, CROSS_SERVER)}


# ------------------------------------------------------------------ workloads

def iperf3(client: str, server: str, ip: str, seconds: float, udp: bool) -> dict:
    srv = nsexec.popen(server, ["iperf3", "-s", "-1", "-p", str(PORT)],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(0.3)
        argv = ["iperf3", "-c", ip, "-p", str(PORT), "-t", str(seconds), "-J"]
        if udp:
            argv += ["-u", "-b", UDP_RATE, "-l", str(UDP_LEN)]
        out = nsexec.run(client, argv, timeout=seconds + 30)
        return json.loads(out)["end"]
    finally:
        srv.kill()
        srv.wait()


def udp_pps(end: dict) -> float:
    s = end["sum"]
    return (s["packets"] - s["lost_packets"]) / s["seconds"]


def tcp_gbps(end: dict) -> float:
    return end["sum_received"]["bits_per_second"] / 1e9


def ping_rtts(client: str, ip: str, count: int = 100) -> tuple[float, float]:
    out = nsexec.run(client, ["ping", "-c", str(count), "-i", "0.01", "-n", ip], timeout=60)
    rtts = sorted(float(line.split("time=")[1].split()[0]) for line in out.splitlines()
                  if "time=" in line)
    return rtts[len(rtts) // 2], rtts[min(len(rtts) - 1, int(len(rtts) * 0.99))]


def measure(seconds: float, repeat: int) -> dict[str, dict[str, list[float]]]:
    results: dict[str, dict[str, list[float]]] = {}
    for name, path in PATHS.items():
        runs: dict[str, list[float]] = {"udp_pps": [], "tcp_gbps": [], "p50": [], "p99": []}
        with path() as (client, server, ip):
            ping_rtts(client, ip, 10)                     # warm: conntrack, ARP, caches
            for _ in range(repeat):
                runs["udp_pps"].append(udp_pps(iperf3(client, server, ip, seconds, True)))
                runs["tcp_gbps"].append(tcp_gbps(iperf3(client, server, ip, seconds, False)))
                p50, p99 = ping_rtts(client, ip)
                runs["p50"].append(p50)
                runs["p99"].append(p99)
        results[name] = runs
        print(f"{name}: {json.dumps(runs)}", file=sys.stderr)
    return results


def report(results, seconds: float, repeat: int) -> str:
    med = {n: {k: statistics.median(v) for k, v in r.items()} for n, r in results.items()}
    bare = med[BARE]["udp_pps"]
    bare_tcp = med[BARE]["tcp_gbps"]
    lines = [
        "## live (issue #13): `calico-trace up` vs a bare Python TUN forwarder vs the kernel",
        "",
        f"Command: `.venv/bin/python benchmarks/bench_live.py --repeat {repeat} "
        f"--seconds {seconds:g} --write`",
        "",
        f"Scenario {SCENARIO}, {CLIENT} -> {SERVER} (one node; no policy selects the server, "
        "so policy is the pod's egress chains and the namespace profile). iperf3 UDP "
        f"{UDP_LEN}-byte datagrams offered at {UDP_RATE}bit/s (received datagrams/s), iperf3 "
        f"TCP, {seconds:g} s each; ping -i 0.01 x100 RTT. The cross-node rows: "
        f"{CROSS_CLIENT} on node-2 -> {CROSS_SERVER} on node-1 of the multinode scenarios "
        "(no policy selects the server). "
        f"Median of {repeat} runs; "
        f"{platform.machine()}, Python {platform.python_version()}.",
        "",
        "| path | UDP datagrams/s | vs bare | TCP Gbit/s | vs bare | ping p50 ms | p99 ms |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for name, m in med.items():
        lines.append(f"| {name} | {m['udp_pps']:,.0f} | {m['udp_pps'] / bare:.2f}x | "
                     f"{m['tcp_gbps']:.3f} | {m['tcp_gbps'] / bare_tcp:.2f}x | "
                     f"{m['p50']:.3f} | {m['p99']:.3f} |")
    lines += ["", NOTES]
    return "\n".join(lines) + "\n"


NOTES = """"vs bare" is against the bare forwarder without offloads (one MTU-sized packet per read).
`up` runs the first packets of a flow through the whole pipeline (policy, conntrack, routing,
framing) and later ones through the established-flow fast path: the destination read from the
datagram's bytes, each conntrack lookup of the remembered walk replayed (TCP window tracking
included; on WireGuard crossings the outer flow's too, without redoing the crypto), the bytes
patched. A one-way UDP stream stays NEW in conntrack and replays its NEW walk. With offloads
the pods hand over TCP segments of up to 64 KiB, so one step moves ~40 MTU-sized packets; UDP
is not segmented by offloads. Sender, forwarder and receiver share the 2 vCPUs, so the UDP
figures are what the three together reach; the kernel's is bounded by the iperf3 sender."""


def write_results(text: str) -> None:
    path = REPO / "benchmarks" / "RESULTS.md"
    old = path.read_text()
    begin, end = "<!-- live:begin -->", "<!-- live:end -->"
    block = f"{begin}\n{text}{end}\n"
    if begin in old:
        old = old[:old.index(begin)] + block + old[old.index(end) + len(end) + 1:]
    else:
        old = old.rstrip("\n") + "\n\n" + block
    path.write_text(old)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--write", action="store_true", help="update benchmarks/RESULTS.md")
    args = parser.parse_args()
    text = report(measure(args.seconds, args.repeat), args.seconds, args.repeat)
    print(text)
    if args.write:
        write_results(text)


if __name__ == "__main__":
    main()
