"""Section 5: COCO evaluation time per backend, through attnlab's evaluator.

* The shared fixture (``../shared/fixtures/cocoapi_val2014_100``: the cocoapi example's first 100
  val2014 images and its fake detections), scored from files with
  :func:`attnlab.evaluation.coco_eval.evaluate_results_file` (what ``scripts/coco_eval.py`` runs).
  Skipped with a note when the fixture is absent (``$ATTNLAB_FIXTURES`` overrides its location).
* A synthetic set generated here (1000 images, 10 categories, 1-12 boxes per image; detections are
  jittered ground truths, missed ones and false positives, with scores), scored the way training
  scores a model: :class:`attnlab.evaluation.coco_eval.CocoDetectionMetric` ``update`` per batch of
  16 images (xyxy tensors, labels 1..C), ``set_ground_truth``, ``compute``.

Backends: ``pycocotools`` and ``faster_coco_eval``; each repeat builds a fresh metric, so the
ground-truth index is rebuilt every time (as at the end of each validation epoch).
"""

from __future__ import annotations

import os
import statistics
import time
from pathlib import Path
from typing import Any

from attnlab.bench.report import figure, section
from attnlab.bench.settings import BenchSettings

__all__ = ["BACKENDS", "TITLE", "fixture_dir", "make_synthetic", "run"]

TITLE = "5. COCO evaluation"
BACKENDS = ("pycocotools", "faster_coco_eval")
FIXTURE = "cocoapi_val2014_100"


def fixture_dir() -> Path | None:
    """``$ATTNLAB_FIXTURES/cocoapi_val2014_100`` or ``<repo>/../shared/fixtures/...``; None when absent."""
    from attnlab.project import project_root

    base = Path(os.environ["ATTNLAB_FIXTURES"]) if os.environ.get("ATTNLAB_FIXTURES") else \
        project_root().parent / "shared" / "fixtures"
    path = base / FIXTURE
    return path if (path / "instances_val2014_100.json").is_file() else None


def make_synthetic(n_images: int, n_categories: int = 10, seed: int = 0) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """A COCO ground truth and per-image detections.

    Returns ``(gt, per_image)``: ``gt`` a COCO dict (images 640x480, ids from 1), ``per_image`` a
    list of ``{"image_id", "boxes" (N, 4) xyxy float64 ndarray, "scores" (N,), "labels" (N,) 1..C}``.
    Each ground truth is found with probability 0.8 (box jittered by up to 10% of its size, score
    0.3-1.0), and 0-8 false positives (score 0-0.6) are added per image.
    """
    import numpy as np

    rng = np.random.default_rng(seed)
    images, annotations, per_image = [], [], []
    ann_id = 1
    for image_id in range(1, n_images + 1):
        images.append({"id": image_id, "width": 640, "height": 480, "file_name": f"{image_id:06d}.jpg"})
        n = int(rng.integers(1, 13))
        wh = rng.uniform(8, 200, size=(n, 2))
        xy = rng.uniform(0, 1, size=(n, 2)) * (np.array([640, 480]) - wh)
        cats = rng.integers(1, n_categories + 1, size=n)
        for (x, y), (w, h), c in zip(xy, wh, cats):
            annotations.append({"id": ann_id, "image_id": image_id, "category_id": int(c), "iscrowd": 0,
                                "bbox": [float(x), float(y), float(w), float(h)], "area": float(w * h)})
            ann_id += 1
        found = rng.uniform(size=n) < 0.8
        jitter = rng.uniform(-0.1, 0.1, size=(n, 4)) * np.concatenate([wh, wh], axis=1)
        boxes = np.concatenate([xy, xy + wh], axis=1) + jitter
        n_fp = int(rng.integers(0, 9))
        fp_wh = rng.uniform(8, 200, size=(n_fp, 2))
        fp_xy = rng.uniform(0, 1, size=(n_fp, 2)) * (np.array([640, 480]) - fp_wh)
        all_boxes = np.concatenate([boxes[found], np.concatenate([fp_xy, fp_xy + fp_wh], axis=1)])
        scores = np.concatenate([rng.uniform(0.3, 1.0, size=int(found.sum())), rng.uniform(0, 0.6, size=n_fp)])
        labels = np.concatenate([cats[found], rng.integers(1, n_categories + 1, size=n_fp)])
        per_image.append({"image_id": image_id, "boxes": all_boxes, "scores": scores, "labels": labels})
    categories = [{"id": c, "name": f"class{c}", "supercategory": "thing"} for c in range(1, n_categories + 1)]
    return {"images": images, "annotations": annotations, "categories": categories}, per_image


def _time_fixture(path: Path, backend: str, repeats: int) -> tuple[list[float], float]:
    from attnlab.evaluation.coco_eval import evaluate_results_file

    gt = path / "instances_val2014_100.json"
    dets = path / "instances_val2014_fakebbox100_results.json"
    samples, ap = [], float("nan")
    for _ in range(repeats):
        start = time.perf_counter()
        stats = evaluate_results_file(gt, dets, backend=backend)
        samples.append(time.perf_counter() - start)
        ap = stats["map"]
    return samples, ap


def _time_synthetic(gt: dict[str, Any], per_image: list[dict[str, Any]], n_categories: int, backend: str,
                    repeats: int) -> tuple[list[float], list[float], float]:
    """(seconds of update+compute, seconds of compute alone, AP) per repeat."""
    import torch

    from attnlab.evaluation.coco_eval import CocoDetectionMetric

    batches = [per_image[i:i + 16] for i in range(0, len(per_image), 16)]
    tensors = [
        ([{"boxes": torch.as_tensor(p["boxes"], dtype=torch.float32),
           "scores": torch.as_tensor(p["scores"], dtype=torch.float32),
           "labels": torch.as_tensor(p["labels"], dtype=torch.int64)} for p in batch],
         [p["image_id"] for p in batch])
        for batch in batches
    ]
    total, compute, ap = [], [], float("nan")
    for _ in range(repeats):
        start = time.perf_counter()
        metric = CocoDetectionMetric(backend=backend, category_ids=list(range(1, n_categories + 1)))
        for preds, ids in tensors:
            metric.update(preds, ids)
        metric.set_ground_truth(gt)
        mid = time.perf_counter()
        values = metric.compute()
        end = time.perf_counter()
        total.append(end - start)
        compute.append(end - mid)
        ap = float(values["map"])
    return total, compute, ap


def run(settings: BenchSettings) -> dict[str, Any]:
    """Fixture and synthetic set, both backends."""
    started = time.perf_counter()
    result = section("evaluation", TITLE)
    repeats = settings.pick(full=5, quick=2, tiny=1)
    path = fixture_dir()
    if path is None:
        result["notes"].append(f"shared fixture {FIXTURE} absent: fixture timing skipped")
    else:
        fixture: dict[str, tuple[list[float], float]] = {}
        for backend in BACKENDS:
            fixture[backend] = _time_fixture(path, backend, repeats)
            result["figures"].append(figure(f"fixture (100 images, files): {backend}", fixture[backend][0], "s"))
        result["figures"].append(figure(
            "fixture: pycocotools / faster_coco_eval time",
            statistics.median(fixture["pycocotools"][0]) / statistics.median(fixture["faster_coco_eval"][0]), "x"))
        result["details"]["fixture_ap"] = {b: fixture[b][1] for b in BACKENDS}
    n_images = settings.pick(full=1000, quick=1000, tiny=40)
    n_categories = 10
    gt, per_image = make_synthetic(n_images, n_categories, seed=settings.seed)
    n_dets = sum(len(p["scores"]) for p in per_image)
    synthetic: dict[str, tuple[list[float], list[float], float]] = {}
    for backend in BACKENDS:
        synthetic[backend] = _time_synthetic(gt, per_image, n_categories, backend, repeats)
        total, compute, _ = synthetic[backend]
        result["figures"].append(figure(f"synthetic ({n_images} images): {backend}, update+compute", total, "s"))
        result["figures"].append(figure(f"synthetic ({n_images} images): {backend}, compute", compute, "s"))
    result["figures"].append(figure(
        f"synthetic ({n_images} images): pycocotools / faster_coco_eval compute time",
        statistics.median(synthetic["pycocotools"][1]) / statistics.median(synthetic["faster_coco_eval"][1]), "x"))
    aps = {b: synthetic[b][2] for b in BACKENDS}
    result["details"]["synthetic"] = {"images": n_images, "annotations": len(gt["annotations"]),
                                      "detections": n_dets, "ap": aps}
    result["notes"] += [
        f"Synthetic set: {n_images} images, {len(gt['annotations'])} ground-truth boxes, {n_dets} detections, "
        f"{n_categories} categories; AP pycocotools {aps['pycocotools']:.4f}, faster_coco_eval "
        f"{aps['faster_coco_eval']:.4f}.",
        "Fixture: evaluate_results_file (JSON files -> CocoDetectionMetric -> COCOeval); synthetic: "
        "CocoDetectionMetric.update per 16 images + compute, a fresh metric (and ground-truth index) per repeat.",
    ]
    if "fixture_ap" in result["details"]:
        fa = result["details"]["fixture_ap"]
        result["notes"].append(f"Fixture AP: pycocotools {fa['pycocotools']:.4f}, "
                               f"faster_coco_eval {fa['faster_coco_eval']:.4f} (official 0.505).")
    result["seconds"] = time.perf_counter() - started
    return result
