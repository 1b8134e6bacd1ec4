"""Namespaces made by the kernel judge are always removed, however the process ends.

Four layers, each covering what the previous one cannot:

1. ``KernelLab.__exit__`` removes its namespaces on normal exit and on exceptions; Ctrl-C
   (SIGINT) arrives as ``KeyboardInterrupt`` and takes the same path.
2. :func:`signal_guard` turns SIGTERM and SIGHUP into ``SystemExit`` while a lab is open, so
   they unwind through ``__exit__`` too instead of killing the process outright.
3. A :class:`Watchdog` child (its own session, so a terminal's Ctrl-C does not reach it)
   holds the read end of a pipe. The lab announces each namespace name on it *before*
   creating the namespace. When the pipe reaches EOF without a ``done`` line, the owner has
   died (SIGKILL included: the kernel closes the write end) and the watchdog removes the
   names it was told about.
4. :func:`reap_orphans`, called when every lab starts, removes any ``ctk-<pid>-<n>``
   namespace whose owner process is gone (say the machine's watchdog was killed as well).
   The owner is identified by pid *and* process start time, recorded in ``/run/ctk/<pid>``,
   so a recycled pid does not protect a stale namespace. The record lives only while its
   lab does: ``Watchdog.release`` (or the watchdog, after reaping) removes it, and a reaper
   removes another owner's record only when that process is provably gone.

Removing a namespace first kills the processes still inside it (xtables-monitor, for
example): otherwise the namespace would outlive its name. Every interface we create lives
in one of these namespaces, so removing them removes everything.

Run as ``python -m tracer.kernel.cleanup --watch <pid> <start>`` for the watchdog, or
``python -m tracer.kernel.cleanup --reap`` to reap orphans by hand.
"""

from __future__ import annotations

import errno
import itertools
import os
import re
import select
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from pyroute2 import netns as pyroute2_netns

from tracer.kernel.nsexec import NETNS_RUN_DIR, netns_path

PREFIX = "ctk"
OWNER_DIR = "/run/ctk"
_NAME_RE = re.compile(rf"^{PREFIX}-(\d+)-(\d+)$")
_counter = itertools.count(1)
_counter_lock = threading.Lock()


def new_namespace_name() -> str:
    """A unique name ``ctk-<pid>-<n>`` for this process."""
    with _counter_lock:
        return f"{PREFIX}-{os.getpid()}-{next(_counter)}"


def owner_pid(name: str) -> int | None:
    match = _NAME_RE.match(name)
    return int(match.group(1)) if match else None


def lab_namespaces(pid: int | None = None) -> list[str]:
    """Our namespaces in ``/run/netns`` (of one owner pid, if given)."""
    try:
        names = os.listdir(NETNS_RUN_DIR)
    except FileNotFoundError:
        return []
    return sorted(n for n in names
                  if owner_pid(n) is not None and (pid is None or owner_pid(n) == pid))


def process_start_time(pid: int) -> str | None:
    """Field 22 of ``/proc/<pid>/stat`` (start time in clock ticks), or None if gone.

    A process that exists but whose stat cannot be read counts as alive ("?")."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            stat = handle.read()
    except (FileNotFoundError, ProcessLookupError):
        return None if not _signalable(pid) else "?"
    except OSError:
        return "?"
    fields = stat[stat.rindex(")") + 2:].split()   # comm may hold spaces and parentheses
    if fields[0] == "Z":                           # a zombie is dead for our purposes
        return None
    return fields[19]


def _signalable(pid: int) -> bool:
    """Whether a process ``pid`` exists (signal 0 checks without sending anything)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True                                # exists, but not ours to signal
    return True


def register_owner() -> str:
    """Record this process's start time so reapers can tell it from a recycled pid."""
    start = process_start_time(os.getpid()) or ""
    os.makedirs(OWNER_DIR, exist_ok=True)
    path = os.path.join(OWNER_DIR, str(os.getpid()))
    with open(path + ".tmp", "w") as handle:
        handle.write(start)
    os.replace(path + ".tmp", path)
    return start


def forget_owner(pid: int, start: str) -> None:
    """Remove ``pid``'s record if it is still the one written with ``start``."""
    path = os.path.join(OWNER_DIR, str(pid))
    try:
        with open(path) as handle:
            if handle.read().strip() != start:
                return                             # a newer owner with a recycled pid
        os.unlink(path)
    except FileNotFoundError:
        pass


def owner_alive(pid: int) -> bool:
    start = process_start_time(pid)
    if start is None:
        return False
    if start == "?":
        return True
    try:
        with open(os.path.join(OWNER_DIR, str(pid))) as handle:
            recorded = handle.read().strip()
    except FileNotFoundError:
        return True                                # no record: be conservative
    return not recorded or recorded == start


def _pids_in(name: str) -> list[int]:
    try:
        target = os.stat(netns_path(name))
    except FileNotFoundError:
        return []
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            st = os.stat(f"/proc/{entry}/ns/net")
        except OSError:
            continue
        if (st.st_dev, st.st_ino) == (target.st_dev, target.st_ino):
            pids.append(int(entry))
    return pids


def remove_namespace(name: str) -> None:
    """Kill what runs inside ``name`` and remove it; a missing namespace is fine."""
    for pid in _pids_in(name):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    try:
        pyroute2_netns.remove(name)
    except OSError as exc:
        if exc.errno != errno.ENOENT:
            raise


def reap_orphans() -> list[str]:
    """Remove namespaces whose owner process is dead; return their names."""
    reaped = []
    for name in lab_namespaces():
        pid = owner_pid(name)
        if pid is not None and not owner_alive(pid):
            remove_namespace(name)
            reaped.append(name)
    _forget_dead_owners()
    return reaped


def _forget_dead_owners() -> None:
    try:
        entries = os.listdir(OWNER_DIR)
    except FileNotFoundError:
        return
    live = {owner_pid(n) for n in lab_namespaces()}
    for entry in entries:
        if entry.isdigit() and int(entry) not in live and not owner_alive(int(entry)):
            try:
                with open(os.path.join(OWNER_DIR, entry)) as handle:
                    recorded = handle.read().strip()
            except FileNotFoundError:
                continue
            if not owner_alive(int(entry)):         # again: it may have re-registered
                forget_owner(int(entry), recorded)


class Watchdog:
    """A child process that removes announced namespaces if this process dies first."""

    def __init__(self) -> None:
        self._proc: subprocess.Popen | None = None
        self._owner = os.getpid()
        self._start = ""

    def start(self) -> None:
        start = self._start = register_owner()
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "tracer.kernel.cleanup", "--watch", str(os.getpid()), start],
            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True,
            start_new_session=True)

    def announce(self, name: str) -> None:
        """Tell the watchdog about ``name``; call before creating the namespace."""
        self._send(f"add {name}\n")

    def release(self) -> None:
        """Normal end: the owner removed its namespaces itself; the watchdog just exits."""
        if self._proc is None or os.getpid() != self._owner:
            return                          # a forked child must not dismiss the watchdog
        try:
            self._send("done\n")
            self._proc.stdin.close()
            self._proc.wait(timeout=10)
        except (BrokenPipeError, subprocess.TimeoutExpired):
            self._proc.kill()
            self._proc.wait()
        self._proc = None
        if not lab_namespaces(self._owner):        # no other lab of ours still open
            forget_owner(self._owner, self._start)

    def _send(self, line: str) -> None:
        assert self._proc is not None and self._proc.stdin is not None
        self._proc.stdin.write(line)
        self._proc.stdin.flush()


def watch(owner: int, start: str, poll: float = 0.5) -> None:
    """The watchdog loop: collect names until ``done``; on EOF or owner death, reap them."""
    names: list[str] = []
    buffer = ""
    stdin_fd = sys.stdin.fileno()
    while True:
        ready, _, _ = select.select([stdin_fd], [], [], poll)
        if ready:
            chunk = os.read(stdin_fd, 65536).decode()
            if not chunk:
                break                                  # EOF: the owner is gone
            buffer += chunk
            *lines, buffer = buffer.split("\n")
            for line in lines:
                if line == "done":
                    return
                if line.startswith("add "):
                    names.append(line[4:])
        elif process_start_time(owner) != start:
            break                                      # owner died, pipe held open elsewhere
    for name in names:
        remove_namespace(name)
    if process_start_time(owner) != start:
        forget_owner(owner, start)                     # the owner is gone: so is its record


@contextmanager
def signal_guard() -> Iterator[None]:
    """While open, SIGTERM and SIGHUP raise ``SystemExit`` (so ``__exit__`` runs)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    global _guard_owner
    _guard_owner = os.getpid()
    previous = {}
    for signum in (signal.SIGTERM, signal.SIGHUP):
        if signal.getsignal(signum) == signal.SIG_DFL:
            previous[signum] = signal.signal(signum, _raise_exit)
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


_guard_owner: int | None = None


def _raise_exit(signum: int, _frame) -> None:
    if os.getpid() != _guard_owner:
        # A fork that inherited the handler (pyroute2 forks helpers and stops them with
        # SIGTERM) must die as SIGTERM would kill it, not unwind the parent's Python stack.
        os._exit(128 + signum)
    raise SystemExit(128 + signum)


class OwnedNamespaces:
    """Namespaces this process creates and always removes, however it ends: the lifecycle the
    kernel judge's lab, the live mode and the kernel benchmark share.

    A subclass builds in :meth:`_build` (naming each namespace with :meth:`new_namespace`)
    and closes what it holds beside namespaces in :meth:`_release`, which runs first."""

    def __init__(self) -> None:
        self._created: list[str] = []
        self._owner = os.getpid()
        self._watchdog = Watchdog()
        self._signals = signal_guard()

    def __enter__(self):
        reap_orphans()
        self._signals.__enter__()
        try:
            self._watchdog.start()
            self._build()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def close(self) -> None:
        """Release, remove every namespace (idempotent), then the watchdog and signals."""
        if os.getpid() != self._owner:
            # A forked child (pyroute2 forks to create namespaces) unwinding through our
            # ``except`` must not tear down its parent's namespaces.
            return
        try:
            self._release()
            for name in reversed(self._created):
                remove_namespace(name)
            self._created.clear()
            self._watchdog.release()
        finally:
            self._signals.__exit__(None, None, None)

    def new_namespace(self) -> str:
        """A new namespace with ``lo`` up, announced to the watchdog before it exists (a crash
        right after is covered)."""
        from pyroute2 import IPRoute

        name = new_namespace_name()
        self._watchdog.announce(name)
        pyroute2_netns.create(name)
        self._created.append(name)
        with IPRoute(netns=name, flags=0) as ipr:
            ipr.link("set", index=ipr.link_lookup(ifname="lo")[0], state="up")
        return name

    def _build(self) -> None:
        raise NotImplementedError

    def _release(self) -> None:
        """What the subclass holds besides its namespaces (open devices, say)."""


def main(argv: list[str]) -> int:
    if len(argv) >= 3 and argv[0] == "--watch":
        for signum in (signal.SIGINT, signal.SIGHUP):
            signal.signal(signum, signal.SIG_IGN)
        watch(int(argv[1]), argv[2])
        return 0
    if argv == ["--reap"]:
        for name in reap_orphans():
            print(name)
        return 0
    print("usage: python -m tracer.kernel.cleanup --reap | --watch <pid> <start>",
          file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
