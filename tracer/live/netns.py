"""Realise live ends: one network namespace per pod, per node's own stack and for the
external host, each with an ``eth0`` that is a TUN device.

A pod's namespace is laid out as Calico's CNI plugin lays out a pod's: the pod IP as ``/32``
on ``eth0``, a link-scope route to ``169.254.1.1`` and the default route via it, the pool's
MTU. A node's (and the external host's) holds its underlay address on ``eth0`` with the
default route out of it and the host MTU: what host-network programs see. The TUN is opened by a thread that entered the namespace, so the device lives there while
its file descriptor stays with us; whatever the pod sends out of ``eth0`` we read.

Namespaces are named and guarded by :mod:`tracer.kernel.cleanup` (``ctk-<pid>-<n>``,
announced to a watchdog before creation), so Ctrl-C, SIGTERM, a crash or SIGKILL of the
owner all end with them removed. Nothing here touches the host's namespace.
"""

from __future__ import annotations

import fcntl
import os
from dataclasses import dataclass

import pytun
from pyroute2 import IPRoute

from tracer.kernel import cleanup, nsexec
from tracer.live.topology import POD_GATEWAY, LiveEnd

RT_SCOPE_LINK = 253
SYSCTLS = {"net/ipv6/conf/all/disable_ipv6": 1,          # the model is IPv4: keep v6 quiet
           "net/ipv6/conf/default/disable_ipv6": 1}


# TUNSETOFFLOAD and its flags (linux/if_tun.h): the pod's stack may hand us TCP segments of
# up to 64 KiB (TSO) and leave checksums to us (CHECKSUM_PARTIAL), each read and write led by
# a virtio_net_hdr saying so (IFF_VNET_HDR).
TUNSETOFFLOAD = 0x400454D0
TUN_F_CSUM, TUN_F_TSO4, TUN_F_TSO6 = 0x01, 0x02, 0x04


@dataclass
class Port:
    """A live end's TUN, as the loop holds it."""

    end: LiveEnd
    netns: str
    tun: pytun.TunTapDevice
    offload: bool = False          # reads and writes carry a virtio_net_hdr

    @property
    def fd(self) -> int:
        return self.tun.fileno()


class LiveNamespaces(cleanup.OwnedNamespaces):
    """Context manager: a namespace and TUN per live end on enter, all removed on exit."""

    def __init__(self, ends: tuple[LiveEnd, ...], *, offload: bool = False) -> None:
        super().__init__()
        self.ends = ends
        self.offload = offload
        self.ports: dict[str, Port] = {}

    def _build(self) -> None:
        for end in self.ends:
            self.ports[end.key] = self._realise(end)

    def _release(self) -> None:
        for port in self.ports.values():
            try:
                port.tun.close()
            except OSError:
                pass
        self.ports.clear()

    def _realise(self, end: LiveEnd) -> Port:
        name = self.new_namespace()
        tun = nsexec.call_in_netns(name, _open_tun, self.offload)
        os.set_blocking(tun.fileno(), False)
        nsexec.write_sysctls(name, SYSCTLS)
        with IPRoute(netns=name, flags=0) as ipr:
            eth0 = ipr.link_lookup(ifname="eth0")[0]
            ipr.link("set", index=eth0, mtu=end.mtu, state="up")
            ipr.link("set", index=ipr.link_lookup(ifname="lo")[0], state="up")
            ipr.addr("add", index=eth0, address=str(end.ip), prefixlen=32)
            if end.is_pod:
                ipr.route("add", dst=f"{POD_GATEWAY}/32", oif=eth0, scope=RT_SCOPE_LINK)
                ipr.route("add", dst="0.0.0.0/0", gateway=str(POD_GATEWAY), oif=eth0)
            else:                      # a TUN has no neighbours: everything goes out of it
                ipr.route("add", dst="0.0.0.0/0", oif=eth0, scope=RT_SCOPE_LINK)
        return Port(end, name, tun, self.offload)


def _open_tun(offload: bool) -> pytun.TunTapDevice:
    # IFF_NO_PI: each read is one IP datagram (after the virtio_net_hdr with offloads).
    flags = pytun.IFF_TUN | pytun.IFF_NO_PI | (pytun.IFF_VNET_HDR if offload else 0)
    tun = pytun.TunTapDevice(name="eth0", flags=flags)
    if offload:
        fcntl.ioctl(tun.fileno(), TUNSETOFFLOAD, TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6)
    return tun

