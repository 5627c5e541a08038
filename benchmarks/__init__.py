"""``scripts/bench.py``: one module per section with ``TITLE`` and ``run(settings) -> section`` (``README.md``).
Not installed; no torch on import."""

from __future__ import annotations

#: Section keys in the order they run and are reported.
SECTIONS = ("overhead", "attention", "throughput", "decoding", "evaluation", "startup", "sweep", "quality", "data")
