"""kube-proxy in iptables mode, rendered next to felix so pod-to-Service traffic can be traced.

Public API:

- ``render_kube_proxy(cluster, node) -> dict[Table, dict[str, Chain]]`` (``render``): the
  chains kube-proxy's ``syncProxyRules`` writes and the jump rules it puts in the kernel chains;
- ``merge_kube_proxy(felix, kube, ...)`` / ``with_kube_proxy(cluster, node, ruleset, version=)``
  (``merge``): both programs' rules in one :class:`~tracer.dataplane.ir.Ruleset`, in the order
  a node shows once both have started;
- ``resolve_service(cluster, text) -> ServiceTarget`` (``probe``): ``svc/NS/NAME[:PORT]``.

One trace per backend (``trace_forks``) lives with the other runs in ``tracer.trace.forks``.
"""
