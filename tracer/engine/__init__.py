"""The compiled dataplane engine: a node's ruleset as flat arrays, walked by numba kernels.

``compile_node(node) -> CompiledNode``; ``CompiledNode.run_table(table, hook, batch, ...)``
decides a whole ``PACKET_DTYPE`` batch, and ``CompiledNode.run_view`` answers the reference
interpreter's contract for one packet, so the pipeline can run on either engine
(:class:`~tracer.engine.runner.CompiledTables`). See docs/engine.md.
"""

from tracer.engine.node import CompiledNode, TableOutcomes, compile_node

__all__ = ["CompiledNode", "TableOutcomes", "compile_node"]
