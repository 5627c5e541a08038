#!/usr/bin/env python
"""Score a COCO detection results file with the evaluator that scores attnlab's detection models.

    python scripts/coco_eval.py GT.json DETECTIONS.json [--backend pycocotools|faster_coco_eval] [--json]

Prints COCOeval's twelve bbox figures (AP, AP50, AP75, AP small/medium/large, AR@1/10/100,
AR small/medium/large); every image of GT.json counts, with or without detections.
The code is :func:`attnlab.evaluation.coco_eval.main`.
"""

from __future__ import annotations

import sys

from attnlab.evaluation.coco_eval import main

if __name__ == "__main__":
    sys.exit(main())
