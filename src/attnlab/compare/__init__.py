"""Compare finished runs (a sweep folder, run folders, W&B offline runs, or a W&B project)."""
