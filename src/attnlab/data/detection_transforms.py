"""Detection transforms (torchvision.transforms.v2 + tv_tensors), batch collation, and the inverse
mapping of boxes back to original image pixels.

Pipeline, applied to ``(PIL image, {"boxes": BoundingBoxes XYXY, "labels": int64})``:

    ToImage -> Resize -> [train: horizontal flip with probability p] -> ClampBoundingBoxes
            -> SanitizeBoundingBoxes (drops boxes < 1 px and their labels) -> ToDtype(float32, scale=True)

Resize modes (``resize``):
    "longest": the longer side becomes ``image_size``, aspect ratio kept (no padding);
    "square":  the image becomes ``image_size x image_size`` (aspect ratio not kept);
    ``image_size=None`` keeps the original size.

Boxes follow every step, so targets are always in the transformed image's pixels. The scale is
recorded per sample as ``target["scale"] = (sy, sx) = (H / H0, W / W0)`` and the flip as
``target["hflip"]``; :func:`boxes_to_original` undoes both.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor
from torchvision.transforms import v2

RESIZE_MODES = ("longest", "square")


class RandomHorizontalFlipWithFlag(v2.Transform):
    """Flip image and boxes with probability ``p`` and record it as ``target["hflip"]`` (bool).

    torchvision's ``RandomHorizontalFlip`` does not say whether it flipped; the flag lets
    :func:`boxes_to_original` (and anyone drawing training samples) undo it exactly.
    """

    def __init__(self, p: float = 0.5) -> None:
        super().__init__()
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"hflip probability must be in [0, 1], got {p}")
        self.p = p
        self._flip = v2.RandomHorizontalFlip(p=1.0)

    def forward(self, image: Any, target: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
        flipped = self.p > 0 and bool(torch.rand(()) < self.p)
        if flipped:
            image, target = self._flip(image, target)
        target = dict(target)
        target["hflip"] = flipped
        return image, target

    def extra_repr(self) -> str:
        return f"p={self.p}"


def build_detection_transforms(
    train: bool, image_size: int | None = 128, resize: str = "longest", hflip_prob: float = 0.5
) -> v2.Compose:
    """The v2 pipeline for one split (see module docstring). ``train`` enables the random flip."""
    if resize not in RESIZE_MODES:
        raise ValueError(f"resize must be one of {RESIZE_MODES}, got {resize!r}")
    steps: list[Any] = [v2.ToImage()]
    if image_size is not None:
        if int(image_size) < 8:
            raise ValueError(f"image_size must be >= 8 or null, got {image_size}")
        if resize == "longest":
            steps.append(v2.Resize(size=None, max_size=int(image_size), antialias=True))
        else:
            steps.append(v2.Resize(size=(int(image_size), int(image_size)), antialias=True))
    steps.append(RandomHorizontalFlipWithFlag(hflip_prob if train else 0.0))
    steps += [
        v2.ClampBoundingBoxes(),
        # Drops boxes that became smaller than 1 px and, through the "labels" key, their labels.
        v2.SanitizeBoundingBoxes(min_size=1.0),
        v2.ToDtype(torch.float32, scale=True),
    ]
    return v2.Compose(steps)


def collate_detection(batch: Sequence[tuple[Tensor, dict[str, Any]]]) -> tuple[list[Tensor], list[dict[str, Any]]]:
    """Collate samples with different image sizes and box counts into (images, targets) lists.

    Returns ``images``: list of B FloatTensor (3, H_i, W_i) in [0, 1]; ``targets``: list of B dicts
    (see :class:`attnlab.data.coco.CocoDetectionDataset` for the keys).
    """
    images = [sample[0] for sample in batch]
    targets = [sample[1] for sample in batch]
    return images, targets


def boxes_to_original(boxes_xyxy: Tensor, target: Mapping[str, Any]) -> Tensor:
    """Map boxes from the transformed image's pixels back to the original image's pixels.

    boxes_xyxy: (N, 4) xyxy in the transformed image (as in ``target["boxes"]`` or a detector's
    output for that image). Undoes the flip (``target["hflip"]``, width ``target["size"][1]``),
    then divides x by ``sx`` and y by ``sy`` from ``target["scale"] = (sy, sx)``, and clamps to
    ``target["orig_size"] = (H0, W0)``. Returns a float (N, 4) xyxy tensor on the input's device.
    """
    boxes = boxes_xyxy.to(torch.float32).reshape(-1, 4).clone()
    if target.get("hflip", False):
        width = float(target["size"][1])
        boxes[:, [0, 2]] = width - boxes[:, [2, 0]]
    sy, sx = (float(s) for s in target["scale"])
    boxes[:, [0, 2]] /= sx
    boxes[:, [1, 3]] /= sy
    h0, w0 = (float(s) for s in target["orig_size"])
    boxes[:, [0, 2]] = boxes[:, [0, 2]].clamp(0.0, w0)
    boxes[:, [1, 3]] = boxes[:, [1, 3]].clamp(0.0, h0)
    return boxes
