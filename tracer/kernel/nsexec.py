"""Run code, sockets and binaries inside a named network namespace.

The trick: ``setns(CLONE_NEWNET)`` changes only the calling *thread*, so each call here runs
in a short-lived thread that enters the namespace, does its work and ends. Whatever that
thread creates stays bound to the namespace: a socket, a ``/proc/sys/net`` write, or a child
process started with :mod:`subprocess` (a forked child inherits the thread's namespace).
The caller's own threads never leave the namespace they are in, and nothing shells out to
``ip``.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import socket
import subprocess
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import TypeVar

NETNS_RUN_DIR = "/run/netns"
CLONE_NEWNET = 0x40000000

T = TypeVar("T")
_libc: ctypes.CDLL | None = None


class CommandFailed(RuntimeError):
    """A binary run inside a namespace exited non-zero; the message carries its stderr."""


def netns_path(name: str) -> str:
    return os.path.join(NETNS_RUN_DIR, name)


def _setns(fd: int) -> None:
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setns failed: {os.strerror(err)}")


def call_in_netns(name: str, fn: Callable[..., T], *args, **kwargs) -> T:
    """Run ``fn(*args, **kwargs)`` in a fresh thread inside namespace ``name``."""
    fd = os.open(netns_path(name), os.O_RDONLY | os.O_CLOEXEC)
    outcome: dict[str, object] = {}

    def body() -> None:
        try:
            _setns(fd)
            outcome["value"] = fn(*args, **kwargs)
        except BaseException as exc:  # re-raised in the caller's thread
            outcome["error"] = exc

    try:
        thread = threading.Thread(target=body, name=f"netns:{name}", daemon=True)
        thread.start()
        thread.join()
    finally:
        os.close(fd)
    if "error" in outcome:
        raise outcome["error"]  # type: ignore[misc]
    return outcome["value"]  # type: ignore[return-value]


def socket_in(name: str, family: int, kind: int, proto: int = 0) -> socket.socket:
    """A socket that lives in namespace ``name``."""
    return call_in_netns(name, socket.socket, family, kind, proto)


def popen(name: str, argv: Sequence[str], **kwargs) -> subprocess.Popen:
    """Start ``argv`` inside namespace ``name`` (a :class:`subprocess.Popen`)."""
    return call_in_netns(name, subprocess.Popen, list(argv), **kwargs)


def run(name: str, argv: Sequence[str], *, input_text: str | None = None,
        timeout: float = 30.0) -> str:
    """Run ``argv`` in namespace ``name``; return stdout, raise :class:`CommandFailed`."""
    proc = popen(name, argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                 stderr=subprocess.PIPE, text=True)
    try:
        out, err = proc.communicate(input_text, timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise CommandFailed(f"{argv[0]} timed out after {timeout}s in {name}") from None
    if proc.returncode != 0:
        detail = (err or out).strip().splitlines()
        raise CommandFailed(f"{' '.join(argv[:3])}: exit {proc.returncode}: "
                            + ("; ".join(detail[:3]) if detail else "no output"))
    return out


def write_sysctls(name: str, values: Mapping[str, str | int]) -> None:
    """Write sysctls of namespace ``name``; keys are paths under ``/proc/sys`` such as
    ``net/ipv4/conf/cali1/proxy_arp`` (slashes, because interface names may hold dots)."""

    def write_all() -> None:
        for key, value in values.items():
            with open("/proc/sys/" + key, "w") as handle:
                handle.write(f"{value}\n")

    call_in_netns(name, write_all)


def read_sysctl(name: str, key: str) -> str:
    def read() -> str:
        with open("/proc/sys/" + key) as handle:
            return handle.read().strip()

    return call_in_netns(name, read)


def snmp_counters(name: str) -> dict[tuple[str, str], int]:
    """The namespace's ``/proc/net/snmp`` counters: ("Tcp", "InSegs") -> value. Read through
    ``thread-self``: ``/proc/self/net`` would show the thread group leader's namespace."""
    text = call_in_netns(name, lambda: open("/proc/thread-self/net/snmp").read())
    counters: dict[tuple[str, str], int] = {}
    lines = text.splitlines()
    for header, values in zip(lines[::2], lines[1::2]):
        proto, names = header.split(":", 1)
        for field, value in zip(names.split(), values.split(":", 1)[1].split()):
            counters[(proto, field)] = int(value)
    return counters
