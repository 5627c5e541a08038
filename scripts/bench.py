"""Benchmark attnlab: ``python scripts/bench.py [--quick] [--sections a,b] [--device cuda]`` (see benchmarks/)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/ is not installed: it sits beside src/

from benchmarks.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
