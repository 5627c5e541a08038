"""What a run leaves in its folder besides checkpoints: its test outputs (and, later, its records)."""
