"""What a run carries, kept apart from the dataplane it runs through.

:class:`RunState` is everything that changes as packets flow: one connection tracker per
node (created when a packet first reaches the node), the clock, the tunnels' session state
(WireGuard handshakes and counters) and the drop counters. :class:`Pins` holds the explicit
choices of a run that the packets themselves cannot decide, as ovn-trace takes ``--lb-dst``.
A dataplane can serve any number of runs, one after another or at once from several threads,
each with its own state.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from tracer.conntrack.reference import ConntrackTable

DEFAULT_CONNTRACK_MAX = 262144        # nf_conntrack_max on a node with a few GB of memory


@dataclass(frozen=True)
class Pins:
    """Choices made for the run. ``statistic`` maps a chain of ``-m statistic`` dispatch rules
    (kube-proxy's KUBE-SVC-…) to the chain its draw picks (a KUBE-SEP-…). ``draw``, when set,
    is the random source of every other random-mode draw (a float in [0, 1), as xt_statistic
    draws: the live mode, where each new connection picks its backend as the kernel would);
    without it those draws all fire and the first backend wins, so traces are repeatable."""

    statistic: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    draw: Callable[[], float] | None = None


NO_PINS = Pins()


@dataclass
class RunState:
    now: float = 0.0                   # the conntrack clock, in seconds
    tcp_loose: bool = True             # nf_conntrack_tcp_loose (kernel default 1)
    conntrack_max: int = DEFAULT_CONNTRACK_MAX
    tables: dict[str, ConntrackTable] = field(default_factory=dict)
    tunnel_sessions: dict[str, object] = field(default_factory=dict)  # mode:settings -> framer
    drops: Counter = field(default_factory=Counter)           # (node, reason) -> packets
    # What a node's table is: the reference, or a twin with the same methods (the compiled
    # engine's numba table, tracer.conntrack.arrays.ArrayConntrackTable).
    conntrack_table: Callable[..., ConntrackTable] = ConntrackTable

    def conntrack(self, node: str) -> ConntrackTable:
        table = self.tables.get(node)
        if table is None:
            table = self.tables[node] = self.conntrack_table(self.conntrack_max,
                                                             tcp_loose=self.tcp_loose)
        return table

    def advance(self, seconds: float) -> None:
        self.now += seconds
