"""Capture and parse the kernel's own netfilter trace (``xtables-monitor --trace``).

How a capture works, per node namespace (:class:`TraceMonitor`):

1. ``xtables-monitor --trace --event -4`` starts in the namespace, writing to a pty (it
   block-buffers stdout on a pipe, and SIGTERM would lose the buffer).
2. ``--event`` makes the monitor echo ruleset changes, and trace and ruleset messages
   travel in order on the same netlink socket. A *barrier* (create, then delete, an empty
   chain ``<tag>-s<n>`` in raw) is therefore echoed only once the monitor listens and has
   printed everything queued before it. We repeat the barrier until it is echoed (a
   monitor that has not subscribed yet misses it), then insert each TRACE rule at the top
   of its raw chain, tagged with the unique comment ``<tag>``.
3. After the probe, a barrier: we create an empty chain ``<tag>-sync`` and wait for the
   monitor to echo it. Netlink delivers a socket's messages in order, so every trace message
   the probe produced has been printed by then. Only then are the TRACE rules and the
   barrier removed (xtables-monitor looks rules up by handle while printing, so removing
   them earlier breaks it). No sleeps, no guessing.

Why the TRACE rule does not disturb the comparison: it is a real rule at the top of raw
PREROUTING (or OUTPUT), so the kernel reports it as the packet's first event
(``raw:PREROUTING:rule:0x7:CONTINUE … -j TRACE``) and felix's own rules move down one
position. The trace names rules by nf_tables handle and text, never by position, so
nothing else changes; :mod:`tracer.kernel.compare` drops the one event whose rule carries
our comment (:attr:`KernelEvent.is_probe_trace_rule`). TRACE is non-terminating, and the
``nftrace`` bit it sets is read by no other rule.

Output format, as printed by iptables 1.8.9 (nf_tables) on Linux 6.18 (real lines)::

    PACKET: 2 8745d600 IN=caliA MACSRC=6e:a4:30:b5:83:db MACDST=ee:ee:ee:ee:ee:ee MACPROTO=0800 SRC=10.65.0.2 DST=10.65.0.3 LEN=60 TOS=0x0 TTL=64 ID=50308 DF SPORT=40192 DPORT=80 SYN
     TRACE: 2 8745d600 raw:PREROUTING:rule:0x8:CONTINUE  -4 -t raw -A PREROUTING -p tcp -m comment --comment ctk-trace -j TRACE
     TRACE: 2 8745d600 raw:PREROUTING:rule:0x4:JUMP:cali-PREROUTING  -4 -t raw -A PREROUTING -m comment --comment "cali:6gwbT8clXdHdC1b1" -j cali-PREROUTING
     TRACE: 2 8745d600 raw:cali-PREROUTING:rule:0x5:CONTINUE  -4 -t raw -A cali-PREROUTING -m comment --comment "cali:x" -j MARK --set-xmark 0x0/0x1b0000
     TRACE: 2 8745d600 raw:PREROUTING:policy:ACCEPT
    PACKET: 2 8745d600 IN=caliA OUT=caliB … SPORT=40192 DPORT=80 SYN MARK=0x80000
     TRACE: 2 8745d600 filter:FORWARD:rule:0x6:JUMP:cali-FORWARD  -4 -t filter -A FORWARD -j cali-FORWARD
     TRACE: 2 8745d600 filter:cali-FORWARD:rule:0x7:GOTO:cali-tw-caliB  -4 -t filter -A cali-FORWARD -o caliB -g cali-tw-caliB
     TRACE: 2 8745d600 filter:cali-tw-caliB:rule:0x9:0xfffffffb  -4 -t filter -A cali-tw-caliB -j RETURN
     TRACE: 2 8745d600 filter:FORWARD:rule:0xa:DROP  -4 -t filter -A FORWARD -p icmp -j REJECT --reject-with icmp-port-unreachable

Observed facts the parser and the comparison rely on:

* ``2`` is the family (NFPROTO_IPV4), ``8745d600`` the trace id: one per packet, kept
  across hooks, different for a retransmission. A ``PACKET:`` line opens each hook's part
  of the trace and carries ``IN=``/``OUT=``.
* ``rule:0x8`` is the nf_tables rule *handle*, not a position.
* Verdicts: ``CONTINUE`` (non-terminating target or none: MARK, LOG, a comment-only
  rule), ``JUMP:<chain>``, ``GOTO:<chain>``, ``ACCEPT``, ``DROP``. An explicit
  ``-j RETURN`` prints as ``0xfffffffb`` (NFT_RETURN, -5, which xtables-monitor does not
  name); we call it RETURN. REJECT prints as ``DROP`` (the xt target sends the ICMP error
  and returns NF_DROP); NAT targets print as ``ACCEPT``.
* When a user chain runs off its end, this kernel emits no event at all: the next event is
  simply the caller's next rule (or the base chain's ``policy`` line). xtables-monitor
  prints ``…:return:…`` for NFT_TRACETYPE_RETURN messages; we parse them should a kernel
  send them.
* ``policy`` lines end a base chain that ran off its end: ``raw:PREROUTING:policy:ACCEPT``.
* With ``--event`` the stream also holds ``EVENT:`` and ``NEWGEN:`` lines (ruleset changes).
"""

from __future__ import annotations

import os
import pty
import re
import select
import subprocess
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from tracer.kernel import nsexec

TRACE_TAG_PREFIX = "ctk-trace"
NFT_RETURN_HEX = "0xfffffffb"   # NFT_RETURN = -5 as an unsigned 32-bit verdict code

_TRACE_RE = re.compile(
    r"^\s*TRACE: (?P<family>\d+) (?P<id>[0-9a-f]+) (?P<table>[^:\s]+):(?P<chain>[^:\s]+):"
    r"(?P<kind>rule|return|policy):(?P<rest>.*)$")
_PACKET_RE = re.compile(r"^\s*PACKET: (?P<family>\d+) (?P<id>[0-9a-f]+) (?P<fields>.*)$")
_RULE_REST_RE = re.compile(r"^(?P<handle>0x[0-9a-f]+):(?P<verdict>\S+)\s*(?P<text>.*)$")


@dataclass(frozen=True)
class KernelEvent:
    """One line of the kernel's trace: a matched rule, a return, or a base-chain policy."""

    node: str
    table: str
    chain: str
    kind: str                    # "rule" | "return" | "policy"
    verdict: str                 # CONTINUE, JUMP, GOTO, RETURN, ACCEPT, DROP, QUEUE, …
    rule_text: str | None
    target_chain: str | None
    packet_id: str
    iif: str | None
    oif: str | None

    @property
    def is_probe_trace_rule(self) -> bool:
        """The TRACE rule the probe inserted (not part of the ruleset under test)."""
        return (self.rule_text is not None and "-j TRACE" in self.rule_text
                and f"--comment {TRACE_TAG_PREFIX}" in self.rule_text)


def _split_verdict(token: str) -> tuple[str, str | None]:
    if token == NFT_RETURN_HEX:
        return "RETURN", None
    name, _, target = token.partition(":")
    return name, (target or None)


def _packet_ifaces(fields: str) -> tuple[str | None, str | None]:
    values = dict(part.split("=", 1) for part in fields.split() if "=" in part)
    return values.get("IN") or None, values.get("OUT") or None


def parse_trace(lines: Iterable[str], node: str) -> list[KernelEvent]:
    """Parse xtables-monitor output into events, in order; other lines are skipped."""
    ifaces: dict[str, tuple[str | None, str | None]] = {}
    events: list[KernelEvent] = []
    for raw in lines:
        line = raw.rstrip("\r\n")
        packet = _PACKET_RE.match(line)
        if packet:
            ifaces[packet["id"]] = _packet_ifaces(packet["fields"])
            continue
        trace = _TRACE_RE.match(line)
        if trace is None:
            continue
        event = _event_from_match(trace, node, ifaces.get(trace["id"], (None, None)))
        if event is not None:
            events.append(event)
    return events


def _event_from_match(trace: re.Match, node: str,
                      ifaces: tuple[str | None, str | None]) -> KernelEvent | None:
    kind, rest = trace["kind"], trace["rest"].strip()
    rule_text = None
    if kind == "rule":
        parts = _RULE_REST_RE.match(rest)
        if parts is None:
            return None
        verdict, target = _split_verdict(parts["verdict"])
        rule_text = parts["text"].strip() or None
    else:
        verdict, target = _split_verdict(rest.split()[0] if rest else "")
        if kind == "return" and not verdict:
            verdict = "RETURN"
    return KernelEvent(node=node, table=trace["table"], chain=trace["chain"], kind=kind,
                       verdict=verdict, rule_text=rule_text, target_chain=target,
                       packet_id=trace["id"], iif=ifaces[0], oif=ifaces[1])


def packet_ids(events: Sequence[KernelEvent]) -> list[str]:
    """Distinct packet ids in order of first appearance."""
    seen: dict[str, None] = {}
    for event in events:
        seen.setdefault(event.packet_id, None)
    return list(seen)


def first_packet(events: Sequence[KernelEvent]) -> list[KernelEvent]:
    """Only the events of the first packet traced (per node, as ids are per node)."""
    kept: list[KernelEvent] = []
    first: dict[str, str] = {}
    for event in events:
        if first.setdefault(event.node, event.packet_id) == event.packet_id:
            kept.append(event)
    return kept


@dataclass(frozen=True)
class TracePoint:
    """Where to insert a TRACE rule and what it matches (iptables match arguments)."""

    chain: str                   # "PREROUTING" (arriving packets) or "OUTPUT" (host-sent)
    match: tuple[str, ...]


class MonitorError(RuntimeError):
    """xtables-monitor did not start, attach, or drain in time."""


class TraceMonitor:
    """``xtables-monitor --trace`` in one node namespace plus the TRACE rules it watches."""

    def __init__(self, node: str, netns: str, tag: str, points: Sequence[TracePoint]):
        self.node = node
        self.netns = netns
        self.tag = tag
        self.points = tuple(points)
        self.lines: list[str] = []
        self._proc: subprocess.Popen | None = None
        self._master: int | None = None
        self._reader: threading.Thread | None = None
        self._changed = threading.Condition()
        self._inserted: list[TracePoint] = []
        self._syncs = 0

    # -- lifecycle ------------------------------------------------------------------------

    def start(self, timeout: float = 10.0) -> None:
        master, slave = pty.openpty()
        self._master = master
        try:
            self._proc = nsexec.popen(self.netns, ["xtables-monitor", "--trace", "--event", "-4"],
                                      stdin=subprocess.DEVNULL, stdout=slave, stderr=slave,
                                      start_new_session=True)
        finally:
            os.close(slave)
        self._reader = threading.Thread(target=self._read, name=f"xtmon:{self.node}",
                                        daemon=True)
        self._reader.start()
        self._attach(timeout)
        for point in self.points:
            self._iptables("-I", point, "1")
            self._inserted.append(point)

    def stop(self, timeout: float = 10.0) -> list[str]:
        """Wait until the monitor has printed every trace so far, remove the TRACE rules, stop.

        The barrier comes first: xtables-monitor looks each traced rule up by handle as it
        prints it, so deleting a TRACE rule before its trace is printed makes it fail
        ("error: No such file or directory") and stop printing.
        """
        try:
            if self._inserted and self._proc is not None and self._proc.poll() is None:
                if not self._sync(timeout):
                    raise MonitorError(f"xtables-monitor on {self.node}: no drain within "
                                       f"{timeout}s ({self._tail()})")
        finally:
            inserted, self._inserted = self._inserted, []
            try:
                for point in inserted:
                    self._iptables("-D", point)
            finally:
                self._terminate()
        return list(self.lines)

    def events(self) -> list[KernelEvent]:
        return parse_trace(self.lines, self.node)

    def __enter__(self) -> "TraceMonitor":
        self.start()
        return self

    def __exit__(self, *exc_info) -> None:
        if self._proc is not None or self._inserted:
            self.stop()

    # -- internals ------------------------------------------------------------------------

    def _iptables(self, op: str, point: TracePoint, *position: str) -> None:
        argv = ["iptables", "-w", "-t", "raw", op, point.chain, *position, *point.match,
                "-m", "comment", "--comment", self.tag, "-j", "TRACE"]
        nsexec.run(self.netns, argv)

    def _attach(self, timeout: float) -> None:
        """Wait until the monitor listens: it cannot see events sent before it subscribed,
        so repeat the barrier until one is echoed."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._sync(0.25):
                return
            if self._proc is not None and self._proc.poll() is not None:
                break
        raise MonitorError(f"xtables-monitor on {self.node}: not attached within {timeout}s "
                           f"({self._tail()})")

    def _sync(self, timeout: float) -> bool:
        """Create and delete an empty chain; True once the monitor has echoed the creation,
        which means it has printed every trace message queued before it."""
        self._syncs += 1
        barrier = f"{self.tag}-s{self._syncs}"
        nsexec.run(self.netns, ["iptables", "-w", "-t", "raw", "-N", barrier])
        nsexec.run(self.netns, ["iptables", "-w", "-t", "raw", "-X", barrier])
        try:
            self._wait_for(lambda: self._echoed_line(f"-N {barrier}"), timeout, "barrier")
        except MonitorError:
            return False
        return True

    def _tail(self) -> str:
        with self._changed:
            return " | ".join(self.lines[-3:]) or "no output"

    def _echoed_line(self, text: str) -> bool:
        with self._changed:
            return any("EVENT:" in line and line.rstrip().endswith(text) for line in self.lines)

    def _wait_for(self, condition, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        with self._changed:
            while not condition():      # the Condition's lock is an RLock: may re-enter
                remaining = deadline - time.monotonic()
                if remaining <= 0 or (self._proc is not None and self._proc.poll() is not None
                                      and not self._reader_alive()):
                    tail = " | ".join(self.lines[-3:]) or "no output"
                    raise MonitorError(f"xtables-monitor on {self.node}: no {what} "
                                       f"within {timeout}s ({tail})")
                self._changed.wait(min(remaining, 0.1))

    def _reader_alive(self) -> bool:
        return self._reader is not None and self._reader.is_alive()

    def _read(self) -> None:
        assert self._master is not None
        pending = ""
        while True:
            try:
                ready, _, _ = select.select([self._master], [], [], 0.2)
                if not ready:
                    if self._proc is not None and self._proc.poll() is not None:
                        break
                    continue
                chunk = os.read(self._master, 65536)
            except OSError:           # EIO: the pty's other side closed
                break
            if not chunk:
                break
            pending += chunk.decode(errors="replace")
            *complete, pending = pending.split("\n")
            with self._changed:
                self.lines.extend(line.rstrip("\r") for line in complete)
                self._changed.notify_all()
        with self._changed:
            if pending.strip():
                self.lines.append(pending.rstrip("\r"))
            self._changed.notify_all()

    def _terminate(self) -> None:
        if self._proc is not None:
            if self._proc.poll() is None:
                self._proc.terminate()
                try:
                    self._proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    self._proc.kill()
                    self._proc.wait()
            self._proc = None
        if self._reader is not None:
            self._reader.join(timeout=5)
            self._reader = None
        if self._master is not None:
            os.close(self._master)
            self._master = None
