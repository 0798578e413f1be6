"""Store-and-forward delivery to the supervision cloud."""
