#!/usr/bin/env python
"""Convert an older attnlab checkpoint to load with ``weights_only=True``: ``python scripts/convert_checkpoint.py -h``.

Thin on purpose: everything lives in :mod:`attnlab.cli.convert_checkpoint`.
"""

import sys

from attnlab.cli.convert_checkpoint import main

if __name__ == "__main__":
    sys.exit(main())
