"""Image-level paired bootstrap of COCO box mAP, affordable on a full validation set.

Matching detections to ground truth (IoU at ten thresholds) is the expensive part of COCOeval and
does not depend on which images a resample draws, so it runs once per run: pycocotools' own
``evaluate()`` (area ``all``, 100 detections per image, the figure ``test/map`` is). A resample
is then a vector of image weights (how often each image was drawn) and mAP is re-accumulated from
the stored per-image matches: per category, the detections of all images sorted once by score
(COCO's stable order), weighted true/false-positive counts summed along that order, COCO's
interpolated precision at its 101 recall points, averaged over IoU thresholds and the categories
that have ground truth in the resample. With weights all 1 this is exactly COCOeval's AP.

Drawing an image twice is the same as giving it weight 2: duplicated detections add points to
the precision/recall curve that lie under its interpolated envelope, so they change nothing.
Resamples are evaluated in chunks, keeping memory to a few tens of MB per category.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from attnlab.evaluation.significance import PairedResult, difference_interval, paired_p_value

__all__ = ["PerImageEvaluation", "detection_paired_bootstrap"]

# COCO's 101 recall thresholds and ten IoU thresholds (float64 linspace, as COCOeval builds them).
_RECALL = np.linspace(0.0, 1.00, int(np.round((1.00 - 0.0) / 0.01)) + 1, endpoint=True)
_MAX_DETS = 100
_CHUNK_ELEMENTS = 1 << 22  # resamples x detections per chunk (32 MiB of int64)


@dataclass
class _Category:
    """One category's detections over all images, in COCO's accumulate order (score, then image)."""

    image: np.ndarray  # (D,) index of each detection's image
    tp_positions: list[np.ndarray]  # per IoU threshold: positions of the true positions (matched, not ignored)
    ignored: np.ndarray | None  # (T, D) matched to an ignored ground truth (crowd); None when there is none
    gt_per_image: np.ndarray  # (N,) ground truths that count (not ignored) per image


class PerImageEvaluation:
    """One run's detections matched to the ground truth once; mAP for any weighting of the images.

    Args:
        gt: the ground truth (a path, a COCO dict or a ``COCO`` object; see
            :func:`attnlab.evaluation.coco_scoring.load_ground_truth`).
        detections: COCO results (data set image and category ids).
        image_ids: the images evaluated, in a fixed order (weights follow it).
        category_ids: the categories scored (the model's label space); None = all of ``gt``.
    """

    def __init__(
        self,
        gt: Any,
        detections: Sequence[Mapping[str, Any]],
        image_ids: Sequence[Any],
        category_ids: Sequence[Any] | None = None,
    ) -> None:
        from pycocotools.cocoeval import COCOeval

        from attnlab.evaluation.coco_scoring import load_ground_truth, results_coco

        coco_gt = load_ground_truth(gt, "pycocotools")
        self.image_ids = list(image_ids)
        known = set(coco_gt.getCatIds())
        cats = sorted(known if not category_ids else set(category_ids) & known)
        results = [dict(d, bbox=list(d["bbox"])) for d in detections]
        with contextlib.redirect_stdout(io.StringIO()):
            evaluator = COCOeval(coco_gt, results_coco(coco_gt, results, "pycocotools"), "bbox")
            evaluator.params.imgIds = self.image_ids
            evaluator.params.catIds = cats
            evaluator.params.areaRng = [evaluator.params.areaRng[0]]  # "all": the range test/map uses
            evaluator.params.areaRngLbl = ["all"]
            evaluator.params.maxDets = [_MAX_DETS]
            evaluator.evaluate()
        self.iou_thresholds = np.asarray(evaluator.params.iouThrs)
        n = len(self.image_ids)
        # evalImgs is ordered category-major, then (one) area range, then image (params.imgIds order).
        self.categories = [self._category(evaluator.evalImgs[k * n : (k + 1) * n]) for k in range(len(cats))]

    def _category(self, per_image: Sequence[dict[str, Any] | None]) -> _Category:
        t = len(self.iou_thresholds)
        images, scores, matched, ignored = [], [], [], []
        gt_per_image = np.zeros(len(per_image))
        for i, e in enumerate(per_image):
            if e is None:
                continue
            gt_per_image[i] = np.count_nonzero(np.asarray(e["gtIgnore"]) == 0)
            d = len(e["dtScores"][:_MAX_DETS])
            images.append(np.full(d, i))
            scores.append(np.asarray(e["dtScores"][:_MAX_DETS], dtype=np.float64))
            matched.append(np.asarray(e["dtMatches"])[:, :d].reshape(t, d) > 0)
            ignored.append(np.asarray(e["dtIgnore"])[:, :d].reshape(t, d) > 0)
        if not images:
            return _Category(
                np.zeros(0, dtype=np.int64), [np.zeros(0, dtype=np.int64)] * t, None, gt_per_image.astype(np.int64)
            )
        order = np.argsort(-np.concatenate(scores), kind="mergesort")
        m, ig = np.concatenate(matched, axis=1)[:, order], np.concatenate(ignored, axis=1)[:, order]
        return _Category(
            np.concatenate(images)[order],
            [np.flatnonzero(row) for row in m & ~ig],
            ig if ig.any() else None,
            gt_per_image.astype(np.int64),
        )

    def map(self, weights: np.ndarray | None = None) -> float:
        """COCO mAP (IoU 0.50:0.95, all areas, 100 detections) with ``weights`` per image (default 1)."""
        w = np.ones((1, len(self.image_ids))) if weights is None else np.asarray(weights, dtype=np.float64)[None]
        return float(self.map_many(w)[0])

    def map_many(self, weights: np.ndarray) -> np.ndarray:
        """mAP for each row of ``weights`` (R, N): one resample per row. NaN where no category has
        ground truth in the resample."""
        weights = np.asarray(weights, dtype=np.float64)
        ap_sum = np.zeros(len(weights))
        valid = np.zeros(len(weights))
        for cat in self.categories:
            ap, has_gt = _category_ap(cat, weights)
            ap_sum += np.where(has_gt, ap, 0.0)
            valid += has_gt
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(valid > 0, ap_sum / valid, np.nan)


def _category_ap(cat: _Category, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """AP (mean interpolated precision over IoU and recall thresholds) of one category per resample.

    Only true positives matter for the interpolated curve: recall rises only there, and precision
    peaks there (a false positive lowers it), so the curve is evaluated at the true positions only,
    the false positives before each one counted as all detections so far minus true (and ignored)
    ones. Weights are draw counts, so every count is an integer and the first true positive
    reaching a recall point is found on the counts (:func:`_counts_reaching`), exactly where
    COCOeval's float comparison finds it."""
    counts = np.rint(weights).astype(np.int64)
    npig = counts @ cat.gt_per_image  # (R,)
    has_gt = npig > 0
    d = len(cat.image)
    ap = np.zeros(len(counts))
    if d == 0:
        return ap, has_gt  # ground truth but no detection: precision 0 everywhere
    chunk = max(1, _CHUNK_ELEMENTS // d)
    for start in range(0, len(counts), chunk):
        w = counts[start : start + chunk][:, cat.image]  # (C, D) weight of each detection
        seen = np.cumsum(w, axis=1)  # detections so far, whatever their kind
        need = _counts_reaching(npig[start : start + chunk])  # (C, 101)
        total = np.zeros(len(w))
        for t, positions in enumerate(cat.tp_positions):
            if len(positions) == 0:
                continue  # no true positive at this threshold: precision 0 at every recall point
            tp = np.cumsum(w[:, positions], axis=1)  # (C, P)
            fp = seen[:, positions] - tp
            if cat.ignored is not None and cat.ignored[t].any():
                fp -= np.cumsum(w * cat.ignored[t], axis=1)[:, positions]
            precision = tp / (tp + fp + np.spacing(1))
            # Interpolated precision: the best precision at this recall or any higher one.
            envelope = np.maximum.accumulate(precision[:, ::-1], axis=1)[:, ::-1]
            total += _interpolated_sum(tp, envelope, need)
        ap[start : start + chunk] = total / (len(cat.tp_positions) * len(_RECALL))
    return ap, has_gt


def _counts_reaching(npig: np.ndarray) -> np.ndarray:
    """(R, 101): per resample, the smallest true-positive count k with float64 ``k / npig >= r`` for
    each recall point r (COCOeval's comparison; 0 where npig is 0)."""
    n = np.maximum(npig, 1).astype(np.float64)[:, None]
    k = np.ceil(_RECALL[None, :] * n)
    k = np.where(k / n < _RECALL, k + 1, k)  # rounding put the product just below the point
    k = np.where((k > 0) & ((k - 1) / n >= _RECALL), k - 1, k)  # ...or just above it
    return np.where(npig[:, None] > 0, k, 0).astype(np.int64)


def _interpolated_sum(tp: np.ndarray, envelope: np.ndarray, need: np.ndarray) -> np.ndarray:
    """Per resample (row), the sum over the 101 recall points of the envelope at the first true
    positive whose count reaches ``need`` (0 past the highest recall). All rows in one
    ``searchsorted``: each row's non-decreasing integer counts are lifted by its row number times
    a bound on the counts, which keeps the comparison exact."""
    c, p = tp.shape
    bound = int(max(tp[:, -1].max(), need.max())) + 2
    lift = (np.arange(c, dtype=np.int64) * bound)[:, None]
    idx = np.searchsorted((tp + lift).ravel(), (need + lift).ravel(), side="left").reshape(c, -1)
    idx -= (np.arange(c) * p)[:, None]
    values = np.take_along_axis(envelope, np.minimum(idx, p - 1), axis=1)
    return np.where(idx < p, values, 0.0).sum(axis=1)


def detection_paired_bootstrap(
    baseline: Sequence[PerImageEvaluation],
    system: Sequence[PerImageEvaluation],
    *,
    n_resamples: int = 1000,
    seed: int = 12345,
) -> PairedResult:
    """Paired image bootstrap of mAP: ``system`` runs against ``baseline`` runs (one per seed each,
    on the same images). Every resample draws images with replacement and weighs every run with the
    same draw; a side's score is the mean mAP of its runs (seeds averaged, paired by image)."""
    n_images = len(baseline[0].image_ids)
    for ev in (*baseline, *system):
        if ev.image_ids != baseline[0].image_ids:
            raise ValueError("runs compared for significance must have evaluated the same images, in the same order")
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, n_images, size=(n_resamples, n_images))
    weights = np.zeros((n_resamples, n_images))
    np.add.at(weights, (np.arange(n_resamples)[:, None], draws), 1.0)
    base = np.mean([ev.map_many(weights) for ev in baseline], axis=0)
    sys_ = np.mean([ev.map_many(weights) for ev in system], axis=0)
    base_score = float(np.mean([ev.map() for ev in baseline]))
    sys_score = float(np.mean([ev.map() for ev in system]))
    diffs = sys_ - base
    diffs = diffs[np.isfinite(diffs)]
    observed = sys_score - base_score
    low, high = difference_interval(diffs)
    return PairedResult(
        "map",
        base_score,
        sys_score,
        observed,
        low,
        high,
        paired_p_value(diffs, observed),
        n_images,
        n_resamples,
        "paired image bootstrap of COCO mAP",
    )
