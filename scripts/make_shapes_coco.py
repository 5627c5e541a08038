#!/usr/bin/env python
"""Write the generated shapes set in COCO layout (``data=coco``'s default): ``python scripts/make_shapes_coco.py -h``.

Thin on purpose: everything lives in :mod:`attnlab.cli.make_shapes_coco`.
"""

import sys

from attnlab.cli.make_shapes_coco import main

if __name__ == "__main__":
    sys.exit(main())
