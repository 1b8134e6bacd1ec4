"""Deterministic IP allocation in the style of Calico IPAM (block affinity per node).

Calico IPAM (``libcalico-go/lib/ipam``) splits each IPPool into blocks of ``blockSize`` bits.
A node claims a block (an *affinity*) the first time it needs an address, takes addresses from
its own blocks lowest ordinal first (a fresh block hands out its network address first, which
is why tunnel addresses such as ``192.168.219.64`` are common), claims another block when its
blocks are full and borrows from other nodes' blocks only when no block is left unclaimed.

Real IPAM picks *which* unclaimed block a node claims pseudo-randomly; here blocks are claimed in
address order so the same manifests always give the same addresses. Addresses given in the
manifests (``status.podIP``, tunnel addresses) are reserved first, and the block holding such an
address becomes affine to the node that owns it, so allocated pods land next to explicit ones.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network

from tracer.model.cluster import IPPool
from tracer.errors import quote


class IPAMExhausted(Exception):
    """No free address left in any pool usable by the node."""


@dataclass
class _Block:
    cidr: IPv4Network
    pool: str
    node: str | None = None
    used: set[IPv4Address] = field(default_factory=set)

    def first_free(self) -> IPv4Address | None:
        base = int(self.cidr.network_address)
        for ordinal in range(self.cidr.num_addresses):
            candidate = IPv4Address(base + ordinal)
            if candidate not in self.used:
                return candidate
        return None


class BlockAllocator:
    """Hands out addresses per node from block-affine pools; the call order fixes the result.

    ``node_matches(pool, node)`` tells whether a pool's nodeSelector selects a node (the loader
    evaluates the selector; this module stays free of selector parsing).
    """

    def __init__(self, pools: Sequence[IPPool], node_matches: Callable[[IPPool, str], bool]):
        self._pools = sorted(pools, key=lambda p: p.name)
        self._node_matches = node_matches
        self._blocks: dict[str, dict[IPv4Network, _Block]] = {p.name: {} for p in self._pools}

    # -------------------------------------------------------------------- queries

    def pool_of(self, ip: IPv4Address) -> IPPool | None:
        for pool in self._pools:
            if ip in pool.cidr:
                return pool
        return None

    def affinities(self, node: str) -> list[IPv4Network]:
        """The blocks a node has claimed, in claim order per pool."""
        return [b.cidr for blocks in self._blocks.values() for b in blocks.values()
                if b.node == node]

    # -------------------------------------------------------------------- updates

    def reserve(self, ip: IPv4Address, node: str | None) -> None:
        """Mark an address from the manifests as used; its block becomes affine to ``node``."""
        pool = self.pool_of(ip)
        if pool is None:
            return
        block = self._block(pool, IPv4Network(f"{ip}/{pool.block_size}", strict=False))
        block.used.add(ip)
        if block.node is None and node is not None:
            block.node = node

    def assign(self, node: str, *, use: Callable[[IPPool], bool] = lambda pool: True,
               pool_names: Sequence[str] | None = None) -> IPv4Address:
        """Next address for ``node`` from the enabled pools that select it and pass ``use``."""
        pools = [p for p in self._pools
                 if not p.disabled and use(p) and self._node_matches(p, node)
                 and (pool_names is None or p.name in pool_names)]
        if not pools:
            raise IPAMExhausted(f"no enabled IPPool selects node {quote(node)}")
        for pool in pools:                       # 1. free address in a block the node owns
            for block in self._owned(pool, node):
                ip = block.first_free()
                if ip is not None:
                    block.used.add(ip)
                    return ip
        for pool in pools:                       # 2. claim the next unclaimed block
            block = self._claim(pool, node)
            if block is not None:
                ip = block.first_free()
                if ip is not None:
                    block.used.add(ip)
                    return ip
        for pool in pools:                       # 3. borrow from another node's block
            for block in sorted(self._blocks[pool.name].values(), key=lambda b: b.cidr):
                ip = block.first_free()
                if ip is not None:
                    block.used.add(ip)
                    return ip
        raise IPAMExhausted(f"IPPool(s) {', '.join(p.name for p in pools)} have no free address "
                            f"for node {quote(node)}")

    # -------------------------------------------------------------------- helpers

    def _block(self, pool: IPPool, cidr: IPv4Network) -> _Block:
        blocks = self._blocks[pool.name]
        if cidr not in blocks:
            blocks[cidr] = _Block(cidr=cidr, pool=pool.name)
        return blocks[cidr]

    def _owned(self, pool: IPPool, node: str) -> list[_Block]:
        return sorted((b for b in self._blocks[pool.name].values() if b.node == node),
                      key=lambda b: b.cidr)

    def _claim(self, pool: IPPool, node: str) -> _Block | None:
        if pool.block_size < pool.cidr.prefixlen:
            return None
        for cidr in pool.cidr.subnets(new_prefix=pool.block_size):
            block = self._block(pool, cidr)
            if block.node is None and not block.used:
                block.node = node
                return block
        return None
