"""A ``calicoctl node diags`` bundle, as ``calicoctl/commands/node/diags.go`` writes it.

``diags-YYYYMMDD_HHMMSS.tar.gz`` holds a ``diagnostics/`` folder with one file per command:
``date``, ``hostname``, ``ipv4_route`` (``ip -4 route``), ``ipv6_route``, ``ipv4_addr``
(``ip -4 addr``), ``ipv6_addr``, ``nft_ruleset`` (``nft -n -a list ruleset``), ``ipv4_tables``
(``iptables-save -c``), ``ipv6_tables``, ``ipsets`` (``ipset list``), ``ipset_container``
(``ipset list`` run in the calico/node container when the host has no ipset),
``journalctl_calico_node``, ``netstat`` or ``ss``, and ``logs/``. A command that failed leaves
its file out. Only the text files a trace reads are kept, in memory; nothing is extracted.
"""

from __future__ import annotations

import tarfile
from dataclasses import dataclass, field
from pathlib import Path

from tracer.errors import InputError

# The command behind each file (diags.go's cmds table), for messages.
BUNDLE_FILES: dict[str, str] = {
    "hostname": "hostname",
    "ipv4_route": "ip -4 route",
    "ipv4_addr": "ip -4 addr",
    "ipv4_tables": "iptables-save -c",
    "ipsets": "ipset list",
    "ipset_container": "ipset list (in the calico/node container)",
    "date": "date",
}
REQUIRED = ("ipv4_route", "ipv4_addr", "ipv4_tables")
_MAX_FILE = 256 * 1024 * 1024        # a real node's iptables-save is a few MB; refuse a bomb


@dataclass(frozen=True)
class DiagsBundle:
    source: str                        # the path given
    files: dict[str, str] = field(hash=False)

    @property
    def hostname(self) -> str | None:
        name = self.files.get("hostname", "").strip()
        return name or None

    def text(self, name: str) -> str:
        if name not in self.files:
            raise InputError(f"the bundle has no {name} ({BUNDLE_FILES.get(name, name)} "
                             "failed or was not run on the node)", file=self.source)
        return self.files[name]

    def filename(self, name: str) -> str:
        return f"{self.source}:{name}"

    @property
    def ipsets_text(self) -> str | None:
        """``ipsets``, else the container's ``ipset list`` (diags.go's fallback)."""
        for name in ("ipsets", "ipset_container"):
            if self.files.get(name, "").strip():
                return self.files[name]
        return None


def read_bundle(path: str) -> DiagsBundle:
    """Read a bundle from its ``.tar.gz`` or its unpacked folder (the ``diagnostics`` folder or
    the one holding it)."""
    where = Path(path)
    if where.is_dir():
        files = _read_folder(where)
    elif where.is_file():
        files = _read_tar(where, path)
    else:
        raise InputError("no such bundle (a calicoctl node diags .tar.gz or its folder)",
                         file=path)
    missing = [name for name in REQUIRED if name not in files]
    if missing:
        raise InputError(f"not a calicoctl node diags bundle: no {', '.join(missing)}",
                         file=path)
    return DiagsBundle(path, files)


def _read_folder(where: Path) -> dict[str, str]:
    folder = where / "diagnostics" if (where / "diagnostics").is_dir() else where
    files = {}
    for name in BUNDLE_FILES:
        candidate = folder / name
        if candidate.is_file():
            files[name] = candidate.read_text(errors="replace")
    return files


def _read_tar(where: Path, path: str) -> dict[str, str]:
    try:
        with tarfile.open(where, "r:*") as tar:
            files = {}
            for member in tar.getmembers():
                name = member.name.rstrip("/").split("/")[-1]
                parent = member.name.rstrip("/").split("/")[:-1]
                if (not member.isfile() or name not in BUNDLE_FILES
                        or (parent and parent[-1] != "diagnostics")):
                    continue
                if member.size > _MAX_FILE:
                    raise InputError(f"{member.name} is larger than {_MAX_FILE} bytes",
                                     file=path)
                handle = tar.extractfile(member)
                if handle is not None:
                    files[name] = handle.read().decode(errors="replace")
            return files
    except (tarfile.TarError, OSError, EOFError) as err:
        raise InputError(f"cannot read the bundle: {err}", file=path) from None
