#!/usr/bin/env python
"""Compare runs: ``python scripts/compare_runs.py logs/train/multiruns/<sweep> [more runs...] [--out DIR]``.

Thin on purpose: everything (options, ``--help``) lives in :mod:`attnlab.cli.compare`.
"""

import sys

from attnlab.cli.compare import main

if __name__ == "__main__":
    sys.exit(main())
