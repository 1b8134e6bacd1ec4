"""``up``'s life: realise the pods, publish the state file, run the loop until told to stop,
reload on SIGHUP or a manifest change, dump the flow table on SIGUSR1, clean up on the way out.

Everything is removed however the process ends: normal return, Ctrl-C and SIGTERM unwind
through :class:`~tracer.live.netns.LiveNamespaces`; a crash or SIGKILL is the watchdog's
job (:mod:`tracer.kernel.cleanup`).
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from tracer.errors import InputError
from tracer.kernel.cleanup import process_start_time
from tracer.live import state
from tracer.live.flows import FLOWS_KEPT, format_flows
from tracer.live.loop import LiveLoop
from tracer.live.netns import LiveNamespaces
from tracer.live.topology import host_network_pods, live_ends
from tracer.trace.assemble import Dataplane

FLOW_DUMP_SECONDS = 1.0          # the flow file is refreshed at most this often
WATCH_SECONDS = 1.0              # manifests are checked for changes this often


class Signals:
    """SIGHUP and SIGUSR1 set flags the loop looks at between polls."""

    def __init__(self) -> None:
        self.reload = False
        self.dump = False

    def install(self) -> None:
        signal.signal(signal.SIGHUP, self._on_hup)
        signal.signal(signal.SIGUSR1, self._on_usr1)

    def _on_hup(self, *_args) -> None:
        self.reload = True

    def _on_usr1(self, *_args) -> None:
        self.dump = True


def manifest_stamp(paths: Sequence[str]) -> tuple:
    """Modification times of every manifest file under ``paths``: a change means reload."""
    stamps = []
    for path in paths:
        target = Path(path)
        files = sorted(target.rglob("*")) if target.is_dir() else [target]
        for file in files:
            try:
                stamps.append((str(file), file.stat().st_mtime_ns))
            except OSError:
                stamps.append((str(file), None))
    return tuple(stamps)


def serve(load: Callable[[], Dataplane], manifests: Sequence[str], *,
          say: Callable[[str], None], log: str | None = None,
          stop: Callable[[], bool] = lambda: False, offload: bool = True) -> None:
    """Bring the cluster's pods up and forward their packets until interrupted."""
    existing = state.read()
    if existing is not None and existing.alive():
        raise InputError(f"calico-trace up is already running (pid {existing.pid}); "
                         "run `calico-trace down` first", file=state.path())
    dataplane = load()
    cluster = dataplane.cluster
    ends = live_ends(cluster)
    if not ends:
        raise InputError("the manifests define no pods and no nodes", obj="up")
    signals = Signals()
    signals.install()
    with LiveNamespaces(ends, offload=offload) as spaces:
        loop = LiveLoop(dataplane, spaces.ports, say=say)
        flows_path = state.path(state.FLOWS_FILE)
        os.makedirs(state.STATE_DIR, exist_ok=True)
        loop.flows.dump(flows_path)
        state.write(state.LiveState(
            pid=os.getpid(), start=process_start_time(os.getpid()) or "",
            manifests=[str(Path(p).resolve()) for p in manifests],
            pods=_exec_targets(cluster, spaces.ports), flows=flows_path, log=log))
        for key, port in spaces.ports.items():
            where = f" on {port.end.node}" if port.end.is_pod else ""
            say(f"{key} {port.end.ip}{where}: netns {port.netns}, eth0 mtu {port.end.mtu}")
        pods = sum(port.end.is_pod for port in spaces.ports.values())
        say(f"up: ready, {pods} pods and {len(ends) - pods} hosts; `calico-trace exec NS/POD "
            "-- CMD` runs a command in a pod (node:NAME on a node, external outside), Ctrl-C "
            "or `calico-trace down` ends")
        ticker = _Ticker(loop, signals, load, manifests, flows_path, say)
        try:
            loop.run(stop, ticker)
        finally:
            try:
                loop.flows.dump(flows_path)
            except OSError:
                pass
            state.remove(os.getpid())
            say("flows seen:\n" + format_flows([f.public() for f in loop.flows.distinct()])
                .rstrip())
            c = loop.counters
            say(f"down: read {c.read}, delivered {c.delivered}, dropped {c.dropped}, "
                f"ICMP errors and resets sent {c.answers}; fast path {loop.fast.hits}")


def _exec_targets(cluster, ports) -> dict[str, dict]:
    """What `exec` may enter: every live end, and each host-network pod (its node's)."""
    targets = {key: {"netns": port.netns, "ip": str(port.end.ip), "node": port.end.node}
               for key, port in ports.items()}
    for pod, node_end in host_network_pods(cluster).items():
        targets.setdefault(pod, targets[node_end])
    return targets


class _Ticker:
    """Work done between polls: reloads, flow dumps."""

    def __init__(self, loop: LiveLoop, signals: Signals, load, manifests, flows_path, say):
        self.loop, self.signals, self.load = loop, signals, load
        self.manifests, self.flows_path, self.say = manifests, flows_path, say
        self.stamp = manifest_stamp(manifests)
        self.next_watch = self.next_dump = time.monotonic()

    def __call__(self) -> None:
        now = time.monotonic()
        if now >= self.next_watch:
            self.next_watch = now + WATCH_SECONDS
            stamp = manifest_stamp(self.manifests)
            if stamp != self.stamp:
                self.stamp = stamp
                self.signals.reload = True
        if self.signals.reload:
            self.signals.reload = False
            self._reload()
        if self.signals.dump or (self.loop.flows.changed and now >= self.next_dump):
            self.signals.dump = False
            self.next_dump = now + FLOW_DUMP_SECONDS
            self.loop.flows.dump(self.flows_path)
            self._answer_trace_requests()

    def _answer_trace_requests(self) -> None:
        """``flows --trace ID`` leaves a request and sends SIGUSR1: answer each in its
        asker's file (atomically), with the flow's traces or the error."""
        folder = Path(state.STATE_DIR)
        prefix, suffix = state.TRACE_REQUEST.split("{pid}")
        for request in folder.glob(f"{prefix}*{suffix}"):
            pid = request.name[len(prefix):-len(suffix)]
            try:
                flow_id = int(json.loads(request.read_text())["id"])
            except (OSError, ValueError, KeyError, TypeError):
                continue                          # half written: answered on the next signal
            request.unlink(missing_ok=True)
            found = self.loop.flow_traces(flow_id)
            answer = found if found is not None else {
                "error": f"no flow #{flow_id} (the table keeps the {FLOWS_KEPT} most recent)"}
            target = folder / state.TRACE_ANSWER.format(pid=pid)
            target.with_suffix(".tmp").write_text(json.dumps(answer, indent=1))
            target.with_suffix(".tmp").replace(target)

    def _reload(self) -> None:
        try:
            dataplane = self.load()
        except InputError as err:
            self.say(f"reload failed, keeping the running rules: {err}")
            return
        before = {p.key: p.ip for p in live_ends(self.loop.dataplane.cluster)}
        after = {p.key: p.ip for p in live_ends(dataplane.cluster)}
        if before != after:
            self.say("reload: pods changed (added, removed or readdressed); only policy and "
                     "rules are reloaded live, restart `up` for new pods")
        self.loop.swap(dataplane)
        self.say(f"reload: manifests re-read, dataplane rebuilt; conntrack kept "
                 f"({len(self.loop.flows.distinct())} flows seen so far)")
