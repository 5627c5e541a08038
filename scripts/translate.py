#!/usr/bin/env python
"""Translate sentences with a translation checkpoint: ``python scripts/translate.py ckpt_path=PATH "a sentence"``.

Thin on purpose: everything (options, ``--help``) lives in :mod:`attnlab.cli.translate`.
"""

import sys

from attnlab.cli.translate import main

if __name__ == "__main__":
    sys.exit(main())
