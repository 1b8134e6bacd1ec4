"""The compiled engine behind the pipeline's table seam (``Pipeline(tables=...)``).

:class:`CompiledTables` compiles each node the first time a packet reaches it and answers
every table the reference interpreter would, with the same events; tables the compiler does
not express run on the reference, and :meth:`CompiledTables.notes` says which. :func:`compiled`
also gives the run the numba conntrack twin.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from tracer.conntrack.arrays import ArrayConntrackTable
from tracer.dataplane.interpreter import PacketView, TableResult
from tracer.dataplane.ir import Table
from tracer.dataplane.node import NodeDataplane, NodeEnvironment
from tracer.engine.node import CompiledNode, compile_node

ENGINES = ("compiled", "reference")
# The compiled engine's conntrack: the numba twin (same methods, same verdicts, tested).
CONNTRACK_TABLE = ArrayConntrackTable


class CompiledTables:
    """A :class:`~tracer.dataplane.stages.TableRunner` backed by compiled nodes.

    ``on_compile(node_name)`` is called before a node compiles (the CLI says so)."""

    def __init__(self, on_compile: Callable[[str], None] | None = None):
        self._nodes: dict[str, CompiledNode] = {}
        self._lock = threading.Lock()
        self._on_compile = on_compile

    def node(self, node: NodeDataplane) -> CompiledNode:
        compiled = self._nodes.get(node.name)
        if compiled is not None and compiled.node is node:
            return compiled
        with self._lock:
            compiled = self._nodes.get(node.name)
            if compiled is None or compiled.node is not node:
                if self._on_compile is not None:
                    self._on_compile(node.name)
                compiled = self._nodes[node.name] = compile_node(node)
        return compiled

    def __call__(self, node: NodeDataplane, table: Table, hook: str, view: PacketView,
                 env: NodeEnvironment) -> TableResult:
        return self.node(node).run_view(table, hook, view, env)

    def notes(self) -> list[str]:
        """One line per table that runs on the reference interpreter, and why."""
        return [f"node {name}: table {table.value} runs on the reference interpreter ({why})"
                for name, compiled in sorted(self._nodes.items())
                for table, why in compiled.fallback.items()]


def compiled(dataplane):
    """``dataplane`` (a tracer.trace Dataplane or anything with ``with_tables``) on the
    compiled engine: compiled tables and the numba conntrack. Returns it and the runner."""
    runner = CompiledTables()
    return dataplane.with_tables(runner, CONNTRACK_TABLE), runner
