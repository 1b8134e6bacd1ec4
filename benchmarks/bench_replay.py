"""``calico-trace replay`` end to end: packets/s with the decision cache (walks on the reference
and on the compiled engine), the full walk of every packet, and the parse-only rate of the same
file, side by side.

Run (the issue's workload: 1 M packets in 10,000 flows, 1,000 policies):
    .venv/bin/python benchmarks/bench_replay.py --pods 1000 --policies 1000 --packets 1000000 \\
         --flows 10000 --full-walk-packets 20000 --repeat 1 --write

The cluster is ``gen_cluster.py``'s (namespaces with default-deny-ingress, pod- and
namespace-selector policies, 100 pods per node, routed pool: cross-node flows cross two
nodes). The capture: ``--flows`` TCP connections between random pod pairs on the pairs'
``--ports`` (some allowed, most denied by the default-deny policies), each the client's SYN,
the server's SYN-ACK, the client's ACK, a data segment and a FIN, the connections interleaved
to ``--packets`` records (written with struct, Ethernet, checksummed). Each timed run is
``tracer.replay.runner.replay_captures`` over the whole capture on a dataplane whose nodes were
built (and, for the compiled engine, compiled) by an untimed warm-up run, with a fresh run state
(conntrack) each time: what ``replay`` costs per packet once the cluster is loaded. The full
walk (``fast=False``, every packet through the pipeline) runs on the capture's first
``--full-walk-packets`` packets only (it is ~1,000x slower); the decision cache's tables are
checked equal to it there. Rates are packets per CPU second of this process; medians of
``--repeat`` runs, runs interleaved.
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


def write_capture(path: Path, pod_ips: list[int], packets: int, flows: int, seed: int,
                  keep: int | None = None) -> int:
    """The capture; ``keep``: only its first ``keep`` packets (the same ones)."""
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
    for n, ip in enumerate(order[:packets if keep is None else keep]):
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
    parser.add_argument("--full-walk-packets", type=int, default=5000,
                        help="time the full walk on this many first packets")
    parser.add_argument("--skip-compiled", action="store_true",
                        help="leave out the decision cache with compiled walks")
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
        prefix_n = min(args.full_walk_packets, args.packets)
        prefix_path = out / "prefix.pcap"
        write_capture(prefix_path, ips, args.packets, args.flows, args.seed, keep=prefix_n)
        prefix = read_capture(str(prefix_path))
        from tracer.engine.runner import compiled
        from tracer.engine.warmup import warm_up
        warm_up()
        reference = build_dataplane(cluster, version=version)
        compiled_dp, _ = compiled(build_dataplane(cluster, version=version))
        for dataplane in (reference,) if args.skip_compiled else (reference, compiled_dp):
            for name in dataplane.nodes:
                dataplane.nodes[name]
            replay_captures(dataplane, [prefix], fast=False)
        todo = {
            "parse only": (args.packets, lambda: read_capture(str(cap_path))),
            "decision cache, reference walks (default)": (
                args.packets, lambda: replay_captures(reference, [cap])),
            "decision cache, compiled walks": (
                args.packets, lambda: replay_captures(compiled_dp, [cap])),
            f"full walk, reference (first {prefix_n:,} packets)": (
                prefix_n, lambda: replay_captures(reference, [prefix], fast=False)),
        }
        if args.skip_compiled:
            del todo["decision cache, compiled walks"]
        runs: dict[str, list[tuple[float, float]]] = {name: [] for name in todo}
        counts = {name: n for name, (n, _) in todo.items()}
        results = {}
        for _ in range(args.repeat):
            for name, (_, fn) in todo.items():
                cpu, wall, result = timed(fn)
                runs[name].append((cpu, wall))
                results[name] = result
        cached = results["decision cache, reference walks (default)"]
        fast_note = (f"{cached.fast_path}; explaining the flows (flow table's why) took "
                     f"{cached.explain_seconds:.1f} CPU-s")
        tables = {}
        for name, result in results.items():
            if name != "parse only":
                packets = packet_frame(result)
                tables[name] = (packets, flow_frame(packets, result))
        names = [n for n in tables]
        same_engines = "not run (--skip-compiled)" if args.skip_compiled else all(
            tables[names[0]][i].equals(tables[names[1]][i]) for i in (0, 1))
        cached_prefix = replay_captures(reference, [prefix])
        packets = packet_frame(cached_prefix)
        same_walk = packets.equals(tables[names[-1]][0]) and \
            flow_frame(packets, cached_prefix).equals(tables[names[-1]][1])
        verdicts = tables[names[0]][0]["verdict"].value_counts().to_dict()

    def rate(name, samples, index):
        return statistics.median(counts[name] / s[index] for s in samples)

    command = ("`.venv/bin/python benchmarks/bench_replay.py " + " ".join(sys.argv[1:]) + "`")
    lines = [
        BEGIN, "## replay: captured packets through the dataplane: decision cache, full walk, "
        "parse only",
        "", f"Command: {command}", "",
        f"{args.packets:,} packets in {args.flows:,} TCP connections (SYN, SYN-ACK, ACK, data, "
        f"FIN, interleaved) between random pods of a generated cluster ({args.pods} pods, "
        f"{args.policies} policies, {len(cluster.nodes)} nodes); verdicts "
        f"{', '.join(f'{k} {v:,}' for k, v in sorted(verdicts.items()))}. Per run: "
        "`replay_captures` with a fresh conntrack, nodes built and compiled beforehand "
        "(untimed warm-up run); packet and flow tables not included. "
        f"Median of {args.repeat} run(s), runs interleaved; {platform.machine()}, Python "
        f"{platform.python_version()}. Decision cache: {fast_note}. Tables equal, cache with "
        f"reference vs compiled walks: {same_engines}; cache vs full walk on the first "
        f"{prefix_n:,} packets: {same_walk}.", "",
        "| run | packets | packets/CPU-s (median) | wall packets/s (median) | vs parse only "
        "| CPU runs (s) |",
        "| --- | ---: | ---: | ---: | ---: | --- |"]
    parse = rate("parse only", runs["parse only"], 0)
    for name, samples in runs.items():
        lines.append(f"| {name} | {counts[name]:,} | {rate(name, samples, 0):,.0f} | "
                     f"{rate(name, samples, 1):,.0f} | {rate(name, samples, 0) / parse:.3f}x | "
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
