"""The end-of-replay summary: counts, drops by reason, the top denied flows and who denied them.

Built as rich renderables from the two frames alone, so what is printed is what was saved.
"""

from __future__ import annotations

import pandas as pd
from rich.console import Group
from rich.markup import escape
from rich.table import Table

from tracer.replay.runner import ALLOWED, DROPPED, NOT_MODELLED, NOT_PARSED


def summary(packets: pd.DataFrame, flows: pd.DataFrame, *, top: int = 10) -> Group:
    return Group(totals(packets, flows), drops_by_reason(packets),
                 top_denied(flows, top=top))


def totals(packets: pd.DataFrame, flows: pd.DataFrame) -> Table:
    table = Table(title="Replay", show_header=False, title_justify="left")
    table.add_column("what")
    table.add_column("count", justify="right")
    verdicts = packets["verdict"].value_counts()
    table.add_row("packets", str(len(packets)))
    table.add_row("flows", str(len(flows)))
    table.add_row("allowed", str(int(verdicts.get(ALLOWED, 0))))
    table.add_row("dropped", str(int(verdicts.get(DROPPED, 0))))
    for other in (NOT_PARSED, NOT_MODELLED):
        if verdicts.get(other, 0):
            table.add_row(other, str(int(verdicts[other])))
    if len(flows):
        counts = flows["verdict"].value_counts()
        table.add_row("flows allowed / dropped / partly",
                      " / ".join(str(int(counts.get(v, 0)))
                                 for v in ("allowed", "dropped", "partly dropped")))
    return table


def drops_by_reason(packets: pd.DataFrame) -> Table:
    table = Table(title="Dropped by reason", title_justify="left")
    table.add_column("reason")
    table.add_column("packets", justify="right")
    dropped = packets[packets["verdict"] == DROPPED]
    for reason, count in dropped["reason"].value_counts().items():
        table.add_row(str(reason), str(int(count)))
    if dropped.empty:
        table.add_row("(none)", "0")
    return table


def top_denied(flows: pd.DataFrame, *, top: int = 10) -> Table:
    table = Table(title=f"Top denied flows (by dropped packets, at most {top})",
                  title_justify="left")
    for name in ("flow", "from", "to", "proto/port", "dropped", "reason", "deciding policy"):
        table.add_column(name, justify="right" if name in ("flow", "dropped") else "left",
                         overflow="fold")
    denied = flows[flows["dropped"] > 0].sort_values(["dropped", "flow"],
                                                     ascending=[False, True]).head(top)
    for _, row in denied.iterrows():
        port = "" if pd.isna(row["dport"]) else f"/{row['dport']}"
        policy = _text(row["policy"])
        selected = [part for part in _text(row.get("selected_by")).split("; ")
                    if part and not part.endswith(": none")]
        if selected and row["reason"] == "default-deny":
            policy += f"; {'; '.join(selected)}"
        cells = (str(row["flow"]), _end(row["source"], row["src"]),
                 _end(row["destination"], row["dst"]), f"{row['protocol']}{port}",
                 str(row["dropped"]), _text(row["reason"]), policy)
        table.add_row(*map(escape, cells))
    if denied.empty:
        table.add_row("", "(none)", "", "", "0", "", "")
    return table


def _text(value) -> str:
    return "" if value is None or pd.isna(value) else str(value)


def _end(label, ip) -> str:
    name = _text(label)
    return name if name and not name.startswith("external") else _text(ip)
