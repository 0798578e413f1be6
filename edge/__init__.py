"""Agent runtime: config, lifecycle, local store and command line."""
