"""The live loop on pipes instead of TUN devices (no root needed), on the test's clock."""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from pathlib import Path

from tracer.live.loop import LiveLoop
from tracer.live.netns import Port
from tracer.live.topology import live_ends
from tracer.model.loader import load_cluster
from tracer.policy.felix.versions import resolve_version
from tracer.trace.assemble import build_dataplane

SCENARIOS = Path(__file__).resolve().parent.parent / "scenarios"


@dataclass
class PipeTun:
    """Stands in for a TUN device: what the loop writes lands in a pipe the test reads."""

    read_end: int
    write_end: int

    def fileno(self) -> int:
        return self.write_end


@functools.cache
def dataplane_of(scenario: str):
    """The scenario's dataplane; immutable, so both loops and every example share it."""
    cluster = load_cluster([str(p) for p in sorted((SCENARIOS / scenario).glob("*.yaml"))])
    return build_dataplane(cluster, version=resolve_version(cluster, None))


class Harness:
    def __init__(self, scenario: str, *, fast: bool, draw=lambda: 0.0) -> None:
        dataplane = dataplane_of(scenario)
        cluster = dataplane.cluster
        self.ends = {end.key: end for end in live_ends(cluster)}
        self.ports = {}
        for key, end in self.ends.items():
            read_end, write_end = os.pipe()
            os.set_blocking(read_end, False)
            self.ports[key] = Port(end, "unused", PipeTun(read_end, write_end))
        self.now = 1000.0
        self.loop = LiveLoop(dataplane, self.ports, say=lambda line: None,
                             clock=lambda: self.now, draw=draw)
        if not fast:
            self.loop.fast.lookup = lambda *args: None

    def send(self, source: str, data: bytes, after: float) -> list[tuple[str, bytes]]:
        """Hand ``data`` to the loop as live end ``source`` sent it (a pod, "node:NAME" or
        "external"); what the ends received."""
        self.now += after
        self.loop.handle(self.ports[source], data)
        received = []
        for key, port in self.ports.items():
            while True:
                try:
                    received.append((key, os.read(port.tun.read_end, 1 << 17)))
                except BlockingIOError:
                    break
        return received

    def conntrack(self) -> dict[str, list]:
        state = self.loop.session.state
        return {node: table.entries(state.now) for node, table in sorted(state.tables.items())}

    def close(self) -> None:
        for port in self.ports.values():
            os.close(port.tun.read_end)
            os.close(port.tun.write_end)


def ip_of(scenario: str, key: str) -> str:
    return str(dataplane_of(scenario).cluster.endpoints[key].pod.ip)
