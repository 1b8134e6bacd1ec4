"""Byte-exact tunnel encapsulation between Calico nodes: IPIP, VXLAN and WireGuard.

Public API (the pipeline imports these names from here)::

    TunnelEndpoint, DecapResult, Encapsulation     # tracer.encap.base
    IpipEncap, VxlanEncap, WireGuardEncap           # one per mode
    WireGuardSession                                # one node's Noise session with one peer
    encapsulation(mode) -> Encapsulation            # by name
    pod_mtu, check_mtu, MtuResult                   # tracer.encap.mtu
    write_pcap, read_pcap                           # tracer.encap.pcap
"""

from __future__ import annotations

from tracer.encap.base import DecapResult, Encapsulation, TunnelEndpoint
from tracer.encap.ipip import IpipEncap
from tracer.encap.mtu import MtuResult, check_mtu, pod_mtu
from tracer.encap.pcap import LINKTYPE_ETHERNET, LINKTYPE_RAW, read_pcap, write_pcap
from tracer.encap.vxlan import VxlanEncap, vtep_mac
from tracer.encap.wireguard import WireGuardEncap, WireGuardSession
from tracer.errors import InputError

__all__ = [
    "DecapResult", "Encapsulation", "TunnelEndpoint", "IpipEncap", "VxlanEncap",
    "WireGuardEncap", "WireGuardSession", "MtuResult", "check_mtu", "pod_mtu", "vtep_mac",
    "write_pcap", "read_pcap", "LINKTYPE_ETHERNET", "LINKTYPE_RAW", "encapsulation",
]


def encapsulation(mode: str) -> Encapsulation:
    """A fresh encapsulation for ``mode`` ("ipip", "vxlan" or "wireguard")."""
    makers = {"ipip": IpipEncap, "vxlan": VxlanEncap, "wireguard": WireGuardEncap}
    if mode not in makers:
        raise InputError(f"unknown encapsulation {mode!r} (expected ipip, vxlan or wireguard)")
    return makers[mode]()
