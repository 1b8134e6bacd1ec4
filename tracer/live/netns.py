"""Realise live pods: one network namespace per pod whose ``eth0`` is a TUN device.

The namespace is laid out as Calico's CNI plugin lays out a pod's: the pod IP as ``/32`` on
``eth0``, a link-scope route to ``169.254.1.1`` and the default route via it, the pool's MTU.
The TUN is opened by a thread that entered the namespace, so the device lives there while
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
from tracer.live.topology import POD_GATEWAY, LivePod

RT_SCOPE_LINK = 253
POD_SYSCTLS = {"net/ipv6/conf/all/disable_ipv6": 1,      # the model is IPv4: keep v6 quiet
               "net/ipv6/conf/default/disable_ipv6": 1}


# TUNSETOFFLOAD and its flags (linux/if_tun.h): the pod's stack may hand us TCP segments of
# up to 64 KiB (TSO) and leave checksums to us (CHECKSUM_PARTIAL), each read and write led by
# a virtio_net_hdr saying so (IFF_VNET_HDR).
TUNSETOFFLOAD = 0x400454D0
TUN_F_CSUM, TUN_F_TSO4, TUN_F_TSO6 = 0x01, 0x02, 0x04


@dataclass
class PodPort:
    pod: LivePod
    netns: str
    tun: pytun.TunTapDevice
    offload: bool = False          # reads and writes carry a virtio_net_hdr

    @property
    def fd(self) -> int:
        return self.tun.fileno()


class LiveNamespaces(cleanup.OwnedNamespaces):
    """Context manager: a namespace and TUN per pod on enter, all removed on exit."""

    def __init__(self, pods: tuple[LivePod, ...], *, offload: bool = False) -> None:
        super().__init__()
        self.pods = pods
        self.offload = offload
        self.ports: dict[str, PodPort] = {}

    def _build(self) -> None:
        for pod in self.pods:
            self.ports[pod.key] = self._realise(pod)

    def _release(self) -> None:
        for port in self.ports.values():
            try:
                port.tun.close()
            except OSError:
                pass
        self.ports.clear()

    def _realise(self, pod: LivePod) -> PodPort:
        name = self.new_namespace()
        tun = nsexec.call_in_netns(name, _open_tun, self.offload)
        os.set_blocking(tun.fileno(), False)
        nsexec.write_sysctls(name, POD_SYSCTLS)
        with IPRoute(netns=name, flags=0) as ipr:
            eth0 = ipr.link_lookup(ifname="eth0")[0]
            ipr.link("set", index=eth0, mtu=pod.mtu, state="up")
            ipr.addr("add", index=eth0, address=str(pod.ip), prefixlen=32)
            ipr.route("add", dst=f"{POD_GATEWAY}/32", oif=eth0, scope=RT_SCOPE_LINK)
            ipr.route("add", dst="0.0.0.0/0", gateway=str(POD_GATEWAY), oif=eth0)
        return PodPort(pod, name, tun, self.offload)


def _open_tun(offload: bool) -> pytun.TunTapDevice:
    # IFF_NO_PI: each read is one IP datagram (after the virtio_net_hdr with offloads).
    flags = pytun.IFF_TUN | pytun.IFF_NO_PI | (pytun.IFF_VNET_HDR if offload else 0)
    tun = pytun.TunTapDevice(name="eth0", flags=flags)
    if offload:
        fcntl.ioctl(tun.fileno(), TUNSETOFFLOAD, TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6)
    return tun

