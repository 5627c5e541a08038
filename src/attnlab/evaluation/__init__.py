"""Evaluation code shared by training, ``eval.py`` and ``scripts/``.

``coco_eval``: COCO box mAP/mAR (the twelve COCOeval figures) as a torchmetrics ``Metric``
(``CocoDetectionMetric``) and as a function (``coco_evaluate``); ``scripts/coco_eval.py`` scores
a COCO results file through the same code.

Import the submodule you need (``from attnlab.evaluation.coco_eval import CocoDetectionMetric``);
this package file stays import-free so that nothing heavy loads until it is used.
"""
