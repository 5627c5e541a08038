"""Section 5: COCO evaluation time per backend through attnlab's evaluator: the shared fixture
``cocoapi_val2014_100`` from files (skipped when absent) and a synthetic set scored as training scores a model."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from benchmarks.generated import scored_detections
from benchmarks.report import compare, figure, timed
from benchmarks.settings import BenchSettings

TITLE = "5. COCO evaluation"
BACKENDS = ("pycocotools", "faster_coco_eval")
FIXTURE = "cocoapi_val2014_100"


def fixture_dir() -> Path | None:
    """The shared fixture folder, or None when absent."""
    from attnlab.project import project_root

    base = Path(os.environ.get("ATTNLAB_FIXTURES") or project_root().parent / "shared" / "fixtures")
    return base / FIXTURE if (base / FIXTURE / "instances_val2014_100.json").is_file() else None


def _time_synthetic(gt: dict, per_image: list[dict], backend: str, repeats: int) -> tuple[list, list, float]:
    """(seconds of update + compute, seconds of compute, AP) per repeat; a fresh metric, update per 16 images."""
    import torch

    from attnlab.evaluation.coco_eval import CocoDetectionMetric

    def tensors(p: dict[str, Any]) -> dict[str, Any]:
        types = {"boxes": torch.float32, "scores": torch.float32, "labels": torch.int64}
        return {k: torch.as_tensor(p[k], dtype=dtype) for k, dtype in types.items()}

    chunks = [per_image[i : i + 16] for i in range(0, len(per_image), 16)]
    batches = [([tensors(p) for p in chunk], [p["image_id"] for p in chunk]) for chunk in chunks]
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


def _fixture_figures(path: Path, repeats: int, result: dict[str, Any]) -> None:
    from attnlab.evaluation.coco_eval import evaluate_results_file

    seconds: dict[str, list[float]] = {b: [] for b in BACKENDS}
    aps = {}
    files = path / "instances_val2014_100.json", path / "instances_val2014_fakebbox100_results.json"
    for backend in BACKENDS:
        for _ in range(repeats):
            start = time.perf_counter()
            aps[backend] = evaluate_results_file(*files, backend=backend)["map"]
            seconds[backend].append(time.perf_counter() - start)
    names = [f"fixture (100 images, files): {b}" for b in BACKENDS] + ["fixture: pycocotools / faster_coco_eval time"]
    compare(result, names, *seconds.values(), "s", paired=False)
    result["details"]["fixture_ap"] = aps
    result["notes"].append(f"Fixture AP: {', '.join(f'{b} {aps[b]:.4f}' for b in BACKENDS)} (official 0.505).")


@timed("evaluation", TITLE)
def run(settings: BenchSettings, result: dict[str, Any]) -> None:
    """Fixture and synthetic set, both backends."""
    repeats, path = settings.pick(5, 2, 1), fixture_dir()
    if path is None:
        result["notes"].append(f"shared fixture {FIXTURE} absent: fixture timing skipped")
    else:
        _fixture_figures(path, repeats, result)
    n_images = settings.pick(1000, 1000, 40)
    gt, per_image = scored_detections(n_images, seed=settings.seed)
    synthetic = {b: _time_synthetic(gt, per_image, b, repeats) for b in BACKENDS}
    name = f"synthetic ({n_images} images)"
    for backend, (total, _, _) in synthetic.items():
        result["figures"].append(figure(f"{name}: {backend}, update+compute", total, "s"))
    names = [f"{name}: {b}, compute" for b in BACKENDS] + [f"{name}: pycocotools / faster_coco_eval compute time"]
    compare(result, names, *(synthetic[b][1] for b in BACKENDS), "s", paired=False)
    n_dets, aps = sum(len(p["scores"]) for p in per_image), {b: synthetic[b][2] for b in BACKENDS}
    result["details"]["synthetic"] = {"images": n_images, "annotations": len(gt["annotations"]), "detections": n_dets}
    result["details"]["synthetic"]["ap"] = aps
    result["notes"].append(f"Synthetic AP: {', '.join(f'{b} {aps[b]:.4f}' for b in BACKENDS)}.")
