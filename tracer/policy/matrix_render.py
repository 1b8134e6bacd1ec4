"""Render a :class:`ReachabilityMatrix` as a text grid, JSON, JSON Lines, CSV, Parquet or a
summary by namespace pair.

The pair formats are written one source row at a time, each row joined in C from per-column
pieces chosen by the row's allowed bits, so memory stays one row of text however many pairs
there are (10,000 pods are 10^8 pairs).
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Iterator
from typing import TextIO

import numpy as np

from tracer.policy.evaluate import protocol_name
from tracer.policy.matrix import ReachabilityMatrix

GLYPHS = {True: ("\u2713", "\u2717"), False: ("Y", ".")}   # unicode?: (allowed, denied)
PARQUET_ROWS_PER_GROUP = 1_000_000


def _rows(result: ReachabilityMatrix, head: Callable[[str], str],
          tail: Callable[[str, bool], str], separator: str) -> Iterator[str]:
    """Per source row: ``head(src) + tail(dst, allowed)`` for every column, joined."""
    pieces = {flag: np.array([tail(dst, flag) for dst in result.destinations], dtype=object)
              for flag in (True, False)}
    for i, src in enumerate(result.pods):
        start = head(src)
        yield start + (separator + start).join(
            np.where(result.allowed[i], pieces[True], pieces[False]).tolist())


def _common(result: ReachabilityMatrix) -> tuple[str, str]:
    return (json.dumps(protocol_name(result.probe.protocol)), json.dumps(result.probe.port))


def json_chunks(result: ReachabilityMatrix) -> Iterator[str]:
    """The text of ``json.dumps(list(result.entries()), indent=2)``, streamed."""
    if not result.pods or not result.destinations:
        yield "[]"
        return
    proto, port = _common(result)
    rows = _rows(result, lambda src: f'  {{\n    "from": {json.dumps(src)},\n    "to": ',
                 lambda dst, ok: (f'{json.dumps(dst)},\n    "protocol": {proto},\n    "port": '
                                  f'{port},\n    "allowed": {json.dumps(ok)}\n  }}'), ",\n")
    yield "[\n" + next(rows)
    for row in rows:
        yield ",\n" + row
    yield "\n]"


def jsonl_chunks(result: ReachabilityMatrix) -> Iterator[str]:
    """One JSON object per line, as ``json.dumps(entry)`` writes it."""
    proto, port = _common(result)
    for row in _rows(result, lambda src: f'{{"from": {json.dumps(src)}, "to": ',
                     lambda dst, ok: (f'{json.dumps(dst)}, "protocol": {proto}, "port": {port}, '
                                      f'"allowed": {json.dumps(ok)}}}'), "\n"):
        yield row + "\n"


def _csv_field(value: str) -> str:
    out = io.StringIO()
    csv.writer(out, lineterminator="").writerow([value])
    return out.getvalue()


def csv_chunks(result: ReachabilityMatrix) -> Iterator[str]:
    proto = protocol_name(result.probe.protocol)
    port = "" if result.probe.port is None else str(result.probe.port)
    yield "from,to,protocol,port,allowed\n"
    if not result.destinations:
        return
    for row in _rows(result, lambda src: _csv_field(src) + ",",
                     lambda dst, ok: f"{_csv_field(dst)},{proto},{port},{str(ok).lower()}", "\n"):
        yield row + "\n"


def render_json(result: ReachabilityMatrix) -> str:
    return "".join(json_chunks(result))


def render_csv(result: ReachabilityMatrix) -> str:
    return "".join(csv_chunks(result))


def write_chunks(chunks: Iterator[str], out: TextIO) -> None:
    for chunk in chunks:
        out.write(chunk)


def write_parquet(result: ReachabilityMatrix, path: str) -> None:
    """Columns from, to (dictionary-encoded pod names), protocol, port, allowed; row groups of
    about :data:`PARQUET_ROWS_PER_GROUP` pairs, written as they are built."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    sources = pa.array(result.pods, pa.string())
    targets = pa.array(result.destinations, pa.string())
    schema = pa.schema([("from", pa.dictionary(pa.int32(), pa.string())),
                        ("to", pa.dictionary(pa.int32(), pa.string())),
                        ("protocol", pa.string()), ("port", pa.int32()), ("allowed", pa.bool_())])
    columns = len(result.destinations)
    step = max(1, PARQUET_ROWS_PER_GROUP // max(columns, 1))
    protocol = protocol_name(result.probe.protocol)
    with pq.ParquetWriter(path, schema) as writer:
        for first in range(0, len(result.pods), step):
            block = result.allowed[first:first + step]
            count = block.size
            writer.write_table(pa.table({
                "from": pa.DictionaryArray.from_arrays(
                    np.repeat(np.arange(first, first + len(block), dtype=np.int32), columns),
                    sources),
                "to": pa.DictionaryArray.from_arrays(
                    np.tile(np.arange(columns, dtype=np.int32), len(block)), targets),
                "protocol": pa.array([protocol] * count, pa.string()),
                "port": pa.array(np.full(count, result.probe.port or 0, dtype=np.int32),
                                 mask=np.full(count, result.probe.port is None)),
                "allowed": pa.array(block.reshape(-1)),
            }, schema=schema))


def _namespace_runs(keys: tuple[str, ...]) -> tuple[list[str], np.ndarray]:
    """Namespaces of sorted ``ns/pod`` keys and where each one's run starts."""
    names, starts = [], []
    for position, key in enumerate(keys):
        namespace = key.split("/", 1)[0]
        if not names or names[-1] != namespace:
            names.append(namespace)
            starts.append(position)
    return names, np.array(starts, dtype=np.intp)


def namespace_summary(result: ReachabilityMatrix) -> list[tuple[str, str, int, int]]:
    """(from namespace, to namespace, allowed pairs, pairs) for every namespace pair."""
    row_names, row_starts = _namespace_runs(result.pods)
    col_names, col_starts = _namespace_runs(result.destinations)
    if not row_names or not col_names:
        return []
    row_ends = list(row_starts[1:]) + [len(result.pods)]
    col_sizes = np.diff(np.append(col_starts, len(result.destinations)))
    summary = []
    for name, start, end in zip(row_names, row_starts, row_ends):
        per_column = result.allowed[start:end].sum(axis=0, dtype=np.int64)
        allowed = np.add.reduceat(per_column, col_starts)
        for to_name, count, size in zip(col_names, allowed, col_sizes):
            summary.append((name, to_name, int(count), int((end - start) * size)))
    return summary


def render_summary(result: ReachabilityMatrix) -> str:
    rows = namespace_summary(result)
    probe = protocol_name(result.probe.protocol)
    if result.probe.port is not None:
        probe += f" port {result.probe.port}"
    lines = [f"Reachability for {probe} by namespace pair (allowed of all pod pairs)"]
    if not rows:
        return "\n".join(lines + ["(no pods)"])
    width = max(len(a) for a, *_ in rows)
    target = max(len(b) for _, b, *_ in rows)
    for src, dst, allowed, pairs in rows:
        word = "all" if allowed == pairs else "none" if allowed == 0 else "some"
        lines.append(f"{src.ljust(width)} -> {dst.ljust(target)}  {word:4}  "
                     f"{allowed}/{pairs}")
    total = int(result.allowed.sum())
    lines.append(f"{total} of {result.allowed.size} ordered pairs allowed "
                 f"({len(result.pods)} sources, {len(result.destinations)} destinations)")
    return "\n".join(lines)


def render_text(result: ReachabilityMatrix, ascii_only: bool = False) -> str:
    """A grid: one row per source pod, one numbered column per destination pod (the rows'
    numbers when the matrix is square, else listed under the grid)."""
    allow, deny = GLYPHS[not ascii_only]
    count, columns = len(result.pods), len(result.destinations)
    probe = protocol_name(result.probe.protocol)
    if result.probe.port is not None:
        probe += f" port {result.probe.port}"
    lines = [f"Reachability for {probe} (row = from, column = to; "
             f"{allow} allowed, {deny} denied)"]
    if count == 0 or columns == 0:
        lines.append("(no pods)" if result.square else "(no pods left after the filters)")
        return "\n".join(lines)
    number_width = len(str(max(count, columns)))
    name_width = max(len(key) for key in result.pods)
    margin = " " * (number_width + 1 + name_width + 2)
    labels = [str(j + 1).rjust(number_width) for j in range(columns)]
    for digit in range(number_width):   # column numbers written vertically
        lines.append(margin + " ".join(label[digit] for label in labels))
    for i, key in enumerate(result.pods):
        cells = " ".join(allow if ok else deny for ok in result.allowed[i])
        lines.append(f"{str(i + 1).rjust(number_width)} {key.ljust(name_width)}  {cells}")
    if not result.square:
        lines.append("columns: " + ", ".join(f"{j + 1} {key}"
                                             for j, key in enumerate(result.destinations)))
    allowed = int(result.allowed.sum())
    where = (f"{count} pods" if result.square
             else f"{count} sources, {columns} destinations")
    lines.append(f"{allowed} of {result.allowed.size} ordered pairs allowed "
                 f"({where} in {result.classes} policy classes)")
    return "\n".join(lines)
