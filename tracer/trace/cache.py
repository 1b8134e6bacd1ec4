"""A content-keyed cache of prepared clusters, so a second command on the same cluster starts
warm.

The key is a digest of everything the result depends on: each manifest's name and bytes (and
the scenario metadata beside them), the Calico release asked for, the tool's version and the
size and modification time of the tool's own source files (an edited checkout never reads an
old layout). Any change to any input is a new key, so there is nothing to invalidate.

Entries are written to a temporary file in the cache directory and renamed into place, so a
reader sees a whole entry or none, and two commands filling the same entry at once both
succeed (the later rename wins; both wrote the same thing). An entry that cannot be read is
treated as absent. Only the newest :data:`KEEP` entries are kept.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import tempfile
from collections.abc import Sequence
from pathlib import Path

import tracer
from tracer.model.loader import SCENARIO_FILES, collector_paused, load_cluster, manifest_files
from tracer.trace.prepared import PreparedCluster, prepare

FORMAT = b"calico-trace prepared cluster 1"
KEEP = 16
SUFFIX = ".pickle"


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/calico-trace``, by default ``~/.cache/calico-trace``."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "calico-trace"


def _code_stamp() -> bytes:
    root = Path(tracer.__file__).parent
    digest = hashlib.sha256(tracer.__version__.encode())
    for path in sorted(root.rglob("*.py")):
        stat = path.stat()
        digest.update(f"{path.relative_to(root)}:{stat.st_size}:{stat.st_mtime_ns}\n".encode())
    return digest.digest()


def _inputs(paths: Sequence[str | os.PathLike]) -> list[str]:
    files = list(manifest_files(paths))
    for path in map(Path, paths):
        if path.is_dir():
            files += [str(path / name) for name in SCENARIO_FILES if (path / name).is_file()]
        elif path.name in SCENARIO_FILES:
            files.append(str(path))
    return files


def cache_key(paths: Sequence[str | os.PathLike], calico_version: str | None) -> str:
    """The digest naming the cache entry for these inputs."""
    digest = hashlib.sha256(FORMAT)
    digest.update(_code_stamp())
    digest.update(f"release={calico_version!r}\n".encode())
    for file in _inputs(paths):
        try:
            content = Path(file).read_bytes()
        except OSError:
            content = b"<unreadable>"            # the loader reports it properly
        digest.update(f"{file}\n{len(content)}\n".encode())
        digest.update(content)
    return digest.hexdigest()


def load_prepared(paths: Sequence[str | os.PathLike], *, calico_version: str | None = None,
                  cache_dir: Path | None = None) -> tuple[PreparedCluster, bool]:
    """The prepared cluster for ``paths``, and whether it came from the cache. Without a
    ``cache_dir`` nothing is read or written."""
    if cache_dir is None:
        return prepare(load_cluster(paths, calico_version=calico_version)), False
    entry = Path(cache_dir) / (cache_key(paths, calico_version) + SUFFIX)
    cached = _read(entry)
    if cached is not None:
        return cached, True
    prepared = prepare(load_cluster(paths, calico_version=calico_version))
    _write(entry, prepared)
    return prepared, False


def _read(entry: Path) -> PreparedCluster | None:
    try:
        data = entry.read_bytes()
    except OSError:
        return None
    try:
        with collector_paused():
            value = pickle.loads(data)
    except Exception:                           # a damaged or foreign entry: rebuild it
        return None
    return value if isinstance(value, PreparedCluster) else None


def _write(entry: Path, prepared: PreparedCluster) -> None:
    try:
        entry.parent.mkdir(parents=True, exist_ok=True)
        out = tempfile.NamedTemporaryFile(dir=entry.parent, prefix=".tmp-", suffix=SUFFIX,
                                          delete=False)
    except OSError:
        return                                   # a read-only cache only costs speed
    try:
        with out:
            pickle.dump(prepared, out, protocol=pickle.HIGHEST_PROTOCOL)
        os.replace(out.name, entry)
    except OSError:
        return                                   # disk full: the next command tries again
    finally:
        Path(out.name).unlink(missing_ok=True)   # gone already once renamed
    _prune(entry.parent)


def _prune(directory: Path) -> None:
    try:
        entries = sorted(directory.glob("*" + SUFFIX), key=lambda p: p.stat().st_mtime,
                         reverse=True)
        for old in entries[KEEP:]:
            old.unlink(missing_ok=True)
    except OSError:
        pass                                     # another command pruned it first
