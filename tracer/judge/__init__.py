"""Judging the simulator against the real kernel: build a cluster's nodes in network
namespaces, send real probes, and compare the kernel's netfilter trace with ours."""
