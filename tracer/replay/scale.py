"""Replay on several processes with Dask: captures split by flow, results merged.

Each task reads the capture files itself (the reader is vectorised; shipping the files' bytes
would cost more), builds the dataplane once, and replays only the flows whose key hashes to
its part (:func:`tracer.replay.runner.partition`), with its own connection trackers. A flow's
packets all land in one part, in capture order, with the whole run's clock, so each packet
meets the conntrack entry it would meet in one process. The merge puts the rows back in
capture order and numbers the flows by first appearance, as one process does, so the tables
are the same (a test holds them equal row for row).

What a split cannot keep: the conntrack table's fill level (``conntrack-full`` drops happen
per part), and a NAT port clash between flows of different parts.
"""

from __future__ import annotations

from collections.abc import Sequence

from tracer.capture import Capture, read_capture
from tracer.replay.entry import parse_at
from tracer.replay.runner import Replay, replay_captures
from tracer.trace.assemble import build_dataplane
from tracer.trace.prepared import PreparedCluster


def replay_part(prepared: PreparedCluster, version: str, engine: str,
                paths: Sequence[str], keylog: str | None, at_text: str | None,
                tcp_loose: bool, part: tuple[int, int], first_ns: int | None,
                fast: bool = True) -> Replay:
    """One task: the rows of ``part`` of every capture. Captures are left out of the result
    (the caller holds its own copies); rows name them by index."""
    dataplane = build_dataplane(prepared.cluster, version=version, prepared=prepared)
    if engine == "compiled":
        from tracer.engine.runner import compiled
        dataplane, _ = compiled(dataplane)
    captures = [read_capture(path, keylog=keylog) for path in paths]
    result = replay_captures(dataplane, captures, at=parse_at(dataplane, at_text),
                             tcp_loose=tcp_loose, part=part, first_ns=first_ns, fast=fast)
    result.captures = []
    return result


def first_timestamp(captures: Sequence[Capture]) -> int | None:
    """The clock's zero: the first parsed row's time, as one process would see it."""
    for capture in captures:
        from tracer.capture import category
        for row in capture.meta[capture.meta["frame"].argsort(kind="stable")]:
            if category(int(row["reason"])) not in ("malformed", "fragment"):
                return int(row["ts_ns"])
    return None


def merge(parts: Sequence[Replay], captures: Sequence[Capture]) -> Replay:
    """The parts' rows in capture order, flows numbered by first appearance."""
    rows, keys_of_flow = [], []
    for p, result in enumerate(parts):
        frames, flows = result.columns["frame"], result.columns["flow"]
        local = {}                            # the part's flow id -> key, for why/selected_by
        for i, key in enumerate(result.keys):
            if key is not None:
                local[flows[i]] = key
            skipped = result.origin[i][1] < 0
            rows.append((result.origin[i][0], frames[i], skipped, p, i))
        keys_of_flow.append(local)
    rows.sort(key=lambda r: r[:3])
    merged = Replay()
    merged.captures = list(captures)
    ids: dict[tuple, int] = {}
    for _, _, _, p, i in rows:
        result = parts[p]
        key = result.keys[i]
        for name, column in merged.columns.items():
            column.append(result.columns[name][i])
        if key is not None:
            merged.columns["flow"][-1] = ids.setdefault(key, len(ids))
        merged.origin.append(result.origin[i])
        merged.keys.append(key)
    for result, local_keys in zip(parts, keys_of_flow):
        for local, key in local_keys.items():
            if local in result.why:
                merged.why[ids[key]] = result.why[local]
                merged.selected_by[ids[key]] = result.selected_by[local]
        merged.warnings.extend(w for w in result.warnings if w not in merged.warnings)
    merged.fast_path = "per part: " + " | ".join(p.fast_path for p in parts)
    return merged


def replay_parallel(prepared: PreparedCluster, version: str, engine: str,
                    captures: Sequence[Capture], *, keylog: str | None, at: str | None,
                    tcp_loose: bool, workers: int, scheduler: str | None = None,
                    fast: bool = True) -> Replay:
    """Replay on ``workers`` local processes (a Dask ``LocalCluster``), or on the Dask
    scheduler at ``scheduler``; the result equals :func:`replay_captures`'s in one process."""
    from dask.distributed import Client, LocalCluster

    paths = [c.path for c in captures]
    first_ns = first_timestamp(captures)
    if scheduler is not None:
        client, cluster = Client(scheduler), None
    else:
        cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                               dashboard_address=None)
        client = Client(cluster)
    try:
        shared = client.scatter(prepared, broadcast=True)
        futures = [client.submit(replay_part, shared, version, engine, paths, keylog, at,
                                 tcp_loose, (k, workers), first_ns, fast, pure=False)
                   for k in range(workers)]
        parts = client.gather(futures)
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
    return merge(parts, captures)
