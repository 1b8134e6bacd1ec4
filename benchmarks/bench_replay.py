"""``calico-trace replay`` end to end: packets/s on the reference and the compiled engine, side
by side, beside the parse-only rate of the same file.

Run: .venv/bin/python benchmarks/bench_replay.py --pods 300 --policies 300 --packets 20000 \\
         --flows 2000 --repeat 3 --write

The cluster is ``gen_cluster.py``'s (namespaces with default-deny-ingress, pod- and
namespace-selector policies, 100 pods per node, routed pool: cross-node flows cross two
nodes). The capture: ``--flows`` TCP connections between random pod pairs on the pairs'
``--ports`` (some allowed, most denied by the default-deny policies), each the client's SYN,
the server's SYN-ACK, the client's ACK, a data segment and a FIN, the connections interleaved
to ``--packets`` records (written with struct, Ethernet, checksummed). Each timed run is
``tracer.replay.runner.replay_captures`` over the whole capture on a dataplane whose nodes were
built (and, for the compiled engine, compiled) by an untimed warm-up run, with a fresh run state
(conntrack) each time: what ``replay`` costs per packet once the cluster is loaded. Rates are
packets per CPU second of this process; medians of ``--repeat`` runs, engines interleaved.
"""

from __future__ import annotations

import argparse
import gc
import platform
import random
import statistics
import struct
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from gen_cluster import generate  # noqa: E402

from tracer.capture import read_capture  # noqa: E402
from tracer.encap.ipv4 import internet_checksum  # noqa: E402
from tracer.model.loader import load_cluster  # noqa: E402
from tracer.policy.felix.versions import resolve_version  # noqa: E402
from tracer.replay.runner import replay_captures  # noqa: E402
from tracer.replay.tables import flow_frame, packet_frame  # noqa: E402
from tracer.trace.assemble import build_dataplane  # noqa: E402

RESULTS = Path(__file__).with_name("RESULTS.md")
BEGIN, END = "<!-- replay:begin -->", "<!-- replay:end -->"
PORTS = (8080, 9090, 50051, 80)


def _tcp(src: int, dst: int, sport: int, dport: int, flags: int, seq: int, ack: int,
         data: bytes = b"") -> bytes:
    tcp = struct.pack("!HHIIBBHHH", sport, dport, seq, ack, 0x50, flags, 64240, 0, 0) + data
    head = struct.pack("!BBHHHBBHII", 0x45, 0, 20 + len(tcp), 0, 0x4000, 64, 6, 0, src, dst)
    return head[:10] + struct.pack("!H", internet_checksum(head)) + head[12:] + tcp


def write_capture(path: Path, pod_ips: list[int], packets: int, flows: int, seed: int) -> int:
    rng = random.Random(seed)
    streams = []
    for i in range(flows):
        a, b = rng.sample(pod_ips, 2)
        sp, dp = 32768 + i % 28000, rng.choice(PORTS)
        streams.append([
            _tcp(a, b, sp, dp, 0x02, 1000, 0), _tcp(b, a, dp, sp, 0x12, 5000, 1001),
            _tcp(a, b, sp, dp, 0x10, 1001, 5001),
            _tcp(a, b, sp, dp, 0x18, 1001, 5001, b"x" * 64),
            _tcp(a, b, sp, dp, 0x11, 1065, 5001)])
    order = []
    while len(order) < packets:                 # interleave: each round, every flow's next
        for stream in streams:
            order.append(stream[len(order) // flows % len(stream)])
    eth = b"\x02" * 6 + b"\x04" * 6 + b"\x08\x00"
    out = [struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 262144, 1)]
    for n, ip in enumerate(order[:packets]):
        frame = eth + ip
        ts = 1_700_000_000_000_000 + n * 100       # µs: 10,000 packets per second
        out.append(struct.pack("<IIII", ts // 1_000_000, ts % 1_000_000, len(frame),
                               len(frame)) + frame)
    path.write_bytes(b"".join(out))
    return packets


def timed(fn) -> tuple[float, float, object]:
    gc.collect()
    gc.disable()
    try:
        cpu, wall = time.process_time(), time.perf_counter()
        value = fn()
        return time.process_time() - cpu, time.perf_counter() - wall, value
    finally:
        gc.enable()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pods", type=int, default=300)
    parser.add_argument("--policies", type=int, default=300)
    parser.add_argument("--packets", type=int, default=20000)
    parser.add_argument("--flows", type=int, default=4000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--write", action="store_true", help="update benchmarks/RESULTS.md")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder)
        generate(out / "cluster", args.pods, args.policies, None, args.seed)
        cluster = load_cluster([out / "cluster"])
        version = resolve_version(cluster, None)
        ips = [int(ep.pod.ip) for ep in cluster.endpoints.values()]
        cap_path = out / "replay.pcap"
        write_capture(cap_path, ips, args.packets, args.flows, args.seed)
        cap = read_capture(str(cap_path))
        engines = {"reference": build_dataplane(cluster, version=version)}
        from tracer.engine.runner import compiled
        from tracer.engine.warmup import warm_up
        warm_up()
        engines["compiled"], _ = compiled(build_dataplane(cluster, version=version))
        for dataplane in engines.values():           # build and compile every node: untimed
            replay_captures(dataplane, [cap])
        runs: dict[str, list[tuple[float, float]]] = {"parse only": [], **{e: [] for e in engines}}
        tables = {}
        for _ in range(args.repeat):
            cpu, wall, _ = timed(lambda: read_capture(str(cap_path)))
            runs["parse only"].append((cpu, wall))
            for name, dataplane in engines.items():
                cpu, wall, result = timed(lambda: replay_captures(dataplane, [cap]))
                runs[name].append((cpu, wall))
                packets = packet_frame(result)
                tables[name] = (packets, flow_frame(packets, result))
        same = all(tables["reference"][i].equals(tables["compiled"][i]) for i in (0, 1))
        verdicts = tables["reference"][0]["verdict"].value_counts().to_dict()

    def rate(samples, index):
        return statistics.median(args.packets / s[index] for s in samples)

    command = ("`.venv/bin/python benchmarks/bench_replay.py " + " ".join(sys.argv[1:]) + "`")
    lines = [
        BEGIN, "## replay: captured packets through the dataplane, reference vs compiled",
        "", f"Command: {command}", "",
        f"{args.packets:,} packets in {args.flows:,} TCP connections (SYN, SYN-ACK, ACK, data, "
        f"FIN, interleaved) between random pods of a generated cluster ({args.pods} pods, "
        f"{args.policies} policies, {len(cluster.nodes)} nodes); verdicts "
        f"{', '.join(f'{k} {v:,}' for k, v in sorted(verdicts.items()))}. Per run: "
        "`replay_captures` over the whole capture with a fresh conntrack, nodes built and "
        "compiled beforehand (untimed warm-up run); packet and flow tables not included. "
        f"Median of {args.repeat} runs, engines interleaved; {platform.machine()}, Python "
        f"{platform.python_version()}. Both engines' tables equal: {same}.", "",
        "| run | packets/CPU-s (median) | wall packets/s (median) | CPU runs (s) |",
        "| --- | ---: | ---: | --- |"]
    for name, samples in runs.items():
        lines.append(f"| {name} | {rate(samples, 0):,.0f} | {rate(samples, 1):,.0f} | "
                     f"{', '.join(f'{s[0]:.2f}' for s in samples)} |")
    lines.append(END)
    text = "\n".join(lines)
    print(text)
    if args.write:
        old = RESULTS.read_text()
        if BEGIN in old:
            old = old[:old.index(BEGIN)] + text + old[old.index(END) + len(END):]
        else:
            old = old.rstrip("\n") + "\n\n" + text + "\n"
        RESULTS.write_text(old)


if __name__ == "__main__":
    main()
