"""``scripts/bench.py``: how fast attnlab trains, attends, decodes, evaluates, starts and learns.

Not installed: the sections time the real code (``attnlab.cli.build``, the tasks, ``train.py``). One
module per section with ``TITLE`` and ``run(settings) -> section`` (protocol: ``README.md``). No torch
on import."""

from __future__ import annotations

#: Section keys in the order they run and are reported.
SECTIONS: tuple[str, ...] = (
    "overhead",
    "attention",
    "throughput",
    "decoding",
    "evaluation",
    "startup",
    "sweep",
    "quality",
    "data",
)
