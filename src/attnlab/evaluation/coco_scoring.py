"""COCOeval (bbox) on plain COCO data: the ground truth, the twelve official figures, their summary.

:func:`coco_evaluate` scores COCO result dicts against a ground truth (a path, a COCO dict or a
``COCO`` object) with either backend, ``pycocotools`` or ``faster_coco_eval``; the metric that
scores models, :class:`attnlab.evaluation.coco_eval.CocoDetectionMetric`, and the paired bootstrap
(:mod:`attnlab.evaluation.coco_bootstrap`) both go through it. Nothing here imports torch.

Ids: pycocotools stores matched annotation ids in arrays where 0 means "unmatched", so a
ground-truth annotation with id 0 could never be found; ground truths with ids <= 0 are
re-indexed from 1 before evaluation. 0-based image and category ids are fine as they are.
"""

from __future__ import annotations

import contextlib
import io
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = [
    "EVAL_BACKENDS",
    "STAT_NAMES",
    "check_backend",
    "coco_evaluate",
    "format_summary",
    "load_ground_truth",
    "results_coco",
]

EVAL_BACKENDS = ("pycocotools", "faster_coco_eval")
#: Names of COCOeval's twelve ``stats``, in order (torchmetrics' names).
STAT_NAMES = (
    "map",
    "map_50",
    "map_75",
    "map_small",
    "map_medium",
    "map_large",
    "mar_1",
    "mar_10",
    "mar_100",
    "mar_small",
    "mar_medium",
    "mar_large",
)
# (AP or AR, IoU, area, maxDets) of each stat, for printing the official summary lines.
_STAT_LINES = (
    (1, "0.50:0.95", "all", 100),
    (1, "0.50", "all", 100),
    (1, "0.75", "all", 100),
    (1, "0.50:0.95", "small", 100),
    (1, "0.50:0.95", "medium", 100),
    (1, "0.50:0.95", "large", 100),
    (0, "0.50:0.95", "all", 1),
    (0, "0.50:0.95", "all", 10),
    (0, "0.50:0.95", "all", 100),
    (0, "0.50:0.95", "small", 100),
    (0, "0.50:0.95", "medium", 100),
    (0, "0.50:0.95", "large", 100),
)


def check_backend(backend: str) -> None:
    """A ValueError naming the choices unless ``backend`` is one of :data:`EVAL_BACKENDS`."""
    if backend not in EVAL_BACKENDS:
        raise ValueError(f"unknown COCO eval backend {backend!r}; one of {EVAL_BACKENDS}")


def _backend_classes(backend: str) -> tuple[type, type]:
    """(COCO, COCOeval) classes of a backend."""
    check_backend(backend)
    if backend == "pycocotools":
        from pycocotools.coco import COCO
        from pycocotools.cocoeval import COCOeval

        return COCO, COCOeval
    from faster_coco_eval import COCO, COCOeval_faster

    return COCO, COCOeval_faster


def load_ground_truth(gt: Any, backend: str = "pycocotools") -> Any:
    """A backend ``COCO`` object indexing a ground truth, safe to evaluate against.

    Args:
        gt: a path to a COCO annotation JSON, a COCO-format dict, or a ``COCO`` object of either
            backend (its ``.dataset`` is used).
        backend: ``pycocotools`` or ``faster_coco_eval``.

    The annotation dicts are copied (COCOeval writes an ``ignore`` flag into them) and, when any
    annotation id is <= 0, re-indexed from 1 (see the module docstring).
    """
    coco_cls, _ = _backend_classes(backend)
    if isinstance(gt, (str, Path)):
        with open(gt) as f:
            data = json.load(f)
    elif isinstance(gt, Mapping):
        data = dict(gt)
    elif hasattr(gt, "dataset"):
        data = dict(gt.dataset)
    else:
        raise TypeError(f"ground truth must be a path, a COCO dict or a COCO object, got {type(gt).__name__}")
    for key in ("images", "annotations", "categories"):
        if key not in data:
            raise ValueError(f"ground truth has no {key!r} list")
    anns = [dict(a) for a in data["annotations"]]
    if any(int(a["id"]) <= 0 for a in anns):
        for new_id, ann in enumerate(anns, start=1):
            ann["id"] = new_id
    data["annotations"] = anns
    coco = coco_cls()
    coco.dataset = data
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


def results_coco(coco_gt: Any, results: list[dict[str, Any]], backend: str) -> Any:
    """The detections as a backend ``COCO`` (``loadRes``; an empty list gives an empty result set,
    which pycocotools' ``loadRes`` cannot build)."""
    if results:
        return coco_gt.loadRes(results)
    coco_cls, _ = _backend_classes(backend)
    res = coco_cls()
    res.dataset = {
        "images": list(coco_gt.dataset["images"]),
        "categories": list(coco_gt.dataset["categories"]),
        "annotations": [],
    }
    res.createIndex()
    return res


def coco_evaluate(
    gt: Any,
    results: Sequence[Mapping[str, Any]],
    *,
    backend: str = "pycocotools",
    img_ids: Sequence[int] | None = None,
) -> dict[str, float]:
    """COCOeval (bbox) of COCO results against a ground truth: the twelve official figures.

    Args:
        gt: ground truth (see :func:`load_ground_truth`; an already loaded backend COCO from it is reused).
        results: COCO result dicts ``{"image_id", "category_id", "bbox": [x, y, w, h], "score"}``
            in original-image pixels, ids as in ``gt``.
        backend: ``pycocotools`` or ``faster_coco_eval``.
        img_ids: images to evaluate; None = every image of ``gt`` (images without detections
            count: their ground truths are misses).

    Returns:
        ``{name: value}`` for :data:`STAT_NAMES` (``-1`` where COCO has nothing to average,
        e.g. no ground truth in an area range).
    """
    _, eval_cls = _backend_classes(backend)
    coco_gt = gt if getattr(gt, "_attnlab_backend", None) == backend else load_ground_truth(gt, backend)
    gt_ids = set(coco_gt.getImgIds())
    unknown = sorted({int(r["image_id"]) for r in results} - gt_ids)
    if unknown:
        raise ValueError(f"{len(unknown)} detection image id(s) are not in the ground truth, e.g. {unknown[:5]}")
    # COCOeval scores only the ground truth's categories: detections of any other would be
    # dropped without a word, and a results file written with other ids would score 0.
    known_cats = set(coco_gt.getCatIds())

    def by_id(c: Any) -> tuple[bool, Any]:
        return (isinstance(c, str), c)

    unknown_cats = sorted({r["category_id"] for r in results if r["category_id"] not in known_cats}, key=by_id)
    if unknown_cats:
        n = sum(1 for r in results if r["category_id"] not in known_cats)
        raise ValueError(
            f"{n} detection(s) have a category id that is not in the ground truth: {unknown_cats[:20]}"
            f"{' ...' if len(unknown_cats) > 20 else ''}; the ground truth's category ids are "
            f"{sorted(known_cats, key=by_id)[:20]}{' ...' if len(known_cats) > 20 else ''}"
        )
    ids = sorted(gt_ids if img_ids is None else {int(i) for i in img_ids})
    if not ids:
        return {name: -1.0 for name in STAT_NAMES}
    # Fresh dicts: loadRes writes id/area/segmentation into the result dicts it gets.
    fresh = [dict(r, bbox=list(r["bbox"])) for r in results]
    with contextlib.redirect_stdout(io.StringIO()):
        coco_dt = results_coco(coco_gt, fresh, backend)
        if backend == "faster_coco_eval":
            evaluator = eval_cls(coco_gt, coco_dt, "bbox", print_function=lambda *a, **k: None)
        else:
            evaluator = eval_cls(coco_gt, coco_dt, "bbox")
        evaluator.params.imgIds = ids
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return {name: float(v) for name, v in zip(STAT_NAMES, evaluator.stats[:12])}


def format_summary(stats: Mapping[str, float]) -> str:
    """The twelve figures as COCOeval's ``summarize()`` prints them."""
    lines = []
    for name, (is_ap, iou, area, max_dets) in zip(STAT_NAMES, _STAT_LINES):
        title, kind = ("Average Precision", "(AP)") if is_ap else ("Average Recall", "(AR)")
        lines.append(
            f" {title:<18} {kind} @[ IoU={iou:<9} | area={area:>6s} | maxDets={max_dets:>3d} ] = {stats[name]:0.3f}"
        )
    return "\n".join(lines)
