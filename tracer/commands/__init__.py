"""One module per ``calico-trace`` subcommand; ``tracer.cli`` registers them explicitly."""
