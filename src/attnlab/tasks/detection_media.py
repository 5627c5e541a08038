"""W&B media for detection: boxes on images and spatial attention maps over them.

Pure drawing: :meth:`attnlab.tasks.detection.DetectionTask.media` runs the detector on the
datamodule's fixed validation images and hands the results here; what goes wrong is caught once,
in :meth:`attnlab.tasks.base.TaskModule.log_media`.

* ``val/predictions``: each image with two box groups, ``predictions`` (score >= threshold,
  caption ``name score``) and ``ground_truth``, class labels by name;
* ``val/attention``: for each image, the attention weights of one query position (the centre of
  the image's largest ground-truth box, or the image centre) over every position of each
  attention level, upsampled and drawn over the image.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor

from attnlab.tasks.media import figure_pixels, new_figure

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["attention_figure", "box_data", "detection_images", "pad_to", "query_position", "to_uint8_image"]


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


def attention_figure(image: np.ndarray, maps: Sequence[Any], title: str = "") -> Figure:
    """Draw each :class:`~attnlab.models.detector.AttentionMap` over ``image (H, W, 3)``.

    The map covers ``extent`` pixels (the padded input), so it is drawn with that extent and the
    axes are cut to the image; the query position is marked with a cross.
    """
    height, width = image.shape[:2]
    fig = new_figure(3.2 * max(1, len(maps)), 3.4, dpi=80)
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
    return fig


def detection_images(
    images: Sequence[Tensor],
    targets: Sequence[Mapping[str, Any]],
    detections: Sequence[Mapping[str, Tensor]],
    maps: Sequence[Sequence[Any]],
    class_names: Sequence[str],
    score_thresh: float,
) -> dict[str, list[Any]]:
    """``{"val/predictions": [wandb.Image], "val/attention": [wandb.Image]}`` (the latter when there are maps).

    Args:
        images: ``(3, H, W)`` images in [0, 1]; targets: their ground truth (``boxes``, ``labels``, ``image_id``).
        detections, maps: what ``AttentionDetector.predict_with_attention`` returned for them.
        class_names: label ``l`` is ``class_names[l - 1]``; score_thresh: weaker predictions are not drawn.
    """
    import wandb

    class_labels = {i + 1: name for i, name in enumerate(class_names)}
    box_images, attention_images = [], []
    height, width = max(int(img.shape[-2]) for img in images), max(int(img.shape[-1]) for img in images)
    for img, target, det, img_maps in zip(images, targets, detections, maps):
        keep = det["scores"] >= score_thresh
        pixels = to_uint8_image(img)
        predicted = box_data(
            det["boxes"][keep].cpu(), det["labels"][keep].cpu(), class_names, det["scores"][keep].cpu()
        )
        boxes = {
            "predictions": {"box_data": predicted, "class_labels": class_labels},
            "ground_truth": {
                "box_data": box_data(target["boxes"].cpu(), target["labels"].cpu(), class_names),
                "class_labels": class_labels,
            },
        }
        caption = f"image {target['image_id']}"
        box_images.append(wandb.Image(pad_to(pixels, height, width), boxes=boxes, caption=caption))
        if img_maps:
            figure = attention_figure(pixels, img_maps, title=f"{caption}: where position x attends")
            attention_images.append(wandb.Image(figure_pixels(figure), caption=caption))
    payload: dict[str, list[Any]] = {"val/predictions": box_images}
    if attention_images:
        payload["val/attention"] = attention_images
    return payload
