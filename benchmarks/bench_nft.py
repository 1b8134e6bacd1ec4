"""Trace time per packet through felix's nftables table vs its iptables tables (reference
walker and interpreter), and the time to render a node's nftables table.

    .venv/bin/python benchmarks/bench_nft.py [--scenario DIR] [--repeat 5] [--write]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

from tracer.model.loader import load_cluster
from tracer.nft.plug import with_nftables
from tracer.nft.text import format_nft
from tracer.nft.translate import render_nft
from tracer.trace.assemble import build_dataplane
from tracer.trace.tracing import TraceRequest, trace_packet

ROOT = Path(__file__).resolve().parent.parent


def measure(scenario: Path, repeat: int) -> dict:
    cluster = load_cluster([str(scenario)])
    pods = sorted(cluster.endpoints)
    requests = [TraceRequest(a, b, protocol="tcp", port=80) for a in pods for b in pods if a != b]
    out = {"scenario": scenario.name, "packets": len(requests)}
    for name in ("iptables", "nftables"):
        runs = []
        for _ in range(repeat):
            dataplane = build_dataplane(cluster, version="3.32")
            if name == "nftables":
                dataplane, _ = with_nftables(dataplane, "3.32", "reference")
            start = time.perf_counter()
            for request in requests:
                trace_packet(dataplane, request)
            runs.append((time.perf_counter() - start) / len(requests) * 1e3)
        out[name] = runs
    renders = []
    for _ in range(repeat):
        start = time.perf_counter()
        for node in cluster.nodes:
            format_nft(render_nft(cluster, node))
        renders.append((time.perf_counter() - start) / len(cluster.nodes) * 1e3)
    out["render"] = renders
    return out


def report(result: dict, command: str) -> str:
    med = {k: statistics.median(result[k]) for k in ("iptables", "nftables", "render")}
    return "\n".join([
        "<!-- nft:begin -->",
        "## nftables mode: trace and render times",
        "",
        f"Command: `{command}`",
        "",
        f"Scenario {result['scenario']}: {result['packets']} pod-to-pod TCP/80 first packets "
        "(each a fresh run: conntrack, routing, every hook), first-run caches included. Median "
        f"of {len(result['iptables'])} runs on a shared 2-core machine (other jobs running).",
        "",
        "| what | ms (median) | runs |",
        "| --- | ---: | --- |",
        *(f"| {label} | {med[k]:.2f} | {', '.join(f'{v:.2f}' for v in result[k])} |"
          for k, label in (("iptables", "trace, iptables tables (reference interpreter)"),
                           ("nftables", "trace, nftables table (reference walker)"),
                           ("render", "render + format one node's nftables table"))),
        "<!-- nft:end -->",
    ])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--scenario", default=str(ROOT / "scenarios" / "calico-tiers"))
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args()
    command = ".venv/bin/python benchmarks/bench_nft.py" + (
        f" --repeat {args.repeat}" if args.repeat != 5 else "") + " --write"
    text = report(measure(Path(args.scenario), args.repeat), command)
    print(text)
    if args.write:
        results = ROOT / "benchmarks" / "RESULTS.md"
        body = results.read_text()
        if "<!-- nft:begin -->" in body:
            head, rest = body.split("<!-- nft:begin -->", 1)
            body = head + text + rest.split("<!-- nft:end -->", 1)[1]
        else:
            body = body.rstrip("\n") + "\n\n" + text + "\n"
        results.write_text(body)


if __name__ == "__main__":
    main()
