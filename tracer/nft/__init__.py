"""felix's nftables mode (FelixConfiguration ``nftablesMode: Enabled``).

felix renders the same generictables rules in both modes; in nftables mode its backend
(felix/nftables/) writes them into one ``table ip calico`` instead of four iptables tables:

- :mod:`tracer.nft.model`: the nftables form (base chains with hooks and priorities, regular
  chains, sets, verdict maps), built from the shared rule IR (:mod:`tracer.dataplane.ir`);
- :mod:`tracer.nft.translate`: the felix-rendered ruleset translated as felix's nftables backend
  does it (table layers, chain names, vmap dispatch, rule hashes);
- :mod:`tracer.nft.text`: the ruleset as ``nft -f`` input;
- :mod:`tracer.nft.walk`: packets through it with nftables' semantics.
"""
