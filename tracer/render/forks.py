"""A Service trace's forks, one per backend: text (a header per fork) or JSON (a list)."""

from __future__ import annotations

import json

from tracer.render.trace_json import trace_to_dict
from tracer.render.trace_text import render_text
from tracer.trace.forks import Fork


def render_forks(forks: list[Fork], output: str, verbosity: str) -> str:
    """Text: each fork's header then its trace. JSON: a list of ``{"fork", "endpoint",
    "pod", "trace"}`` objects."""
    if output == "json":
        items = [{"fork": None if f.index is None else f.index + 1,
                  "endpoint": f.backend.address if f.backend else None,
                  "pod": f.backend.pod if f.backend else None,
                  "trace": trace_to_dict(f.trace)} for f in forks]
        return json.dumps(items, indent=2) + "\n"
    return "\n".join(f"{f.header()}\n{render_text(f.trace, verbosity)}" for f in forks)
