"""calico-trace: Calico's iptables dataplane rebuilt in userspace, with packet traces."""

__version__ = "0.1.0"

# The Calico release whose felix behaviour is rendered by default (names, marks, comments).
DEFAULT_CALICO_VERSION = "3.32"
