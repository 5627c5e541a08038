"""W&B media for detection: boxes on images and spatial attention maps over them.

Called through :meth:`attnlab.tasks.detection.DetectionTask.log_media` (by the MediaLogger
callback, rank 0, after validation). Uses the datamodule's ``fixed_val_samples(n)``, the same
images every epoch and every run, so media compare across epochs and runs:

* ``val/predictions``: each image with two box groups, ``predictions`` (score >= threshold,
  caption ``name score``) and ``ground_truth``, class labels by name;
* ``val/attention``: for each image, the attention weights of one query position (the centre of
  the image's largest ground-truth box, or the image centre) over every position of each
  attention level, upsampled and drawn over the image (matplotlib, no pyplot state).

Nothing here may stop a run: any failure is logged as a warning.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

log = logging.getLogger(__name__)

__all__ = ["attention_figure", "box_data", "log_detection_media", "pad_to", "query_position", "to_uint8_image"]


def to_uint8_image(image: Tensor) -> np.ndarray:
    """``(3, H, W)`` float in [0, 1] -> ``(H, W, 3)`` uint8."""
    return (image.detach().float().clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).cpu().numpy()


def pad_to(pixels: np.ndarray, height: int, width: int, fill: int = 128) -> np.ndarray:
    """``(h, w, 3)`` uint8 padded at the bottom and right to ``(height, width, 3)`` with grey: pixel
    box coordinates stay valid, and W&B shows a list of images only when they share one size."""
    out = np.full((height, width, 3), fill, dtype=np.uint8)
    out[: pixels.shape[0], : pixels.shape[1]] = pixels
    return out


def box_data(
    boxes: Tensor, labels: Tensor, class_names: Sequence[str], scores: Tensor | None = None
) -> list[dict[str, Any]]:
    """W&B ``box_data`` entries (pixel domain) for ``boxes (N, 4)`` xyxy, ``labels (N,)`` 1..C."""
    entries = []
    score_list = scores.tolist() if scores is not None else [None] * len(labels)
    for (x0, y0, x1, y1), label, score in zip(boxes.tolist(), labels.tolist(), score_list):
        name = class_names[label - 1] if 1 <= label <= len(class_names) else str(label)
        entry: dict[str, Any] = {
            "position": {"minX": x0, "minY": y0, "maxX": x1, "maxY": y1},
            "domain": "pixel",
            "class_id": int(label),
            "box_caption": name if score is None else f"{name} {score:.2f}",
        }
        if score is not None:
            entry["scores"] = {"score": float(score)}
        entries.append(entry)
    return entries


def query_position(image: Tensor, boxes: Tensor) -> tuple[float, float]:
    """``(y, x)`` in pixels: the centre of the largest box, or of the image when there is none."""
    if len(boxes):
        areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
        x0, y0, x1, y1 = boxes[int(areas.argmax())].tolist()
        return (y0 + y1) / 2, (x0 + x1) / 2
    return image.shape[-2] / 2, image.shape[-1] / 2


def attention_figure(image: np.ndarray, maps: Sequence[Any], title: str = "") -> np.ndarray:
    """Draw each :class:`~attnlab.models.detector.AttentionMap` over ``image (H, W, 3)``; returns RGB ``(h, w, 3)``.

    The map covers ``extent`` pixels (the padded input), so it is drawn with that extent and the
    axes are cut to the image; the query position is marked with a cross.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    height, width = image.shape[:2]
    fig = Figure(figsize=(3.2 * max(1, len(maps)), 3.4), dpi=80)
    FigureCanvasAgg(fig)
    for i, amap in enumerate(maps):
        ax = fig.add_subplot(1, max(1, len(maps)), i + 1)
        ax.imshow(image)
        ext_h, ext_w = amap.extent
        weights = amap.weights.float().numpy()
        ax.imshow(weights, cmap="jet", alpha=0.5, extent=(0, ext_w, ext_h, 0), interpolation="bilinear")
        ax.plot([amap.query_yx[1]], [amap.query_yx[0]], marker="x", color="white", markersize=10, mew=2)
        ax.set_xlim(0, width)
        ax.set_ylim(height, 0)
        ax.set_title(f"{amap.level} ({weights.shape[0]}x{weights.shape[1]})", fontsize=9)
        ax.axis("off")
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.canvas.draw()
    rgba = np.asarray(fig.canvas.buffer_rgba())
    return rgba[..., :3].copy()


def log_detection_media(task: Any, wandb_loggers: Sequence[Any]) -> None:
    """Log box images and attention overlays of the fixed validation images to every W&B logger.

    Args:
        task: the :class:`~attnlab.tasks.detection.DetectionTask` (its ``net``, ``hparams`` and trainer).
        wandb_loggers: Lightning ``WandbLogger`` instances.
    """
    if not wandb_loggers:
        return
    try:
        _log_detection_media(task, wandb_loggers)
    except Exception as exc:  # noqa: BLE001 - media must never cost a training run
        log.warning("Detection media logging failed (training goes on): %s", exc)


def _log_detection_media(task: Any, wandb_loggers: Sequence[Any]) -> None:
    import wandb

    datamodule = getattr(task.trainer, "datamodule", None)
    if datamodule is None or not hasattr(datamodule, "fixed_val_samples"):
        log.warning("Detection media needs a datamodule with fixed_val_samples(n); skipped")
        return
    n = int(task.hparams.n_media_images)
    if n <= 0:
        return
    images, targets = datamodule.fixed_val_samples(n)
    if not images:
        return
    images = [img.to(task.device) for img in images]
    queries = [query_position(img, t["boxes"]) for img, t in zip(images, targets)]
    detections, maps = task.net.predict_with_attention(images, queries)
    names: list[str] = list(task.hparams.class_names)
    class_labels = {i + 1: name for i, name in enumerate(names)}
    thresh = float(task.hparams.media_score_thresh)

    box_images, attention_images = [], []
    height, width = max(int(img.shape[-2]) for img in images), max(int(img.shape[-1]) for img in images)
    for img, target, det, img_maps in zip(images, targets, detections, maps):
        keep = det["scores"] >= thresh
        pixels = to_uint8_image(img)
        boxes = {
            "predictions": {
                "box_data": box_data(det["boxes"][keep].cpu(), det["labels"][keep].cpu(), names,
                                     det["scores"][keep].cpu()),
                "class_labels": class_labels,
            },
            "ground_truth": {
                "box_data": box_data(target["boxes"].cpu(), target["labels"].cpu(), names),
                "class_labels": class_labels,
            },
        }
        box_images.append(wandb.Image(pad_to(pixels, height, width), boxes=boxes,
                                      caption=f"image {target['image_id']}"))
        if img_maps:
            figure = attention_figure(pixels, img_maps, title=f"image {target['image_id']}: where position x attends")
            attention_images.append(wandb.Image(figure, caption=f"image {target['image_id']}"))

    payload: dict[str, Any] = {"val/predictions": box_images}
    if attention_images:
        payload["val/attention"] = attention_images
    for logger in wandb_loggers:
        logger.log_metrics(payload, step=task.global_step)
