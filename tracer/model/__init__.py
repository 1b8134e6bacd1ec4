"""The cluster as its manifests describe it: loading, validation, conversion to Calico's
backend form, IPAM, and the typed records the other layers read."""
