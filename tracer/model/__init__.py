"""The cluster as its manifests describe it: plain typed records, no behaviour beyond lookups."""
