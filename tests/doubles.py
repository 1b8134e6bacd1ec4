"""Test doubles for the interpreter's environment: every answer settable by the test."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from tracer.dataplane.interpreter import PacketView
from tracer.dataplane.ipsets import IpSetIndex
from tracer.dataplane.ir import RpfilterMatch, Rule, SetMatch, StatisticMatch
from tracer.dataplane.node import address_type, set_contains


def _always(*_args) -> bool:
    return True


@dataclass
class FakeEnvironment:
    """ipsets from an :class:`IpSetIndex`, a set of local addresses, reverse-path checks and
    statistic choices from callables (default: the reverse path is fine and every statistic
    match fires, pinning kube-proxy to its first endpoint)."""

    ipsets: IpSetIndex = field(default_factory=IpSetIndex)
    local_addresses: frozenset[int] = frozenset()
    rpf: Callable[[PacketView, RpfilterMatch], bool] = _always
    choose: Callable[[StatisticMatch, PacketView], bool] = _always

    def ipset_contains(self, match: SetMatch, packet: PacketView) -> bool:
        return set_contains(self.ipsets, match, packet)

    def addr_type(self, addr: int, iface: str | None) -> str:
        return address_type(addr, local=addr in self.local_addresses)

    def rpf_ok(self, packet: PacketView, match: RpfilterMatch) -> bool:
        return self.rpf(packet, match)

    def statistic(self, match: StatisticMatch, packet: PacketView, chain: str,
                  rule: Rule) -> bool:
        return self.choose(match, packet)
