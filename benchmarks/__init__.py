"""``scripts/bench.py``: how fast attnlab trains, attends, decodes, evaluates, starts and learns.

Not installed with the package: the sections time the real code (``attnlab.cli.build``, the task
LightningModules, ``train.py``) and add no training code of their own. One module per section, each
with ``TITLE`` and ``run(settings) -> section`` (see ``benchmarks/README.md`` for the protocol).
Importing this package is cheap (no torch).
"""

from __future__ import annotations

#: Section keys in the order they run and are reported.
SECTIONS: tuple[str, ...] = (
    "overhead", "attention", "throughput", "decoding", "evaluation", "startup", "sweep", "quality",
)
