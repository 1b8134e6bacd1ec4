"""Which Calico release's felix behaviour to render."""

from __future__ import annotations

from tracer import DEFAULT_CALICO_VERSION
from tracer.errors import InputError
from tracer.model.cluster import Cluster

SUPPORTED_VERSIONS = ("3.29", "3.30", "3.31", "3.32")


def resolve_version(requested: str | None, cluster: Cluster | None = None) -> str:
    """--calico-version wins, then FelixConfiguration's, then the newest release we model.
    Patch releases share their minor's behaviour ("3.31.7" renders as 3.31)."""
    version = requested or (cluster.felix.calico_version if cluster else None) \
        or DEFAULT_CALICO_VERSION
    minor = ".".join(version.lstrip("v").split(".")[:2])
    if minor not in SUPPORTED_VERSIONS:
        raise InputError(f"Calico version {version!r} is not modelled; choose one of "
                         f"{', '.join(SUPPORTED_VERSIONS)}", obj="--calico-version")
    return minor
