"""The kernel as judge: realise a Calico node topology in network namespaces, send real probe
packets through it, and capture the kernel's own netfilter trace for comparison with the
simulator. Everything privileged happens inside namespaces this package creates and removes."""
