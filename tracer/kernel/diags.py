"""A ``calicoctl node diags`` bundle of a realised node: the same commands calicoctl runs
(``commands/node/diags.go``), run inside the node's namespace, written as calicoctl lays them
out (``diagnostics/<file>`` in ``diags-<time>.tar.gz``). ``hostname`` is the node's name: a
network namespace shares the host's UTS namespace, so running ``hostname`` would print the
machine's."""

from __future__ import annotations

import io
import tarfile
import time
from pathlib import Path

from tracer.kernel import nsexec
from tracer.kernel.realise import KernelLab

# diags.go's commands for the files a trace reads, in its order.
DIAGS_COMMANDS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("date", ("date",)),
    ("ipv4_route", ("ip", "-4", "route")),
    ("ipv4_addr", ("ip", "-4", "addr")),
    ("ipv4_tables", ("iptables-save", "-c")),
    ("ipsets", ("ipset", "list")),
)


def node_diags(lab: KernelLab, node: str) -> dict[str, str]:
    """file name -> text, as calicoctl node diags would collect them on ``node``."""
    ns = lab.netns_of_node(node)
    files = {"hostname": node + "\n"}
    for name, argv in DIAGS_COMMANDS:
        files[name] = nsexec.run(ns, list(argv))
    return files


def write_bundle(files: dict[str, str], dest: Path) -> Path:
    """``dest``/diags-<time>.tar.gz holding ``diagnostics/<file>`` for each file."""
    dest.mkdir(parents=True, exist_ok=True)
    path = dest / f"diags-{time.strftime('%Y%m%d_%H%M%S')}.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(f"diagnostics/{name}")
            info.size, info.mtime = len(data), int(time.time())
            tar.addfile(info, io.BytesIO(data))
    return path
