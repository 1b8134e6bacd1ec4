"""Benchmark records as a text table and as the Markdown table RESULTS.md keeps."""

from __future__ import annotations

from tracer.bench.suite import Record


def _number(value: float | None, unit: str = "") -> str:
    if value is None:
        return "—"
    if unit == "pkt/s" or abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.3g}"


def rows(records: list[Record]) -> list[tuple[str, ...]]:
    return [(r.name, r.engine, f"{_number(r.value, r.unit)} {r.unit}",
             r.reference or "—", _number(r.reference_value, r.unit),
             "—" if r.ratio is None else f"{r.ratio:,.1f}x", _number(r.rules))
            for r in records]


HEADER = ("measurement", "engine", "value", "compared with", "its value", "ratio", "rules")


def render_table(records: list[Record]) -> str:
    table = [HEADER, *rows(records)]
    widths = [max(len(row[i]) for row in table) for i in range(len(HEADER))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip()
                     for row in table)


def markdown_table(records: list[Record]) -> str:
    lines = ["| " + " | ".join(HEADER) + " |", "|" + " --- |" * len(HEADER)]
    lines += ["| " + " | ".join(row) + " |" for row in rows(records)]
    return "\n".join(lines)
