"""A node's dataplane as data and the reference walk through it: the rule IR, iptables-save and
ipset formats, the interpreter, hooks, routing, interfaces, tunnels, stages and the pipeline."""
