"""Render a :class:`ReachabilityMatrix` as a text grid, JSON or CSV."""

from __future__ import annotations

import csv
import io
import json

from tracer.policy.evaluate import protocol_name
from tracer.policy.matrix import ReachabilityMatrix

GLYPHS = {True: ("\u2713", "\u2717"), False: ("Y", ".")}   # unicode?: (allowed, denied)


def render_json(result: ReachabilityMatrix) -> str:
    return json.dumps(list(result.entries()), indent=2)


def render_csv(result: ReachabilityMatrix) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["from", "to", "protocol", "port", "allowed"])
    for entry in result.entries():
        writer.writerow([entry["from"], entry["to"], entry["protocol"],
                         "" if entry["port"] is None else entry["port"],
                         "true" if entry["allowed"] else "false"])
    return out.getvalue()


def render_text(result: ReachabilityMatrix, ascii_only: bool = False) -> str:
    """A grid: one row per source pod, one numbered column per destination pod."""
    allow, deny = GLYPHS[not ascii_only]
    count = len(result.pods)
    probe = protocol_name(result.probe.protocol)
    if result.probe.port is not None:
        probe += f" port {result.probe.port}"
    lines = [f"Reachability for {probe} (row = from, column = to; "
             f"{allow} allowed, {deny} denied)"]
    if count == 0:
        lines.append("(no pods)")
        return "\n".join(lines)
    number_width = len(str(count))
    name_width = max(len(key) for key in result.pods)
    margin = " " * (number_width + 1 + name_width + 2)
    labels = [str(i + 1).rjust(number_width) for i in range(count)]
    for digit in range(number_width):   # column numbers written vertically
        lines.append(margin + " ".join(label[digit] for label in labels))
    for i, key in enumerate(result.pods):
        cells = " ".join(allow if ok else deny for ok in result.allowed[i])
        lines.append(f"{str(i + 1).rjust(number_width)} {key.ljust(name_width)}  {cells}")
    allowed = int(result.allowed.sum())
    lines.append(f"{allowed} of {count * count} ordered pairs allowed "
                 f"({count} pods in {result.classes} policy classes)")
    return "\n".join(lines)
