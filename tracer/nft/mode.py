"""Which dataplane felix programs: ``--dataplane`` when given, else the FelixConfiguration."""

from __future__ import annotations

from typing import Literal

from tracer.model.cluster import Cluster

Dataplane = Literal["iptables", "nftables"]
DATAPLANES = ("iptables", "nftables")


def dataplane_of(cluster: Cluster, flag: str | None) -> Dataplane:
    """``nftablesMode: Enabled`` means nftables. ``Auto`` (felix's default) follows kube-proxy's
    mode, and calico-trace models kube-proxy in iptables mode, so Auto means iptables."""
    if flag is not None:
        return flag            # type: ignore[return-value]
    return "nftables" if cluster.felix.nftables_mode == "Enabled" else "iptables"
