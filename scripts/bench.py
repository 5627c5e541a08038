"""Benchmark attnlab: ``python scripts/bench.py [--quick] [--out FILE.json] [--sections a,b,...] [--device cuda]``.

Thin on purpose: the sections live in :mod:`attnlab.bench` (one module each), the command line in
:mod:`attnlab.bench.cli`.
"""

from attnlab.bench.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
