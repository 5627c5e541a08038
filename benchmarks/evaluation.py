"""Section 5: COCO evaluation time per backend (pycocotools, faster_coco_eval), through attnlab's
evaluator: the shared fixture ``cocoapi_val2014_100`` scored from files as ``scripts/coco_eval.py``
does (skipped when absent), and a synthetic 1000-image set scored as training scores a model
(``CocoDetectionMetric.update`` per 16 images, ``compute``; a fresh metric per repeat)."""

from __future__ import annotations

import os
import statistics
import time
from pathlib import Path
from typing import Any

from benchmarks.report import figure, section
from benchmarks.settings import BenchSettings

TITLE = "5. COCO evaluation"
BACKENDS = ("pycocotools", "faster_coco_eval")
FIXTURE = "cocoapi_val2014_100"


def fixture_dir() -> Path | None:
    """The shared fixture folder, or None when absent."""
    from attnlab.project import project_root

    base = Path(os.environ.get("ATTNLAB_FIXTURES") or project_root().parent / "shared" / "fixtures")
    return base / FIXTURE if (base / FIXTURE / "instances_val2014_100.json").is_file() else None


def make_synthetic(n_images: int, n_categories: int = 10, seed: int = 0) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """``(gt, per_image)``: a COCO ground truth (640x480 images, 1-12 boxes each) and per-image
    detections ``{"image_id", "boxes" (N, 4) xyxy, "scores", "labels" 1..C}``: each true box found
    with probability 0.8 (jittered by up to 10%, score 0.3-1), plus 0-8 false positives (score 0-0.6)."""
    import numpy as np

    rng = np.random.default_rng(seed)

    def boxes(n: int) -> Any:  # (n, 4) x, y, w, h inside the image
        wh = rng.uniform(8, 200, (n, 2))
        return np.concatenate([rng.uniform(0, 1, (n, 2)) * (np.array([640, 480]) - wh), wh], 1)

    images, annotations, per_image = [], [], []
    for image_id in range(1, n_images + 1):
        truth, fp = boxes(int(rng.integers(1, 13))), boxes(int(rng.integers(0, 9)))
        cats = rng.integers(1, n_categories + 1, len(truth))
        images.append({"id": image_id, "width": 640, "height": 480, "file_name": f"{image_id:06d}.jpg"})
        annotations += [{"id": len(annotations) + i + 1, "image_id": image_id, "category_id": int(c), "iscrowd": 0,
                         "bbox": [float(v) for v in b], "area": float(b[2] * b[3])} for i, (b, c) in
                        enumerate(zip(truth, cats))]
        keep = rng.uniform(size=len(truth)) < 0.8
        dets = np.concatenate([truth[keep] + rng.uniform(-0.1, 0.1, (int(keep.sum()), 4)) * np.tile(truth[keep, 2:], 2),
                               fp])
        per_image.append({"image_id": image_id, "boxes": np.concatenate([dets[:, :2], dets[:, :2] + dets[:, 2:]], 1),
                          "scores": np.concatenate([rng.uniform(0.3, 1, int(keep.sum())),
                                                    rng.uniform(0, 0.6, len(fp))]),
                          "labels": np.concatenate([cats[keep], rng.integers(1, n_categories + 1, len(fp))])})
    categories = [{"id": c, "name": f"class{c}", "supercategory": "thing"} for c in range(1, n_categories + 1)]
    return {"images": images, "annotations": annotations, "categories": categories}, per_image


def _time_synthetic(gt: dict[str, Any], per_image: list[dict[str, Any]], backend: str,
                    repeats: int) -> tuple[list[float], list[float], float]:
    """(seconds of update + compute, seconds of compute, AP) per repeat."""
    import torch

    from attnlab.evaluation.coco_eval import CocoDetectionMetric

    batches = [([{k: torch.as_tensor(p[k], dtype=torch.int64 if k == "labels" else torch.float32)
                  for k in ("boxes", "scores", "labels")} for p in per_image[i:i + 16]],
                [p["image_id"] for p in per_image[i:i + 16]]) for i in range(0, len(per_image), 16)]
    total, compute, ap = [], [], float("nan")
    for _ in range(repeats):
        start = time.perf_counter()
        metric = CocoDetectionMetric(backend=backend, category_ids=[c["id"] for c in gt["categories"]])
        for preds, ids in batches:
            metric.update(preds, ids)
        metric.set_ground_truth(gt)
        mid = time.perf_counter()
        ap = float(metric.compute()["map"])
        total.append(time.perf_counter() - start)
        compute.append(time.perf_counter() - mid)
    return total, compute, ap


def run(settings: BenchSettings) -> dict[str, Any]:
    """Fixture and synthetic set, both backends."""
    from attnlab.evaluation.coco_eval import evaluate_results_file

    started = time.perf_counter()
    result = section("evaluation", TITLE)
    repeats = settings.pick(5, 2, 1)
    path = fixture_dir()
    if path is None:
        result["notes"].append(f"shared fixture {FIXTURE} absent: fixture timing skipped")
    else:
        seconds, aps = {}, {}
        for backend in BACKENDS:
            seconds[backend] = []
            for _ in range(repeats):
                start = time.perf_counter()
                aps[backend] = evaluate_results_file(path / "instances_val2014_100.json",
                                                     path / "instances_val2014_fakebbox100_results.json",
                                                     backend=backend)["map"]
                seconds[backend].append(time.perf_counter() - start)
            result["figures"].append(figure(f"fixture (100 images, files): {backend}", seconds[backend], "s"))
        result["figures"].append(figure("fixture: pycocotools / faster_coco_eval time", statistics.median(
            seconds["pycocotools"]) / statistics.median(seconds["faster_coco_eval"]), "x"))
        result["details"]["fixture_ap"] = aps
        result["notes"].append(f"Fixture AP: {', '.join(f'{b} {aps[b]:.4f}' for b in BACKENDS)} (official 0.505).")
    n_images = settings.pick(1000, 1000, 40)
    gt, per_image = make_synthetic(n_images, seed=settings.seed)
    synthetic = {b: _time_synthetic(gt, per_image, b, repeats) for b in BACKENDS}
    for backend, (total, compute, _) in synthetic.items():
        result["figures"] += [figure(f"synthetic ({n_images} images): {backend}, update+compute", total, "s"),
                              figure(f"synthetic ({n_images} images): {backend}, compute", compute, "s")]
    result["figures"].append(figure(f"synthetic ({n_images} images): pycocotools / faster_coco_eval compute time",
                                    statistics.median(synthetic["pycocotools"][1]) /
                                    statistics.median(synthetic["faster_coco_eval"][1]), "x"))
    n_dets = sum(len(p["scores"]) for p in per_image)
    result["details"]["synthetic"] = {"images": n_images, "annotations": len(gt["annotations"]), "detections": n_dets,
                                      "ap": {b: synthetic[b][2] for b in BACKENDS}}
    result["notes"].append(f"Synthetic set: {n_images} images, {len(gt['annotations'])} boxes, {n_dets} detections; "
                           f"AP {', '.join(f'{b} {synthetic[b][2]:.4f}' for b in BACKENDS)}; a fresh metric "
                           "(and ground-truth index) per repeat, update per 16 images.")
    result["seconds"] = time.perf_counter() - started
    return result
