"""What-if: the same traffic against the manifests with some objects added or replaced.

An object in a ``--what-if`` file replaces the object of the same kind, namespace and name in
``-f`` (in its place, so IPAM hands out the same addresses), or is added when there is none.
Both replays see the same packets in the same order, so a flow has the same id in both, and
the diff is a join on it.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path

import pandas as pd
import yaml
from rich.markup import escape
from rich.table import Table

from tracer.errors import InputError
from tracer.model.loader import (classify, expand_lists, load_cluster, load_scenario_meta,
                                 manifest_files, read_documents)
from tracer.trace.prepared import PreparedCluster, prepare

CHANGE_COLUMNS: dict[str, str] = {
    "flow": "Int64", "protocol": "string", "src": "string", "sport": "Int64",
    "dst": "string", "dport": "Int64", "source": "string", "destination": "string",
    "packets": "Int64", "change": "string",
    "verdict_before": "string", "reason_before": "string", "policy_before": "string",
    "verdict_after": "string", "reason_after": "string", "policy_after": "string",
    "chain_before": "string", "rule_before": "Int64", "chain_after": "string",
    "rule_after": "Int64",
}
BREAKS, FIXES = "allowed -> denied", "denied -> allowed"


def _objects(files: Sequence[str]):
    """(identity, document) of every object the files hold, in order; kinds calico-trace
    does not read come back with identity None and are kept as they are."""
    skipped: dict[str, list[str]] = {}
    for file in files:
        for index, doc in enumerate(read_documents(file), start=1):
            for item, where in expand_lists(doc, file, f"document {index}"):
                raw = classify(item, file, skipped, where)
                yield ((raw.key, raw.ident) if raw is not None else None), item


def overlay_manifests(paths: Sequence[str], what_if: Sequence[str], *,
                      calico_version: str | None = None) -> PreparedCluster:
    """The cluster ``paths`` describe with ``what_if``'s objects added or replacing theirs."""
    changes: dict[tuple, dict] = {}
    for ident, doc in _objects(manifest_files(what_if)):
        if ident is None:
            continue
        if ident in changes:
            raise InputError("given twice in --what-if", obj=f"{ident[0]} {ident[1]}")
        changes[ident] = doc
    if not changes:
        raise InputError("no object calico-trace reads in the --what-if files", obj="--what-if")
    if calico_version is None:
        calico_version = next((str(m["calicoVersion"]) for m in map(load_scenario_meta, paths)
                               if m.get("calicoVersion")), None)
    merged, used = [], set()
    for ident, doc in _objects(manifest_files(paths)):
        if ident in changes:
            doc = changes[ident]
            used.add(ident)
        merged.append(doc)
    merged += [doc for ident, doc in changes.items() if ident not in used]
    with tempfile.TemporaryDirectory(prefix="calico-trace-what-if-") as folder:
        target = Path(folder) / "manifests.yaml"
        target.write_text(yaml.safe_dump_all(merged, sort_keys=False))
        cluster = load_cluster([str(target)], calico_version=calico_version)
    return prepare(cluster)


def diff_flows(before: pd.DataFrame, after: pd.DataFrame) -> pd.DataFrame:
    """Flows whose verdict differs between two replays of the same traffic."""
    joined = before.set_index("flow").merge(after.set_index("flow"), how="inner",
                                            left_index=True, right_index=True,
                                            suffixes=("", "_after"))
    changed = joined[joined["verdict"] != joined["verdict_after"]]
    out = pd.DataFrame(index=changed.index)
    for name in ("protocol", "src", "sport", "dst", "dport", "source", "destination",
                 "packets"):
        out[name] = changed[name]
    out["change"] = [_change(a, b) for a, b in zip(changed["verdict"], changed["verdict_after"])]
    for side, suffix in (("before", ""), ("after", "_after")):
        out[f"verdict_{side}"] = changed[f"verdict{suffix}"]
        out[f"reason_{side}"] = changed[f"reason{suffix}"]
        out[f"policy_{side}"] = changed[f"policy{suffix}"]
        out[f"chain_{side}"] = changed[f"deciding_chain{suffix}"]
        out[f"rule_{side}"] = changed[f"deciding_rule{suffix}"]
    out = out.reset_index()
    for name in CHANGE_COLUMNS:
        if name not in out:
            out[name] = pd.Series([None] * len(out), dtype="object")
    return out[list(CHANGE_COLUMNS)].astype(CHANGE_COLUMNS)


def _change(before: str, after: str) -> str:
    if before == "allowed":
        return BREAKS
    if after == "allowed":
        return FIXES
    return f"{before} -> {after}"


def breaks(changes: pd.DataFrame) -> bool:
    """Some flow that was allowed is (partly) denied now: the change would break traffic."""
    return bool((changes["verdict_before"] == "allowed").any())


def changes_table(changes: pd.DataFrame) -> Table:
    table = Table(title=f"What-if: {len(changes)} flow(s) change verdict", title_justify="left")
    for name in ("flow", "from", "to", "proto/port", "change", "before", "after"):
        table.add_column(name, justify="right" if name == "flow" else "left",
                         overflow="fold")
    for _, row in changes.iterrows():
        port = "" if pd.isna(row["dport"]) else f"/{row['dport']}"
        cells = (str(row["flow"]), _name(row["source"], row["src"]),
                 _name(row["destination"], row["dst"]), f"{row['protocol']}{port}",
                 row["change"], _side(row, "before"), _side(row, "after"))
        table.add_row(*map(escape, cells))
    if changes.empty:
        table.add_row("", "(no flow changes verdict)", "", "", "", "", "")
    return table


def _name(label, ip) -> str:
    if label is None or pd.isna(label) or str(label).startswith("external"):
        return str(ip)
    return str(label)


def _side(row, side: str) -> str:
    verdict, reason, policy = (row[f"{k}_{side}"] for k in ("verdict", "reason", "policy"))
    text = str(verdict)
    if not pd.isna(reason) and reason:
        text += f" [{reason}]"
    if not pd.isna(policy) and policy:
        text += f" by {policy}"
    if not pd.isna(row[f"chain_{side}"]):
        text += f" ({row[f'chain_{side}']} rule {row[f'rule_{side}']})"
    return text
