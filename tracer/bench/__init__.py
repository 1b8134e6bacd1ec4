"""`calico-trace bench`: the compiled engine measured against the reference (see docs/engine.md)."""
