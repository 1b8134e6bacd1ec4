"""Reference pipeline throughput: whole packet traces per second, median of several runs.

The pure-Python reference is the truth the numba path of a later issue will be measured
against; this records its cost per packet on bundled scenarios (same node, cross-node VXLAN,
through a Service) so that comparison has a baseline from the same machine.

    .venv/bin/python benchmarks/bench_pipeline.py --packets 2000 --repeat 5 [--write]
"""

from __future__ import annotations

import argparse
import platform
import re
import statistics
import time
from pathlib import Path

from tracer.trace.assemble import build_dataplane
from tracer.model.loader import load_cluster
from tracer.explain import explain
from tracer.trace.tracing import TraceRequest, trace_packet

ROOT = Path(__file__).resolve().parent.parent
CASES = (
    ("same node, default deny", "backend-from-frontend", "myns/other", "myns/backend", 6379),
    ("same node, allowed", "backend-from-frontend", "myns/frontend", "myns/backend", 6379),
    ("cross node VXLAN, allowed", "multinode-vxlan", "shop/frontend-7d4b9",
     "shop/backend-5f8c2", 6379),
    ("pod to Service (DNAT, IPIP)", "service-clusterip", "demo/client", "10.96.0.50", 80),
)


def run_case(scenario: str, src: str, dst: str, port: int, packets: int,
             clock=time.perf_counter) -> float:
    dataplane = build_dataplane(load_cluster([ROOT / "scenarios" / scenario]), version="3.32")
    request = TraceRequest(src, dst, port=port)
    explain(dataplane, trace_packet(dataplane, request))  # warm caches (selectors, ipset index)
    start = clock()
    for _ in range(packets):
        explain(dataplane, trace_packet(dataplane, request))
    return packets / (clock() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--packets", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                        help="cpu: traces per CPU second of this process (for a shared "
                             "machine, where wall time measures the neighbours too)")
    parser.add_argument("--write", action="store_true", help="update benchmarks/RESULTS.md")
    args = parser.parse_args()
    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    rows = []
    for label, scenario, src, dst, port in CASES:
        runs = [run_case(scenario, src, dst, port, args.packets, clock)
                for _ in range(args.repeat)]
        rows.append((label, statistics.median(runs), runs))
        print(f"{label:32} {statistics.median(runs):10,.0f} traces/s  "
              f"(runs: {', '.join(f'{r:,.0f}' for r in runs)})")
    if args.write:
        write_results(rows, args)


def write_results(rows, args) -> None:
    table = "\n".join(f"| {label} | {median:,.0f} | {', '.join(f'{r:,.0f}' for r in runs)} |"
                      for label, median, runs in rows)
    section = f"""<!-- pipeline:begin -->
## pipeline: reference packet traces per second

Command: `.venv/bin/python benchmarks/bench_pipeline.py --packets {args.packets} --repeat {args.repeat} --write`

A full trace per packet (fresh conntrack session, every hook and table on every node, routing,
framing, explanation). Median of {args.repeat} runs of {args.packets} packets;
{platform.machine()}, Python {platform.python_version()}.

| case | traces/s (median) | runs |
| --- | ---: | --- |
{table}
<!-- pipeline:end -->"""
    path = ROOT / "benchmarks" / "RESULTS.md"
    text = path.read_text() if path.exists() else "# Benchmark results\n"
    if "<!-- pipeline:begin -->" in text:
        text = re.sub(r"<!-- pipeline:begin -->.*?<!-- pipeline:end -->", section, text,
                      flags=re.S)
    else:
        text = text.rstrip() + "\n\n" + section + "\n"
    path.write_text(text)


if __name__ == "__main__":
    main()
