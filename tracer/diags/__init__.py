"""``calicoctl node diags`` bundles: read one (tar.gz or folder), and rebuild from bundles alone
the nodes a trace needs (workloads from routes, tunnels from addresses, rules from
``iptables-save -c``, sets from ``ipset list``)."""
