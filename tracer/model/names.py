"""Names Calico derives from object identities."""

from __future__ import annotations

import hashlib


def workload_interface_name(namespace: str, pod: str, prefix: str = "cali") -> str:
    """Host-side veth name: prefix + first 11 hex chars of SHA-1("<ns>.<pod>").

    libcalico-go ``VethNameForWorkload`` (k8s/conversion/workload_endpoint_default.go); with the
    default prefix the result is 15 characters, the kernel's IFNAMSIZ limit.
    """
    digest = hashlib.sha1(f"{namespace}.{pod}".encode()).hexdigest()
    return prefix + digest[:11]
