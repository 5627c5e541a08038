#!/usr/bin/env python
"""Convert a checkpoint written by an older attnlab so that it loads safely (``weights_only=True``): ``python scripts/convert_checkpoint.py --help``.

Thin on purpose: everything lives in :mod:`attnlab.cli.convert_checkpoint`.
"""

import sys

from attnlab.cli.convert_checkpoint import main

if __name__ == "__main__":
    sys.exit(main())
