"""Conntrack throughput: reference table vs numba array kernel on synthetic TCP flows.

Each flow is a handshake, data both ways and a FIN teardown (10 packets); flows are
interleaved round by round, so the table holds every flow at once. Every packet is
confirmed, as a packet that survives the pipeline would be. Reports the median packets/s.

    .venv/bin/python benchmarks/bench_conntrack.py --packets 1000000 --repeat 3 [--write]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from pathlib import Path

import numpy as np

from tracer.conntrack.arrays import ACT_CONFIRM, PKT_DTYPE, ArrayConntrackTable
from tracer.conntrack.reference import ConntrackTable
from tracer.conntrack.tuples import ACK, FIN, PSH, SYN, PacketKey

RESULTS = Path(__file__).with_name("RESULTS.md")
BEGIN, END = "<!-- conntrack:begin -->", "<!-- conntrack:end -->"
# (from client?, flags, seq offset, ack offset, payload) per round; client ISN 1000, server 5000
SCRIPT = [(True, SYN, 0, 0, 0), (False, SYN | ACK, 0, 1, 0), (True, ACK, 1, 1, 0),
          (True, ACK | PSH, 1, 1, 100), (False, ACK | PSH, 1, 101, 200),
          (True, ACK, 101, 201, 0), (True, FIN | ACK, 101, 201, 0),
          (False, ACK, 201, 102, 0), (False, FIN | ACK, 201, 102, 0), (True, ACK, 102, 202, 0)]


def synthetic_batch(n_packets: int) -> np.ndarray:
    flows = n_packets // len(SCRIPT)
    f = np.arange(flows, dtype=np.int64)
    client = (10 << 24 | 65 << 16) + f // 50000
    server = (10 << 24 | 66 << 16) + f % 251
    cport = 1024 + f % 50000
    batch = np.zeros(flows * len(SCRIPT), dtype=PKT_DTYPE)
    for r, (from_client, flags, seq_off, ack_off, payload) in enumerate(SCRIPT):
        rows = batch[r * flows:(r + 1) * flows]
        rows["src"], rows["dst"] = (client, server) if from_client else (server, client)
        rows["sport"], rows["dport"] = (cport, 80) if from_client else (80, cport)
        rows["proto"], rows["tcp_flags"] = 6, flags
        isn, peer = (1000, 5000) if from_client else (5000, 1000)
        rows["seq"] = isn + seq_off
        rows["ack"] = (peer + ack_off) if flags & ACK else 0
        rows["window"], rows["payload_len"] = 502, payload
        rows["icmp_type"] = rows["icmp_code"] = rows["wscale"] = -1
        rows["now"] = r * 0.01 + f * 1e-7
        rows["action"] = ACT_CONFIRM
    return batch


def to_keys(batch: np.ndarray) -> list[tuple[PacketKey, float]]:
    cols = [batch[name].tolist() for name in ("src", "dst", "sport", "dport", "tcp_flags", "seq",
                                              "ack", "window", "payload_len", "now")]
    return [(PacketKey(s, d, 6, sp, dp, tcp_flags=fl, seq=sq, ack=ak, window=w, payload_len=pl), now)
            for s, d, sp, dp, fl, sq, ak, w, pl, now in zip(*cols)]


def run_reference(keys: list[tuple[PacketKey, float]]) -> float:
    table = ConntrackTable(capacity=len(keys))
    start = time.perf_counter()
    for key, now in keys:
        verdict = table.process(key, now)
        if verdict.entry_id is not None:
            table.confirm(verdict.entry_id, now)
    return time.perf_counter() - start


def run_arrays(batch: np.ndarray) -> float:
    table = ArrayConntrackTable(capacity=len(batch))
    start = time.perf_counter()
    out = table.process_batch(batch)
    elapsed = time.perf_counter() - start
    assert (out["ctstate"] == 3).sum() == 0, "synthetic flows must not be INVALID"
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--packets", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--write", action="store_true", help="update benchmarks/RESULTS.md")
    args = parser.parse_args()
    batch = synthetic_batch(args.packets)
    keys = to_keys(batch)
    ArrayConntrackTable(capacity=64).process_batch(batch[:64])   # JIT warm-up, not timed
    ref = [len(batch) / run_reference(keys) for _ in range(args.repeat)]
    arr = [len(batch) / run_arrays(batch) for _ in range(args.repeat)]
    ref_med, arr_med = statistics.median(ref), statistics.median(arr)
    section = "\n".join([
        BEGIN, "## conntrack: reference table vs numba array kernel", "",
        f"Command: `.venv/bin/python benchmarks/bench_conntrack.py --packets {args.packets} "
        f"--repeat {args.repeat} --write`", "",
        f"{len(batch)} packets ({len(batch) // len(SCRIPT)} TCP flows: handshake, data, FIN "
        "teardown; all confirmed; table sized to hold every flow). Median of "
        f"{args.repeat} runs, JIT compile excluded; {platform.processor() or platform.machine()}, "
        f"Python {platform.python_version()}.", "",
        "| implementation | packets/s (median) | runs |", "| --- | ---: | --- |",
        f"| reference (`ConntrackTable.process` + `confirm`) | {ref_med:,.0f} | "
        + ", ".join(f"{v:,.0f}" for v in ref) + " |",
        f"| numba (`ct_process_batch`) | {arr_med:,.0f} | "
        + ", ".join(f"{v:,.0f}" for v in arr) + " |",
        "", f"Speed-up: {arr_med / ref_med:.1f}x.", END, ""])
    print(section)
    if args.write:
        text = RESULTS.read_text() if RESULTS.exists() else "# Benchmark results\n\n"
        if BEGIN in text:
            head, _, rest = text.partition(BEGIN)
            text = head + section + rest.partition(END)[2].lstrip("\n")
        else:
            text = text.rstrip("\n") + "\n\n" + section
        RESULTS.write_text(text)


if __name__ == "__main__":
    main()
