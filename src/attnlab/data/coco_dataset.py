"""The detection dataset over a cleaned COCO split: one image and its targets per item.

Items are read from the split's index arrays (memory maps) per item, so DataLoader workers share
them; the batch format is documented in :mod:`attnlab.data.coco`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch import Tensor
from torch.utils.data import Dataset
from torchvision import tv_tensors

from attnlab.data.coco_split import CocoSplit, ImageRecord
from attnlab.errors import DataError

__all__ = ["CocoDetectionDataset", "load_rgb"]


def load_rgb(path: str, expected_size: tuple[int, int] | None = None) -> Image.Image:
    """Decode an image as RGB; raise :class:`DataError` naming ``path`` if it cannot be read.

    ``expected_size`` = (width, height) from the annotation file: a mismatch means the boxes do
    not fit this file (e.g. an image re-saved with another size), which is an error, not a guess.
    """
    try:
        with Image.open(path) as im:
            rgb = im.convert("RGB")  # forces the full decode here, inside the try
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
        raise DataError(f"image {path} cannot be read: {e}") from e
    if expected_size is not None and rgb.size != tuple(expected_size):
        raise DataError(
            f"image {path} is {rgb.size[0]}x{rgb.size[1]} pixels but its annotation file says "
            f"{expected_size[0]}x{expected_size[1]}; its boxes would not fit"
        )
    return rgb


class CocoDetectionDataset(Dataset):
    """Images ``indices`` of one cleaned split with their targets, transformed (see module docstring).

    Items are ``(image FloatTensor (3, H, W) in [0, 1], target dict)``. Everything is read from the
    split's index arrays (memory maps) per item, so DataLoader workers share them.
    """

    def __init__(self, split: CocoSplit, indices: Sequence[int] | np.ndarray | None, transforms: Any) -> None:
        self.split = split
        self.indices = np.arange(len(split)) if indices is None else np.asarray(indices, dtype=np.int64)
        self.transforms = transforms

    def __len__(self) -> int:
        return len(self.indices)

    def record(self, index: int) -> ImageRecord:
        """The image behind item ``index`` with its training targets (original pixels)."""
        return self.split.record(int(self.indices[index]))

    def file_names(self) -> list[str]:
        return [self.split.file_name(int(i)) for i in self.indices]

    def __getitem__(self, index: int) -> tuple[Tensor, dict[str, Any]]:
        rec = self.record(index)
        image = load_rgb(rec.path, (rec.width, rec.height))
        target = {
            "boxes": tv_tensors.BoundingBoxes(
                torch.from_numpy(rec.boxes), format="XYXY", canvas_size=(rec.height, rec.width)
            ),
            "labels": torch.from_numpy(rec.labels),
        }
        image, target = self.transforms(image, target)
        height, width = int(image.shape[-2]), int(image.shape[-1])
        out = {
            # Plain tensors: tv_tensor subclasses would carry metadata into the model for nothing.
            "boxes": target["boxes"].as_subclass(Tensor).to(torch.float32).reshape(-1, 4),
            "labels": target["labels"].as_subclass(Tensor).to(torch.int64),
            "image_id": rec.image_id,
            "orig_size": (rec.height, rec.width),
            "size": (height, width),
            "scale": (height / rec.height, width / rec.width),
            "hflip": bool(target.get("hflip", False)),
        }
        return image.as_subclass(Tensor), out
