"""Encapsulate + decapsulate throughput per mode (pure Python reference path), median of 5.

Run: .venv/bin/python benchmarks/bench_encap.py [count]
"""

from __future__ import annotations

import statistics
import sys
import time
from ipaddress import IPv4Address

from scapy.all import IP, TCP, raw

from tracer.encap import IpipEncap, TunnelEndpoint, VxlanEncap, WireGuardEncap


def bench(count: int) -> None:
    inner = raw(IP(src="192.168.10.5", dst="192.168.20.7") / TCP() / (b"x" * 1000))
    wg = WireGuardEncap()
    plain = (TunnelEndpoint("node-a", IPv4Address("10.0.0.1")),
             TunnelEndpoint("node-b", IPv4Address("10.0.0.2")))
    keyed = (wg.endpoint("node-a", IPv4Address("10.0.0.1")),
             wg.endpoint("node-b", IPv4Address("10.0.0.2")))
    for encap, (a, b) in ((IpipEncap(), plain), (VxlanEncap(), plain), (wg, keyed)):
        rates = []
        for _ in range(5):
            start = time.perf_counter()
            for _ in range(count):
                outer = encap.encapsulate(inner, a, b)
                assert encap.decapsulate(outer, b, [a]).ok
            rates.append(count / (time.perf_counter() - start))
        rate = statistics.median(rates)
        print(f"{encap.name:10s} {rate:10.0f} round trips/s median "
              f"({1e6 / rate:.1f} us each, 1040-byte inner; runs "
              f"{', '.join(f'{r:.0f}' for r in rates)})")


if __name__ == "__main__":
    bench(int(sys.argv[1]) if len(sys.argv) > 1 else 5000)
