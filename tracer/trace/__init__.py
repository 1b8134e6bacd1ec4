"""The composition root: assemble a dataplane from a cluster, run packets and sessions."""
