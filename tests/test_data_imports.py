"""What importing the data and evaluation rooms loads. Their place in the import graph (no circle, no import
of the rooms that use them) is checked for the whole package in ``test_house.py``."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.import_graph import SRC


def test_coco_scoring_does_not_load_torch() -> None:
    """The COCOeval function API (used by the bootstrap and scripts) stays torch-free."""
    code = "import sys, attnlab.evaluation.coco_scoring; assert 'torch' not in sys.modules, 'torch loaded'"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120, env={**os.environ, "PYTHONPATH": str(SRC)})
