"""The compiled engine against the reference interpreter and the kernel's netfilter,
conntrack against a Python dict, compile time against iptables-restore; the growth plot.

    .venv/bin/python benchmarks/bench_engine.py [--quick] [--write]

Same suite as ``calico-trace bench`` (tracer/bench/suite.py); ``--write`` replaces the engine
section of benchmarks/RESULTS.md and writes benchmarks/engine_growth.png.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import time
from pathlib import Path

import numba
import numpy as np

from tracer.bench.plot import plot_growth
from tracer.bench.report import markdown_table, render_table
from tracer.bench.suite import Plan, run_suite
from tracer.engine.warmup import warm_up

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "RESULTS.md"
PLOT = HERE / "engine_growth.png"
BEGIN, END = "<!-- engine:begin -->", "<!-- engine:end -->"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--write", action="store_true", help="update benchmarks/RESULTS.md")
    parser.add_argument("--json", type=Path, help="also write the records as JSON lines")
    args = parser.parse_args()
    warm_up()
    started = time.time()
    records = run_suite(Plan.quick() if args.quick else Plan.full(),
                        progress=lambda text: print(f"... {text}", flush=True))
    print(render_table(records))
    print(f"({time.time() - started:.0f} s)")
    if args.json:
        args.json.write_text("".join(json.dumps(r.as_dict()) + "\n" for r in records))
    if args.write:
        plot_growth(records, str(PLOT))
        write_results(records, args)


def _iptables_version() -> str:
    try:
        return subprocess.run(["iptables", "-V"], capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "not installed"


def write_results(records, args) -> None:
    command = "benchmarks/bench_engine.py" + (" --quick" if args.quick else "") + " --write"
    section = f"""{BEGIN}
## engine (issue #11): the compiled engine vs the reference interpreter

Command: `.venv/bin/python {command}` (the same suite: `calico-trace bench`).
{platform.machine()}, 2 vCPU shared with other work; Python
{platform.python_version()}, numba {numba.__version__}, numpy {np.__version__}. Rates are
packets per CPU second of the benchmarking process, medians; the reference is sampled (a few
hundred packets, or a few at 10,000 policies) on the same rulesets and packets. Compile times
are wall seconds (iptables-restore runs as another process, in a fresh network namespace,
ipsets included). The kernel rows (root only; tracer/bench/kernel.py) load the same ruleset
into a router namespace between a sender and a receiver (veth) and blast pre-built frames
from the sender for a few seconds: packets/s are the kernel's own rule counters (the rule or
policy that decided the packets, where the reference interpreter says they end) over wall
seconds, medians of 3 runs, on one core (veth runs the router's forwarding in the sender's
softirq, so the sender is included); iptables is {_iptables_version()}.

{markdown_table(records)}

![growth](engine_growth.png)

See "Where the time goes" below for the targets this misses.
{END}"""
    text = RESULTS.read_text()
    if BEGIN in text:
        head, rest = text.split(BEGIN, 1)
        text = head + section + rest.split(END, 1)[1]
    else:
        text = text.rstrip() + "\n\n" + section + "\n"
    RESULTS.write_text(text)


if __name__ == "__main__":
    main()
