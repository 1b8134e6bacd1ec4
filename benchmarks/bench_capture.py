"""Capture parsing: our vectorised reader vs dpkt vs scapy on the same pcap file.

Run: .venv/bin/python benchmarks/bench_capture.py --packets 1000000 --flows 10000 --repeat 3 --write

The file: Ethernet frames of ``--flows`` flows (60% TCP, 30% UDP, 10% ICMP echo; a fifth of the
flows 802.1Q-tagged), each flow a few distinct packets both ways, interleaved at random to
``--packets`` records. Every parser extracts the same facts per packet: addresses,
protocol, ports or ICMP type/code, TCP flags. Ours: ``read_capture`` (file read, record walk,
link layer, IPv4 checks and checksum, L4 fields, tunnel and fragment checks), JIT compile
excluded. dpkt: ``dpkt.pcap.Reader`` + ``dpkt.ethernet.Ethernet`` over the whole file. scapy
(``PcapReader``) is too slow for the whole file: it reads the first ``--scapy-sample``
packets and its rate is extrapolated, as the table says. Medians of ``--repeat`` runs.
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import statistics
import struct
import tempfile
import time
from pathlib import Path

import numpy as np

from tracer.capture import read_capture
from tracer.encap.ipv4 import internet_checksum

RESULTS = Path(__file__).with_name("RESULTS.md")
BEGIN, END = "<!-- capture:begin -->", "<!-- capture:end -->"


def _ip(src: int, dst: int, proto: int, payload: bytes, ident: int) -> bytes:
    head = struct.pack("!BBHHHBBHII", 0x45, 0, 20 + len(payload), ident, 0x4000, 64, proto, 0,
                       src, dst)
    return head[:10] + struct.pack("!H", internet_checksum(head)) + head[12:] + payload


def _flow_frames(i: int, rng: np.random.Generator) -> list[bytes]:
    """A few distinct frames of flow ``i``, both directions."""
    a, b = 0x0A410000 | (i % 60000 + 2), 0x0A420000 | ((i * 7) % 60000 + 2)
    sport, dport = 32768 + i % 28000, int(rng.choice([80, 443, 6379, 53, 8080]))
    kind = rng.random()
    if kind < 0.6:
        def tcp(s, d, sp, dp, flags, data=b""):
            return _ip(s, d, 6, struct.pack("!HHIIBBHHH", sp, dp, 1000 + i, 2000 + i, 0x50,
                                            flags, 64240, 0, 0) + data, i & 0xFFFF)
        frames = [tcp(a, b, sport, dport, 0x02), tcp(b, a, dport, sport, 0x12),
                  tcp(a, b, sport, dport, 0x18, b"x" * 64), tcp(b, a, dport, sport, 0x10),
                  tcp(a, b, sport, dport, 0x11)]
    elif kind < 0.9:
        frames = [_ip(a, b, 17, struct.pack("!HHHH", sport, dport, 8 + 40, 0) + b"q" * 40, i),
                  _ip(b, a, 17, struct.pack("!HHHH", dport, sport, 8 + 100, 0) + b"r" * 100, i)]
    else:
        frames = [_ip(a, b, 1, struct.pack("!BBHHH", 8, 0, 0, i & 0xFFFF, 1) + b"p" * 56, i),
                  _ip(b, a, 1, struct.pack("!BBHHH", 0, 0, 0, i & 0xFFFF, 1) + b"p" * 56, i)]
    vlan = struct.pack("!HH", 0x8100, 100 + i % 50) if rng.random() < 0.2 else b""
    l2 = bytes.fromhex("020000000002020000000001") + vlan + b"\x08\x00"
    return [l2 + f for f in frames]


def make_capture(path: str, packets: int, flows: int, seed: int = 1) -> None:
    rng = np.random.default_rng(seed)
    per_flow = [_flow_frames(i, rng) for i in range(flows)]
    which = rng.integers(0, flows, packets)
    step = rng.integers(0, 5, packets)
    out = [struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 262144, 1)]
    for n, (f, s) in enumerate(zip(which.tolist(), step.tolist())):
        frames = per_flow[f]
        frame = frames[s % len(frames)]
        out.append(struct.pack("<IIII", 1_764_000_000 + n // 1_000_000, n % 1_000_000,
                               len(frame), len(frame)))
        out.append(frame)
    with open(path, "wb") as handle:
        handle.write(b"".join(out))


def run_ours(path: str) -> int:
    cap = read_capture(path)
    return len(cap) + len(cap.skipped)


def run_dpkt(path: str) -> int:
    import dpkt

    count = 0
    with open(path, "rb") as handle:
        for _, buf in dpkt.pcap.Reader(handle):
            ip = dpkt.ethernet.Ethernet(buf).data
            if isinstance(ip, dpkt.ip.IP):
                src, dst, proto, l4 = ip.src, ip.dst, ip.p, ip.data
                if isinstance(l4, dpkt.tcp.TCP):
                    _ = (src, dst, proto, l4.sport, l4.dport, l4.flags)
                elif isinstance(l4, dpkt.udp.UDP):
                    _ = (src, dst, proto, l4.sport, l4.dport)
                elif isinstance(l4, dpkt.icmp.ICMP):
                    _ = (src, dst, proto, l4.type, l4.code)
            count += 1
    return count


def run_scapy(path: str, sample: int) -> int:
    from scapy.layers.inet import ICMP, IP, TCP, UDP
    from scapy.utils import PcapReader

    count = 0
    with PcapReader(path) as reader:
        for pkt in reader:
            if IP in pkt:
                ip = pkt[IP]
                if TCP in pkt:
                    _ = (ip.src, ip.dst, ip.proto, pkt[TCP].sport, pkt[TCP].dport,
                             int(pkt[TCP].flags))
                elif UDP in pkt:
                    _ = (ip.src, ip.dst, ip.proto, pkt[UDP].sport, pkt[UDP].dport)
                elif ICMP in pkt:
                    _ = (ip.src, ip.dst, ip.proto, pkt[ICMP].type, pkt[ICMP].code)
            count += 1
            if count == sample:
                break
    return count


def timed(fn, *args) -> tuple[int, float, float]:
    """(count, CPU seconds of this process, wall seconds), with the garbage of the previous
    parser collected first and the cyclic GC off while timing, as ``timeit`` does."""
    gc.collect()
    gc.disable()
    try:
        cpu, wall = time.process_time(), time.perf_counter()
        count = fn(*args)
        return count, time.process_time() - cpu, time.perf_counter() - wall
    finally:
        gc.enable()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--packets", type=int, default=1_000_000)
    parser.add_argument("--flows", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--scapy-sample", type=int, default=20_000)
    parser.add_argument("--write", action="store_true", help="update benchmarks/RESULTS.md")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "bench.pcap")
        make_capture(path, args.packets, args.flows)
        size = os.path.getsize(path)
        run_ours(path)                                   # JIT compile / cache load, not timed
        rates: dict[str, list[float]] = {"ours": [], "dpkt": [], "scapy": []}
        walls: dict[str, list[float]] = {"ours": [], "dpkt": [], "scapy": []}
        for _ in range(args.repeat):                     # side by side, interleaved
            for name, fn, extra in (("ours", run_ours, ()), ("dpkt", run_dpkt, ()),
                                    ("scapy", run_scapy, (args.scapy_sample,))):
                count, cpu, wall = timed(fn, path, *extra)
                rates[name].append(count / cpu)
                walls[name].append(count / wall)
        assert run_ours(path) == args.packets
        load = os.getloadavg()[0]
    med = {name: statistics.median(values) for name, values in rates.items()}
    wall = {name: statistics.median(values) for name, values in walls.items()}
    runs = {name: ", ".join(f"{v:,.0f}" for v in values) for name, values in rates.items()}
    section = "\n".join([
        BEGIN, "## capture: vectorised pcap reader vs dpkt vs scapy", "",
        f"Command: `.venv/bin/python benchmarks/bench_capture.py --packets {args.packets} "
        f"--flows {args.flows} --repeat {args.repeat} --write`", "",
        f"One pcap file of {args.packets:,} Ethernet packets ({size / 1e6:.0f} MB) in "
        f"{args.flows:,} flows (60% TCP, 30% UDP, 10% ICMP echo; a fifth 802.1Q-tagged). Each "
        "parser extracts addresses, protocol, ports or ICMP type/code and TCP flags of every "
        f"packet. Median of {args.repeat} runs, interleaved; ours with JIT compile excluded; "
        f"scapy reads the first {args.scapy_sample:,} packets and is extrapolated (too slow "
        f"for the whole file); {platform.processor() or platform.machine()}, "
        f"Python {platform.python_version()}. Rates are packets per CPU second of the parsing "
        "process (`time.process_time`; all three parse on one thread): the 2 cores are shared "
        f"with other jobs (load average {load:.1f} at the end of the run), which makes wall "
        "time swing by 2-3x between runs; the wall-clock medians are listed too. Before each "
        "timed run the previous parser's garbage is collected and the cyclic GC is off while "
        "timing (as `timeit` does).", "",
        "| parser | packets/CPU-s (median) | runs | wall packets/s (median) | ours is |",
        "| --- | ---: | --- | ---: | ---: |",
        f"| ours (`tracer.capture.read_capture`) | {med['ours']:,.0f} | {runs['ours']} | "
        f"{wall['ours']:,.0f} | |",
        f"| dpkt 1.9 (`pcap.Reader` + `Ethernet`) | {med['dpkt']:,.0f} | {runs['dpkt']} | "
        f"{wall['dpkt']:,.0f} | {med['ours'] / med['dpkt']:.1f}x "
        f"(wall {wall['ours'] / wall['dpkt']:.1f}x) |",
        f"| scapy (`PcapReader`, sampled) | {med['scapy']:,.0f} | {runs['scapy']} | "
        f"{wall['scapy']:,.0f} | {med['ours'] / med['scapy']:.0f}x "
        f"(wall {wall['ours'] / wall['scapy']:.0f}x) |",
        "", "Targets: ≥ 15x dpkt, ≥ 300x scapy.", END, ""])
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
