"""Evaluation code shared by training, ``eval.py`` and ``scripts/``.

``coco_scoring``: COCO box mAP/mAR (the twelve COCOeval figures) as a function (``coco_evaluate``),
torch-free; ``coco_eval``: the same as a torchmetrics ``Metric`` (``CocoDetectionMetric``), and
``scripts/coco_eval.py`` scoring a COCO results file through that metric. ``significance`` and
``coco_bootstrap``: paired bootstrap tests (BLEU, COCO mAP) for comparisons.

Import the submodule you need (``from attnlab.evaluation.coco_eval import CocoDetectionMetric``);
this package file stays import-free so that nothing heavy loads until it is used.
"""
