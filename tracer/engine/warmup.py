"""numba's one-time cost, made visible: whether the kernels are already in numba's on-disk
cache, and a warm-up that compiles (or loads) them before the first real packet."""

from __future__ import annotations

import os
import time
from ipaddress import IPv4Address

import numpy as np

from tracer.dataplane.batch import PACKET_DTYPE
from tracer.dataplane.interfaces import InterfaceTable
from tracer.dataplane.ir import Chain, Rule, Ruleset, Table, Verdict
from tracer.dataplane.node import NodeDataplane
from tracer.dataplane.routing import RoutingTable
from tracer.engine.kernels import walk_batch


def kernels_cached() -> bool:
    """Whether numba has this source's kernels in its cache (compiled by an earlier run)."""
    if walk_batch.signatures:
        return True
    try:
        return os.path.exists(walk_batch._cache._cache_file._index_path)
    except AttributeError:                 # another numba layout: assume the worst
        return False


def warm_up() -> float:
    """Run one packet through a one-rule table so numba compiles or loads every kernel;
    returns the seconds it took."""
    from tracer.engine.node import compile_node

    start = time.perf_counter()
    ruleset = Ruleset({Table.FILTER: {"FORWARD": Chain("FORWARD", (Rule((), Verdict("ACCEPT")),),
                                                       "ACCEPT")}})
    node = NodeDataplane("warm-up", ruleset, RoutingTable("warm-up", (), frozenset()),
                         InterfaceTable(()), IPv4Address("127.0.0.1"))
    for trace in (False, True):
        compile_node(node).run_table(Table.FILTER, "FORWARD", np.zeros(1, PACKET_DTYPE),
                                     trace=trace)
    return time.perf_counter() - start
