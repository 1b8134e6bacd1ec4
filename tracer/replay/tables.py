"""A replay as tables: one row per packet, one row per flow; saved as Parquet, CSV and an
annotated pcapng.

Flows are connections as conntrack pairs them (both directions, an ICMP error with the flow it
quotes), named by their first packet. A flow is *allowed* when every packet of it was, *dropped*
when none was, *partly dropped* otherwise; its reason and deciding policy are those of its
first dropped packet, else of its first packet a policy decided.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from tracer.capture import LINKTYPE_RAW, Frame, write_pcapng
from tracer.errors import InputError
from tracer.replay.runner import ALLOWED, DROPPED, PACKET_COLUMNS, Replay

ALL_ALLOWED, ALL_DROPPED, PARTLY = "allowed", "dropped", "partly dropped"

FLOW_COLUMNS: dict[str, str] = {
    "flow": "Int64", "protocol": "string", "src": "string", "sport": "Int64",
    "dst": "string", "dport": "Int64", "source": "string", "destination": "string",
    "first_seen": "datetime64[ns, UTC]", "last_seen": "datetime64[ns, UTC]",
    "packets": "Int64", "bytes": "Int64", "allowed": "Int64", "dropped": "Int64",
    "verdict": "string", "reason": "string", "node": "string", "policy": "string",
    "tier": "string", "deciding_chain": "string", "deciding_rule": "Int64",
    "why": "string", "selected_by": "string",
}


def packet_frame(replay: Replay) -> pd.DataFrame:
    """One row per captured frame, in capture order, typed as :data:`PACKET_COLUMNS`."""
    frame = pd.DataFrame({name: pd.Series(values, dtype="object")
                          for name, values in replay.columns.items()})
    frame = frame.astype(PACKET_COLUMNS)
    frame.insert(2, "time", pd.to_datetime(frame["time_ns"], unit="ns", utc=True))
    return frame


def flow_frame(packets: pd.DataFrame, replay: Replay | None = None) -> pd.DataFrame:
    """One row per flow (packets that were classified: parsed and entered)."""
    rows = packets[packets["flow"].notna() & packets["verdict"].isin([ALLOWED, DROPPED])]
    if rows.empty:
        return _typed(pd.DataFrame({name: [] for name in FLOW_COLUMNS}))
    grouped = rows.groupby("flow", sort=True)
    first = grouped.first()                      # first non-null of each column
    head = grouped.head(1).set_index("flow")     # the flow's first packet, as it was
    out = pd.DataFrame(index=first.index)
    for name in ("protocol", "src", "sport", "dst", "dport", "source", "destination"):
        out[name] = head[name]
    out["first_seen"] = grouped["time"].min()
    out["last_seen"] = grouped["time"].max()
    out["packets"] = grouped.size()
    out["bytes"] = grouped["length"].sum()
    allowed = (rows["verdict"] == ALLOWED).groupby(rows["flow"]).sum()
    out["allowed"] = allowed
    out["dropped"] = out["packets"] - allowed
    out["verdict"] = ALL_ALLOWED
    out.loc[out["allowed"] == 0, "verdict"] = ALL_DROPPED
    out.loc[(out["allowed"] > 0) & (out["dropped"] > 0), "verdict"] = PARTLY
    # The packet that speaks for the flow: its first drop, else its first decided packet.
    drops = rows[rows["verdict"] == DROPPED].groupby("flow").head(1).set_index("flow")
    decided = rows[rows["policy"].notna()].groupby("flow").head(1).set_index("flow")
    speaker = pd.concat([drops, decided[~decided.index.isin(drops.index)]]).reindex(out.index)
    out["reason"] = speaker["reason"].fillna("")
    out["node"] = speaker["node"]
    out["policy"] = speaker["policy"]
    out["tier"] = speaker["tier"]
    out["deciding_chain"] = speaker["deciding_chain"]
    out["deciding_rule"] = speaker["deciding_rule"]
    if replay is not None:
        out["why"] = [replay.why.get(int(f), "") for f in out.index]
        out["selected_by"] = [replay.selected_by.get(int(f), "") for f in out.index]
    out = out.reset_index()
    return _typed(out)


def _typed(frame: pd.DataFrame) -> pd.DataFrame:
    for name, dtype in FLOW_COLUMNS.items():
        if name not in frame:
            frame[name] = pd.Series([None] * len(frame), dtype="object")
    return frame[list(FLOW_COLUMNS)].astype(FLOW_COLUMNS)


def save(frame: pd.DataFrame, directory: Path, stem: str) -> list[Path]:
    """``stem.parquet`` and ``stem.csv`` under ``directory``."""
    parquet, csv = directory / f"{stem}.parquet", directory / f"{stem}.csv"
    try:
        frame.to_parquet(parquet, index=False)
        frame.to_csv(csv, index=False)
    except OSError as err:
        raise InputError(f"cannot write: {err.strerror or err}", file=str(directory),
                         obj="--out") from None
    return [parquet, csv]


def comment(row) -> str:
    """The pcapng comment of one packet: its verdict, the deciding rule and Calico object,
    its conntrack state and NAT (Wireshark shows it as frame.comment)."""
    verdict = row["verdict"]
    lines = [f"calico-trace: {verdict}" + (f" [{row['reason']}]" if _has(row["reason"]) else "")
             + (f" on {row['node']}" if _has(row["node"]) else "")]
    if _has(row["detail"]) and not (_has(row["deciding_chain"]) and str(row["detail"]).startswith(
            f"{row['deciding_table']}/{row['deciding_chain']} ")):
        lines.append(str(row["detail"]))
    if _has(row["deciding_chain"]):
        rule = f"decided by {row['deciding_table']}/{row['deciding_chain']} rule " \
               f"{row['deciding_rule']}"
        if _has(row["policy"]):
            rule += f": {row['policy']}"
            if _has(row["tier"]):
                rule += f" (tier {row['tier']})"
        lines.append(rule)
    if _has(row["ct_state"]):
        lines.append(f"conntrack {row['ct_state']}" +
                     (f" {row['tcp_state']}" if _has(row["tcp_state"]) else ""))
    if _has(row["nat"]):
        lines.append(f"nat {row['nat']}")
    return "\n".join(lines)


def _has(value) -> bool:
    return value is not None and not pd.isna(value) and value != ""


def write_annotated_pcapng(path: Path, replay: Replay, packets: pd.DataFrame) -> int:
    """Every frame that held IPv4 (or IPv6), as the capture holds it from the network header
    on (tunnel framing included), with its verdict as the packet comment; frames without an
    IP header (ARP...) have no bytes to write."""
    def frames():
        for (capture_index, row), (_, record) in zip(replay.origin, packets.iterrows()):
            if row < 0:
                continue
            capture = replay.captures[capture_index]
            meta = capture.meta[row]
            if int(meta["tunnel"]) or int(meta["frags"]):
                data = capture.frame(row)[int(meta["l3_offset"]):] if int(meta["tunnel"]) \
                    else capture.datagram(row)
            else:
                data = capture.datagram(row)
            entry = record["entry"] if _has(record["entry"]) else "capture"
            yield Frame(data=data, interface=str(entry),
                        timestamp=int(meta["ts_ns"]) / 1e9, comment=comment(record))
    try:
        return write_pcapng(path, frames(), linktype=LINKTYPE_RAW)
    except OSError as err:
        raise InputError(f"cannot write: {err.strerror or err}", file=str(path),
                         obj="--out") from None


def write_hops(path: Path, replay: Replay) -> int:
    """Every replayed packet at each point of its path (``replay_captures(hops=True)``)."""
    try:
        return write_pcapng(path, replay.hop_frames, linktype=LINKTYPE_RAW)
    except OSError as err:
        raise InputError(f"cannot write: {err.strerror or err}", file=str(path),
                         obj="--hops") from None
