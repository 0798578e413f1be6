"""Shipped data: example gateway configs, standard-limit profiles, broker config (no code)."""
