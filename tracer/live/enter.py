"""Enter a pod's namespace from ``exec``: kept apart from the realiser so ``exec`` starts fast
(nothing of the dataplane is imported)."""

from __future__ import annotations

import ctypes
import ctypes.util
import os

from tracer.kernel import nsexec


def enter_netns(name: str) -> None:
    """Move the calling thread into namespace ``name`` (``exec`` does this, then execs)."""
    fd = os.open(nsexec.netns_path(name), os.O_RDONLY | os.O_CLOEXEC)
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
        if libc.setns(fd, nsexec.CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"setns into {name}: {os.strerror(err)}")
    finally:
        os.close(fd)
