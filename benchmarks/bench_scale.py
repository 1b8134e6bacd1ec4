"""The CLI at real cluster sizes, as a user runs it: whole processes, load included.

For each size, a cluster from gen_cluster.py (50 namespaces, deployments of 5, 100 pods per
node, Kubernetes NetworkPolicies); then, each in a fresh process, with a fresh cache folder:
``packet`` cold (the cache is filled), ``packet`` warm (served from the cache), and ``matrix``
warm as a namespace summary and as JSON Lines of one source namespace (every
pair of 10,000 pods would be 10^8 lines, 9 GB) to a file. Wall time and peak RSS (the child's
``ru_maxrss``); median of --repeat runs. Writes a plot of how each grows.

Run: .venv/bin/python benchmarks/bench_scale.py --sizes 1000 2000 4000 10000 --repeat 3 --write
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CLI = [str(Path(sys.executable).parent / "calico-trace")]
GENERATE = [sys.executable, str(ROOT / "benchmarks" / "gen_cluster.py")]
PAIR = re.compile(r"--from (\S+) --to (\S+)")


def timed(argv: list[str], out: Path | None = None) -> tuple[float, float, float]:
    """Wall seconds, peak RSS (MB) and CPU seconds (user + system) of one child process (its
    own rusage, from wait4). On a shared machine the CPU time is the steadier number."""
    start = time.perf_counter()
    with open(out or os.devnull, "w") as sink:
        child = subprocess.Popen(argv, stdout=sink, stderr=subprocess.DEVNULL)
        _, status, usage = os.wait4(child.pid, 0)
    wall = time.perf_counter() - start
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode not in (0, 1):
        raise SystemExit(f"{' '.join(argv)} failed with status {child.returncode}")
    return wall, usage.ru_maxrss / 1024, usage.ru_utime + usage.ru_stime


def measure(size: int, repeat: int, work: Path) -> dict[str, tuple[float, float, float]]:
    cluster = work / f"c{size}"
    said = subprocess.run(GENERATE + ["--pods", str(size), "--policies", str(size),
                                      "--out", str(cluster)], capture_output=True, text=True,
                          check=True).stdout
    src, dst = PAIR.search(said).groups()
    packet = CLI + ["packet", "-f", str(cluster), "--from", src, "--to", dst, "--protocol",
                    "tcp", "--port", "8080", "--verbosity", "summary"]
    matrix = CLI + ["matrix", "-f", str(cluster), "--port", "8080"]
    runs: dict[str, list[tuple[float, float, float]]] = {}
    for _ in range(repeat):
        cache = work / "cache"
        shutil.rmtree(cache, ignore_errors=True)
        with_cache = ["--cache", str(cache)]
        runs.setdefault("packet cold", []).append(timed(packet + with_cache))
        runs.setdefault("packet warm", []).append(timed(packet + with_cache))
        runs.setdefault("matrix summary (warm)", []).append(
            timed(matrix + with_cache + ["-o", "summary"]))
        runs.setdefault("matrix jsonl, one source namespace (warm)", []).append(
            timed(matrix + with_cache + ["-o", "jsonl", "--from-namespace", "ns-00"],
                  out=work / "pairs.jsonl"))
    return {name: (statistics.median(w for w, _, _ in got), max(m for _, m, _ in got),
                   statistics.median(c for _, _, c in got))
            for name, got in runs.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 2000, 4000, 10000])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--write", action="store_true", help="update benchmarks/RESULTS.md")
    args = parser.parse_args()
    results: dict[int, dict[str, tuple[float, float, float]]] = {}
    # As an installed package runs: modules compiled once (PYTHONDONTWRITEBYTECODE in the
    # environment would otherwise have every child compile every module again).
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(ROOT / "tracer")],
                   check=True, stdout=subprocess.DEVNULL)
    with tempfile.TemporaryDirectory(prefix="ct-scale-") as tmp:
        for size in sorted(args.sizes):
            print(f"{size} pods / {size} policies ...", file=sys.stderr, flush=True)
            results[size] = measure(size, args.repeat, Path(tmp))
            for name, (wall, rss, cpu) in results[size].items():
                print(f"  {name:32} {wall:8.2f} s  cpu {cpu:8.2f} s  peak {rss:8.0f} MB",
                      flush=True)
    if args.write:
        plot(results, ROOT / "benchmarks" / "scale_growth.png")
        write_results(results, args)


def plot(results, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = sorted(results)
    fig, (wall_ax, rss_ax) = plt.subplots(1, 2, figsize=(10, 4))
    for name in results[sizes[0]]:
        wall_ax.plot(sizes, [results[s][name][0] for s in sizes], marker="o", label=name)
        rss_ax.plot(sizes, [results[s][name][1] for s in sizes], marker="o", label=name)
    wall_ax.set(xlabel="pods (= policies)", ylabel="wall time (s, median)", xscale="log",
                yscale="log", title="CLI wall time")
    rss_ax.set(xlabel="pods (= policies)", ylabel="peak RSS (MB)", xscale="log",
               title="CLI peak memory")
    wall_ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def write_results(results, args) -> None:
    names = list(next(iter(results.values())))
    header = "| pods / policies | " + " | ".join(names) + " |"
    rule = "| ---: | " + " | ".join("---:" for _ in names) + " |"
    rows = "\n".join(f"| {size:,} | " + " | ".join(
        f"{results[size][n][0]:.1f} s ({results[size][n][2]:.1f} s CPU), "
        f"{results[size][n][1]:,.0f} MB" for n in names) + " |"
                     for size in sorted(results))
    sizes = " ".join(str(s) for s in args.sizes)
    section = f"""<!-- scale:begin -->
## scale (issue #10): the CLI at real cluster sizes, whole processes

Command: `.venv/bin/python benchmarks/bench_scale.py --sizes {sizes} --repeat {args.repeat} --write`

Clusters from `benchmarks/gen_cluster.py` (100 pods per node, as many Kubernetes
NetworkPolicies as pods). Each cell: median wall time of {args.repeat} runs (median CPU
time, user + system, in brackets), largest peak RSS. Cold: empty cache (load, parse, prepare, write the cache); warm: served from it.
The 2 vCPUs were shared with other jobs while this ran: compare rows of one run, not runs.
{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}.
![growth](scale_growth.png)

{header}
{rule}
{rows}
<!-- scale:end -->"""
    path = ROOT / "benchmarks" / "RESULTS.md"
    text = path.read_text()
    if "<!-- scale:begin -->" in text:
        text = re.sub(r"<!-- scale:begin -->.*?<!-- scale:end -->", section, text, flags=re.S)
    else:
        text = text.rstrip() + "\n\n" + section + "\n"
    path.write_text(text)


if __name__ == "__main__":
    main()
