"""The state file a running ``up`` writes, so ``exec``, ``flows`` and ``down`` can find it.

``/run/calico-trace/live.json``: the owner's pid and start time (a recycled pid is not the
owner), each pod's namespace and address, and where the flow table is dumped. Written
atomically once the pods are ready; removed when ``up`` ends.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass

from tracer.errors import InputError, quote
from tracer.kernel.cleanup import process_start_time

STATE_DIR = os.environ.get("CALICO_TRACE_RUN_DIR", "/run/calico-trace")
STATE_FILE = "live.json"
FLOWS_FILE = "flows.json"
TRACE_REQUEST = "trace-request-{pid}.json"     # ``flows --trace``: {"id": N}; the answer goes
TRACE_ANSWER = "trace-answer-{pid}.json"       # to the asker's own file
LOG_FILE = "up.log"


@dataclass
class LiveState:
    pid: int
    start: str
    manifests: list[str]
    pods: dict[str, dict]                   # "ns/name" -> {"netns", "ip", "node"}
    flows: str                              # path of the flow table dump
    log: str | None = None                  # with --detach: where up's output goes

    def namespace_of(self, key: str) -> str:
        pod = self.pods.get(key)
        if pod is None:
            known = ", ".join(sorted(self.pods)) or "none"
            raise InputError(f"no pod {quote(key)} in the running cluster (pods: {known})",
                             obj="NAMESPACE/POD")
        return pod["netns"]

    def alive(self) -> bool:
        start = process_start_time(self.pid)
        return start is not None and (start == "?" or start == self.start)


def path(name: str = STATE_FILE) -> str:
    return os.path.join(STATE_DIR, name)


def write(state: LiveState) -> None:
    os.makedirs(STATE_DIR, exist_ok=True)
    target = path()
    with open(target + ".tmp", "w") as handle:
        json.dump(asdict(state), handle, indent=1)
    os.replace(target + ".tmp", target)


def read() -> LiveState | None:
    """The running ``up``'s state, or None when there is none (or its file is unreadable)."""
    try:
        with open(path()) as handle:
            return LiveState(**json.load(handle))
    except (FileNotFoundError, json.JSONDecodeError, TypeError):
        return None


def running() -> LiveState:
    """The state of a live ``up``; one clear error when nothing is running."""
    found = read()
    if found is None or not found.alive():
        raise InputError("no calico-trace up is running (start one with "
                         "`calico-trace up -f MANIFESTS`)", file=path())
    return found


def remove(pid: int) -> None:
    """Remove the state file if it is ``pid``'s."""
    found = read()
    if found is not None and found.pid == pid:
        try:
            os.unlink(path())
        except FileNotFoundError:
            pass
