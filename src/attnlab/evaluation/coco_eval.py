"""COCO box evaluation: the official COCOeval figures, as a torchmetrics ``Metric`` and for result files.

One code path scores both a model and a results file::

    CocoDetectionMetric.update(preds, image_ids)   # per batch; states synced across DDP ranks ("cat")
    CocoDetectionMetric.set_ground_truth(gt)       # the split's COCO ground truth
    CocoDetectionMetric.compute()                  # -> coco_evaluate(gt, results, backend, img_ids)
                                                   #    -> COCOeval(bbox): evaluate/accumulate/summarize

``scripts/coco_eval.py GT.json DETECTIONS.json`` (:func:`main`) turns the results file into
``update`` calls on the same metric. On the cocoapi example (first 100 val2014 images and their
official fake detections) it reproduces the official figures to full precision, with either
backend (``pycocotools`` or ``faster_coco_eval``).

Why not ``torchmetrics.detection.MeanAveragePrecision``
------------------------------------------------------
The issue asked for it; on that same fixture it gives AP 0.5035 / AP50 0.6962 / AP75 0.5722
instead of the official 0.5046 / 0.6970 / 0.5730 (torchmetrics 1.9.0, either backend, fed
through its own ``coco_to_tm``). Measured, one cause at a time (each removal moves it towards
the official numbers, all three removed give them exactly):

1. **float32 thresholds.** Its defaults are ``torch.linspace(...).tolist()``: float32 values
   such as recall threshold ``0.07000000029802322`` instead of ``0.07``. COCOeval looks the
   thresholds up with ``np.searchsorted(recall, recThrs, side="left")``; whenever a recall
   reaches exactly k/100 (common: 1/2, 3/4, 7/100 of a class's GTs ...) the float32 threshold is
   just above it and the precision of the *next* operating point is taken. IoU thresholds
   (``0.550000011920929``) likewise turn exact-threshold matches into misses. Passing float64
   ``np.linspace`` lists fixes AP50 (0.6970) and most of AP (0.50457).
2. **image renumbering.** It renumbers images 0..N-1 in the order they were passed
   (``coco_to_tm``: order of first appearance in the annotation list, not sorted ids).
   ``accumulate`` concatenates per-image detections in image-id order and sorts them by score
   with a *stable* sort, so among equal scores (the fixture's 734 boxes have only 546 distinct
   scores) the image order decides which counts first. That is the last 0.00001 of AP
   (0.504569 vs 0.504581) and AP75 (0.572954 vs 0.572982).
3. Not causes here, but in training they would be: it rebuilds the ground truth from the
   per-batch targets, so ``area`` (COCO's small/medium/large ranges use the annotation's area,
   not the box area) and ``iscrowd`` must be passed, crowd regions dropped by the training
   transform are lost, images missing from the update calls are not counted, boxes are stored as
   float32 (rounded ground-truth coordinates moved AP to 0.50442 on the fixture) and, under DDP,
   the padding of ``DistributedSampler`` counts repeated images twice.

So this metric keeps only the *detections* as state (float64, COCO xywh in original pixels),
and scores them against the dataset's own ground truth (``gt_coco(split)``: its areas, crowd
boxes and every image of the split), which is what the official evaluation does.

The COCOeval run itself (ground truth, the twelve figures, ids) is in
:mod:`attnlab.evaluation.coco_scoring`.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torchmetrics import Metric
from torchmetrics.utilities.data import dim_zero_cat

from attnlab.evaluation.coco_scoring import (
    EVAL_BACKENDS,
    check_backend,
    coco_evaluate,
    format_summary,
    load_ground_truth,
)

__all__ = ["CocoDetectionMetric", "evaluate_results_file", "main"]


def _rank() -> int:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return int(torch.distributed.get_rank())
    return 0


def _cat(state: Tensor | list[Tensor], empty_shape: tuple[int, ...], dtype: torch.dtype) -> Tensor:
    """A list state (before sync) or concatenated tensor (after sync) as one tensor, possibly empty."""
    if isinstance(state, list) and not state:
        return torch.zeros(empty_shape, dtype=dtype)
    return dim_zero_cat(state).cpu()


class CocoDetectionMetric(Metric):
    """COCO box mAP/mAR through COCOeval, as a torchmetrics ``Metric`` (DDP-synced detections).

    State: the detections only (per detection: image id, xywh box in original pixels as float64,
    score, label, and which ``update`` call on which rank produced it), all
    ``dist_reduce_fx="cat"``, plus the ids of the images passed to ``update``. The ground truth
    is not state: give it with :meth:`set_ground_truth` before :meth:`compute` (every rank can
    load it from its datamodule). See the module docstring for why this is not
    ``MeanAveragePrecision``.

    Args:
        backend: ``pycocotools`` or ``faster_coco_eval``.
        category_ids: ``category_ids[l - 1]`` is the dataset category id of label ``l`` (1..C);
            detections with labels outside 1..C are dropped. None: labels already are category ids.
        box_format: format of the boxes given to :meth:`update`: ``"xyxy"`` or COCO ``"xywh"``
            (results files; kept exactly as given, no round trip through xyxy).
        evaluate_all_images: score every image of the ground truth (the official protocol).
            False scores only the images passed to ``update`` (for runs that look at a few
            batches on purpose, e.g. ``limit_val_batches``).

    Repeated images (``DistributedSampler`` pads the last batches by repeating samples): an
    image's detections are taken from one ``update`` call only, so it counts once.
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False
    # The list states made by add_state, named for the type checker (nn.Module's __getattr__ says Tensor | Module).
    # Lists during update; torchmetrics' sync may leave a concatenated Tensor, which is why `_cat` takes both.
    det_image_ids: list[Tensor]
    det_boxes: list[Tensor]
    det_scores: list[Tensor]
    det_labels: list[Tensor]
    det_source: list[Tensor]
    seen_image_ids: list[Tensor]

    def __init__(
        self,
        backend: str = "pycocotools",
        category_ids: Sequence[Any] | None = None,
        box_format: str = "xyxy",
        evaluate_all_images: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        check_backend(backend)
        if box_format not in ("xyxy", "xywh"):
            raise ValueError(f"box_format must be 'xyxy' or 'xywh', got {box_format!r}")
        self.backend = backend
        self.category_ids = None if category_ids is None else list(category_ids)
        self.box_format = box_format
        self._evaluate_all_images = bool(evaluate_all_images)
        self.add_state("det_image_ids", default=[], dist_reduce_fx="cat")
        self.add_state("det_boxes", default=[], dist_reduce_fx="cat")
        self.add_state("det_scores", default=[], dist_reduce_fx="cat")
        self.add_state("det_labels", default=[], dist_reduce_fx="cat")
        self.add_state("det_source", default=[], dist_reduce_fx="cat")
        self.add_state("seen_image_ids", default=[], dist_reduce_fx="cat")
        self._calls = 0
        self._gt: Any = None
        self._gt_loaded: tuple[int, Any] | None = None  # (id of the gt given, backend COCO built from it)

    @property
    def evaluate_all_images(self) -> bool:
        """Score every ground-truth image (True) or only those passed to ``update``."""
        return self._evaluate_all_images

    @evaluate_all_images.setter
    def evaluate_all_images(self, value: bool) -> None:
        if bool(value) != self._evaluate_all_images:
            self._evaluate_all_images = bool(value)
            self._computed = None  # torchmetrics caches compute() until the next update/reset

    def set_ground_truth(self, gt: Any) -> None:
        """The ground truth to score against: a COCO object, a COCO dict or a JSON path."""
        if gt is not self._gt:
            self._gt = gt
            self._gt_loaded = None
            self._computed = None

    def _float_dtype(self) -> torch.dtype:
        return torch.float32 if self.device.type == "mps" else torch.float64  # MPS has no float64

    def update(self, preds: Sequence[Mapping[str, Tensor]], image_ids: Sequence[int] | Tensor) -> None:
        """Add one batch of detections.

        Args:
            preds: per image ``{"boxes": (N, 4) in original-image pixels (``box_format``),
                "scores": (N,), "labels": (N,) int}``.
            image_ids: per image its id in the ground truth (``target["image_id"]``).
        """
        ids = [int(i) for i in (image_ids.tolist() if isinstance(image_ids, Tensor) else image_ids)]
        if len(ids) != len(preds):
            raise ValueError(f"got {len(preds)} predictions for {len(ids)} image ids")
        dtype = self._float_dtype()
        # A source id unique across ranks and calls: which call an image's detections come from.
        source = _rank() * 2**32 + self._calls
        self._calls += 1
        self.seen_image_ids.append(torch.tensor(ids, dtype=torch.int64, device=self.device))
        for pred, image_id in zip(preds, ids):
            boxes = pred["boxes"].detach().to(self.device, dtype).reshape(-1, 4)
            scores = pred["scores"].detach().to(self.device, dtype).reshape(-1)
            labels = pred["labels"].detach().to(self.device, torch.int64).reshape(-1)
            if not len(boxes) == len(scores) == len(labels):
                raise ValueError(f"image {image_id}: {len(boxes)} boxes, {len(scores)} scores, {len(labels)} labels")
            if self.category_ids is not None:
                keep = (labels >= 1) & (labels <= len(self.category_ids))
                boxes, scores, labels = boxes[keep], scores[keep], labels[keep]
            if self.box_format == "xyxy":
                boxes = torch.cat((boxes[:, :2], boxes[:, 2:] - boxes[:, :2]), dim=1)
            n = len(boxes)
            self.det_image_ids.append(torch.full((n,), image_id, dtype=torch.int64, device=self.device))
            self.det_boxes.append(boxes)
            self.det_scores.append(scores)
            self.det_labels.append(labels)
            self.det_source.append(torch.full((n,), source, dtype=torch.int64, device=self.device))

    def results(self) -> list[dict[str, Any]]:
        """The (synced, de-duplicated) detections as COCO result dicts, grouped by image id in
        ascending order, each image's detections in the order they were given."""
        image_ids = _cat(self.det_image_ids, (0,), torch.int64).numpy()
        boxes = _cat(self.det_boxes, (0, 4), torch.float64).numpy()
        scores = _cat(self.det_scores, (0,), torch.float64).numpy()
        labels = _cat(self.det_labels, (0,), torch.int64).numpy()
        source = _cat(self.det_source, (0,), torch.int64).numpy()
        if len(image_ids) == 0:
            return []
        # One source per image: the first (lowest) source id that produced detections for it.
        first_source: dict[int, int] = {}
        for image_id, src in zip(image_ids.tolist(), source.tolist()):
            if src < first_source.get(image_id, src + 1):
                first_source[image_id] = src
        keep = np.fromiter(
            (first_source[i] == s for i, s in zip(image_ids.tolist(), source.tolist())), bool, count=len(image_ids)
        )
        order = np.argsort(image_ids, kind="stable")
        order = order[keep[order]]
        cats = self.category_ids
        out = []
        for i in order.tolist():
            label = int(labels[i])
            out.append(
                {
                    "image_id": int(image_ids[i]),
                    "category_id": cats[label - 1] if cats is not None else label,
                    "bbox": [float(v) for v in boxes[i]],
                    "score": float(scores[i]),
                }
            )
        return out

    def compute(self) -> dict[str, Tensor]:
        """The twelve COCO figures (see :data:`STAT_NAMES`) as 0-dim float64 CPU tensors."""
        if self._gt is None:
            raise RuntimeError("CocoDetectionMetric needs the ground truth: call set_ground_truth(gt) before compute()")
        if self._gt_loaded is None or self._gt_loaded[0] != id(self._gt):
            coco_gt = load_ground_truth(self._gt, self.backend)
            coco_gt._attnlab_backend = self.backend  # built by load_ground_truth: coco_evaluate may reuse it
            self._gt_loaded = (id(self._gt), coco_gt)
        coco_gt = self._gt_loaded[1]
        img_ids = None
        if not self.evaluate_all_images:
            seen = set(_cat(self.seen_image_ids, (0,), torch.int64).tolist())
            img_ids = sorted(seen & set(coco_gt.getImgIds()))
        stats = coco_evaluate(coco_gt, self.results(), backend=self.backend, img_ids=img_ids)
        return {name: torch.tensor(value, dtype=torch.float64) for name, value in stats.items()}

    def reset(self) -> None:
        super().reset()
        self._calls = 0


def _results_to_batch(results: Sequence[Mapping[str, Any]]) -> tuple[list[dict[str, Tensor]], list[int]]:
    """COCO result dicts -> per-image ``{"boxes" (xywh, float64), "scores", "labels" (category ids)}``,
    images in order of first appearance, each image's detections in file order."""
    grouped: dict[int, list[Mapping[str, Any]]] = {}
    for r in results:
        for key in ("image_id", "category_id", "bbox", "score"):
            if key not in r:
                raise ValueError(f"COCO result without {key!r}: {dict(r)}")
        grouped.setdefault(int(r["image_id"]), []).append(r)
    preds = []
    for dets in grouped.values():
        preds.append(
            {
                "boxes": torch.tensor([list(map(float, d["bbox"])) for d in dets], dtype=torch.float64).reshape(-1, 4),
                "scores": torch.tensor([float(d["score"]) for d in dets], dtype=torch.float64),
                "labels": torch.tensor([int(d["category_id"]) for d in dets], dtype=torch.int64),
            }
        )
    return preds, list(grouped)


def evaluate_results_file(
    gt: str | Path | Mapping[str, Any],
    detections: str | Path | Sequence[Mapping[str, Any]],
    backend: str = "pycocotools",
) -> dict[str, float]:
    """Score a COCO results file through :class:`CocoDetectionMetric` (the code that scores models).

    Args:
        gt: ground-truth annotation JSON (path or dict).
        detections: COCO results JSON (a list of ``{"image_id", "category_id", "bbox", "score"}``),
            path or list.
        backend: ``pycocotools`` or ``faster_coco_eval``.
    """
    if isinstance(detections, (str, Path)):
        with open(detections) as f:
            detections = json.load(f)
    if not isinstance(detections, list):
        raise ValueError("a COCO results file holds a JSON list of detections")
    metric = CocoDetectionMetric(backend=backend, category_ids=None, box_format="xywh")
    preds, image_ids = _results_to_batch(detections)
    if preds:
        metric.update(preds, image_ids)
    metric.set_ground_truth(gt)
    return {name: float(value) for name, value in metric.compute().items()}


def main(argv: Sequence[str] | None = None) -> int:
    """``scripts/coco_eval.py GT.json DETECTIONS.json [--backend B] [--json]``."""
    parser = argparse.ArgumentParser(
        description="Score a COCO detection results file (bbox) with the code that scores attnlab models."
    )
    parser.add_argument("gt", type=Path, help="ground-truth COCO annotation JSON")
    parser.add_argument("detections", type=Path, help="COCO results JSON: [{image_id, category_id, bbox, score}]")
    parser.add_argument("--backend", choices=EVAL_BACKENDS, default="pycocotools", help="COCOeval implementation")
    parser.add_argument("--json", action="store_true", help="print the twelve figures as JSON (full precision)")
    args = parser.parse_args(argv)
    for path in (args.gt, args.detections):
        if not path.is_file():
            parser.error(f"{path} is not a file")
    try:
        stats = evaluate_results_file(args.gt, args.detections, backend=args.backend)
    except (ValueError, KeyError, json.JSONDecodeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(json.dumps(stats, indent=2) if args.json else format_summary(stats))
    return 0
