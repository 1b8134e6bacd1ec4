"""Per-node connection tracking with Linux nf_conntrack semantics.

``reference.ConntrackTable`` is the truth (pure Python); ``arrays.ArrayConntrackTable`` is its
numba twin for batches. ``tuples`` holds the records, ``tcp`` the TCP state machine,
``timeouts`` the kernel defaults, ``format`` the ``conntrack -L`` text.
"""
