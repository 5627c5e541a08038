"""Command-line wiring: turning a composed config into the objects a run needs (kept light: no torch)."""
