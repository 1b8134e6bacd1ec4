"""The kernel's nftables trace (``nft -a monitor``), the counterpart of
:mod:`tracer.kernel.xtrace` for felix's ``table ip calico``.

How a capture works, per node namespace (:class:`NftTraceMonitor`):

1. A table of our own, ``ip <tag>``, with two empty base chains at priority -400 (before
   raw's -300): ``pre`` on prerouting and ``out`` on output.
2. ``nft -a monitor`` starts in the namespace on a pty. It prints ruleset changes and trace
   messages in the order they arrive on its netlink socket, so adding then deleting an empty
   chain ``<tag> s<n>`` is a barrier: once ``add chain ip <tag> s<n>`` is printed, every trace
   queued before it has been printed too. The barrier repeats until echoed (the monitor may
   not have subscribed yet).
3. Each trace point becomes ``<match> meta nftrace set 1`` in ``pre`` (or ``out`` for a
   packet the node sends itself): the probe's packet carries the trace bit through every
   later base chain of the hook and of the hooks after it.
4. After the probe, a barrier, then the table is deleted.

Our table's own events (``ip <tag> pre …``) are dropped: it is the instrument, not the
ruleset under test, and it runs before felix's raw chains so it moves no handle of theirs.

Output format of nft 1.0.6 (real lines)::

    trace id 0a7caad4 ip t o packet: oif "lo" ip saddr 127.0.0.1 ip daddr 127.0.0.1 …
    trace id 0a7caad4 ip t o rule jump c # handle 5 (verdict jump c)
    trace id 0a7caad4 ip t c rule meta mark set 0x00000001 # handle 7 (verdict continue)
    trace id 0a7caad4 ip t o rule ip daddr 127.0.0.1 accept comment "x" # handle 6 (verdict accept)
    trace id 44d60c2b ip t pre policy accept

Like xtables-monitor on Linux 6.x, no event marks a regular chain running off its end; the
next event is the caller's next rule. A ``verdict continue``/``verdict return`` line (an
NFT_TRACETYPE_RETURN message, should a kernel send one) is parsed as a ``return`` event.
"""

from __future__ import annotations

import os
import pty
import re
import subprocess
import threading
from collections.abc import Iterable

from tracer.kernel import nsexec
from tracer.kernel.xtrace import KernelEvent, MonitorError, TraceMonitor, TracePoint

TRACE_PRIORITY = -400

_LINE_RE = re.compile(r"^trace id (?P<id>[0-9a-f]+) (?P<family>\S+) (?P<table>\S+) "
                      r"(?P<chain>\S+) (?P<kind>packet:|rule|policy|verdict)\s*(?P<rest>.*)$")
_RULE_RE = re.compile(r"^(?P<text>.*?)\s*# handle (?P<handle>\d+) \(verdict (?P<verdict>[^)]*)\)$")
_IFACE_RE = re.compile(r'\b(?P<key>iif|oif) "(?P<name>[^"]+)"')


def nft_match(point: TracePoint) -> str:
    """The trace point's iptables-style match (``-d A -p tcp --dport N --syn``,
    ``--icmp-type echo-request``) in nft syntax."""
    args = list(point.match)
    words = []
    protocol = None
    while args:
        flag = args.pop(0)
        if flag == "-d":
            words.append(f"ip daddr {args.pop(0)}")
        elif flag == "-p":
            protocol = args.pop(0)
            words.append(f"meta l4proto {protocol}")
        elif flag == "--dport":
            words.append(f"{protocol} dport {args.pop(0)}")
        elif flag == "--icmp-type":
            words.append(f"icmp type {args.pop(0)}")
        elif flag == "--syn":
            words.append("tcp flags & (fin|syn|rst|ack) == syn")
        else:
            raise ValueError(f"no nft spelling for trace match {flag!r}")
    return " ".join(words)


def parse_nft_trace(lines: Iterable[str], node: str, skip_table: str) -> list[KernelEvent]:
    """``nft monitor`` trace lines as kernel events, in order; our own table's are left out.
    ``rule_text`` is ``<rule> # handle <n>`` as nft prints it."""
    ifaces: dict[str, tuple[str | None, str | None]] = {}
    events: list[KernelEvent] = []
    for raw in lines:
        found = _LINE_RE.match(raw.strip())
        if found is None or found["table"] == skip_table:
            continue
        kind, rest, packet_id = found["kind"], found["rest"], found["id"]
        if kind == "packet:":
            names = {m["key"]: m["name"] for m in _IFACE_RE.finditer(rest)}
            ifaces[packet_id] = (names.get("iif"), names.get("oif"))
            continue
        text, verdict = None, rest.split()[0] if rest else ""
        if kind == "rule":
            rule = _RULE_RE.match(rest)
            if rule is None:
                continue
            text = f"{rule['text']} # handle {rule['handle']}"
            verdict = rule["verdict"]
        elif kind == "verdict":
            kind = "return"
        name, _, target = verdict.partition(" ")
        iif, oif = ifaces.get(packet_id, (None, None))
        events.append(KernelEvent(node=node, table=found["table"], chain=found["chain"],
                                  kind=kind, verdict=name.upper(), rule_text=text,
                                  target_chain=target or None, packet_id=packet_id,
                                  iif=iif, oif=oif))
    return events


def handle_of(event: KernelEvent) -> int | None:
    if event.rule_text is None or "# handle " not in event.rule_text:
        return None
    return int(event.rule_text.rsplit("# handle ", 1)[1])


class NftTraceMonitor(TraceMonitor):
    """``nft -a monitor`` in one node namespace plus the ``meta nftrace set 1`` rules it
    watches (same lifecycle as :class:`tracer.kernel.xtrace.TraceMonitor`)."""

    def start(self, timeout: float = 10.0) -> None:
        nsexec.run(self.netns, ["nft", "-f", "-"], input_text=(
            f"table ip {self.tag} {{\n"
            f"\tchain pre {{ type filter hook prerouting priority {TRACE_PRIORITY}; }}\n"
            f"\tchain out {{ type filter hook output priority {TRACE_PRIORITY}; }}\n}}\n"))
        master, slave = pty.openpty()
        self._master = master
        try:
            self._proc = nsexec.popen(self.netns, ["nft", "-a", "monitor"],
                                      stdin=subprocess.DEVNULL, stdout=slave, stderr=slave,
                                      start_new_session=True)
        finally:
            os.close(slave)
        self._reader = threading.Thread(target=self._read, name=f"nftmon:{self.node}",
                                        daemon=True)
        self._reader.start()
        self._attach(timeout)
        for point in self.points:
            self._iptables("-I", point)
            self._inserted.append(point)

    def stop(self, timeout: float = 10.0) -> list[str]:
        try:
            return super().stop(timeout)
        finally:
            try:
                nsexec.run(self.netns, ["nft", "delete", "table", "ip", self.tag])
            except nsexec.CommandFailed:
                pass                   # the namespace (or the table) is already gone

    def events(self) -> list[KernelEvent]:
        return parse_nft_trace(self.lines, self.node, self.tag)

    def _iptables(self, op: str, point: TracePoint, *position: str) -> None:
        """Add the point's ``nftrace`` rule; removal is the table's deletion in :meth:`stop`."""
        if op != "-I":
            return
        chain = "pre" if point.chain == "PREROUTING" else "out"
        nsexec.run(self.netns, ["nft", "add", "rule", "ip", self.tag, chain,
                                *nft_match(point).split(), "meta", "nftrace", "set", "1"])

    def _sync(self, timeout: float) -> bool:
        self._syncs += 1
        barrier = f"s{self._syncs}"
        nsexec.run(self.netns, ["nft", "add", "chain", "ip", self.tag, barrier])
        nsexec.run(self.netns, ["nft", "delete", "chain", "ip", self.tag, barrier])
        try:
            self._wait_for(lambda: self._echoed(f"add chain ip {self.tag} {barrier}"),
                           timeout, "barrier")
        except MonitorError:
            return False
        return True

    def _echoed(self, text: str) -> bool:
        with self._changed:
            return any(line.startswith(text) for line in self.lines)
