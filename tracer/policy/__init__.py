"""Calico policy semantics: evaluation of tiers, policies and profiles, the reachability matrix,
and (``felix/``) the rules felix renders for each node."""
