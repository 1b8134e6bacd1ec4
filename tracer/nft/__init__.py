"""felix's nftables mode (FelixConfiguration ``nftablesMode: Enabled``).

felix renders the same generictables rules in both modes; in nftables mode its backend
(felix/nftables/) writes them into one ``table ip calico`` instead of four iptables tables:

- :mod:`tracer.nft.model`: the nftables form (base chains with hooks and priorities, regular
  chains, sets, verdict maps), built from the shared rule IR (:mod:`tracer.dataplane.ir`);
- :mod:`tracer.nft.translate`: the felix-rendered ruleset translated as felix's nftables backend
  does it (table layers, chain names, vmap dispatch, rule hashes);
- :mod:`tracer.nft.text`: rule text as felix writes it, and the ruleset as ``nft -f`` input;
- :mod:`tracer.nft.walk`: packets through it with nftables' semantics (a pipeline table runner);
- :mod:`tracer.nft.mode`, :mod:`tracer.nft.plug`: ``--dataplane`` and plugging the runner in;
- :mod:`tracer.nft.ktrace`, :mod:`tracer.nft.judge`, :mod:`tracer.nft.sandbox`: the kernel's
  side (``nft -f`` in namespaces of our own, ``nft monitor`` traces, the comparison).

See docs/nftables.md.
"""
