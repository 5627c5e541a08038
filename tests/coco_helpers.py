"""Small real COCO-layout data sets written under a test's tmp_path (real JPEGs, real JSON)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
TINY = {"n_train": 10, "n_val": 4, "n_test": 4, "image_size": 64, "min_object_size": 12, "max_object_size": 30}
DEFAULT_SPLITS = {
    s: {"images": f"images/{s}", "annotations": f"annotations/instances_{s}.json"} for s in ("train", "val", "test")
}
ROBOFLOW_SPLITS = {
    "train": {"images": "train", "annotations": "train/_annotations.coco.json"},
    "val": {"images": "valid", "annotations": "valid/_annotations.coco.json"},
    "test": {"images": "test", "annotations": "test/_annotations.coco.json"},
}


def write_image(path: Path, width: int, height: int, seed: int = 0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 255, (height, width, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)


def write_split(
    root: Path, images_dir: str, ann_file: str, images: list[dict], anns: list[dict], cats: list[dict]
) -> Path:
    for k, img in enumerate(images):
        write_image(root / images_dir / img["file_name"], img["width"], img["height"], seed=k)
    path = root / ann_file
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"images": images, "annotations": anns, "categories": cats}))
    return path


def ann(aid: int, image_id: int, cat: int, bbox: list[float], iscrowd: int = 0, area: float | None = None) -> dict:
    return {
        "id": aid,
        "image_id": image_id,
        "category_id": cat,
        "bbox": bbox,
        "iscrowd": iscrowd,
        "area": bbox[2] * bbox[3] if area is None else area,
    }


# Roboflow-style categories: id 0 is the unused supercategory.
RF_CATS = [
    {"id": 0, "name": "objects", "supercategory": "none"},
    {"id": 1, "name": "cat", "supercategory": "objects"},
    {"id": 2, "name": "dog", "supercategory": "objects"},
]


def make_roboflow_export(root: Path) -> None:
    """Per-split folders, ids from 0, an unused category 0, and the usual messy boxes."""
    train_images = [
        {"id": 0, "file_name": "a.jpg", "width": 80, "height": 60},
        {"id": 1, "file_name": "b.jpg", "width": 80, "height": 60},
        {"id": 2, "file_name": "empty.jpg", "width": 80, "height": 60},  # no boxes: not trained on
        {"id": 3, "file_name": "crowd_only.jpg", "width": 80, "height": 60},
    ]
    train_anns = [
        ann(0, 0, 1, [10, 10, 20, 20]),
        ann(1, 0, 2, [70, 40, 30, 30]),  # partly outside -> clipped to [70, 40, 80, 60]
        ann(2, 1, 2, [5, 5, 0, 10]),  # zero width: dropped
        ann(3, 1, 1, [30, 30, 1, 15]),  # 1 px wide: dropped for training
        ann(4, 1, 1, [40, 5, 25, 30]),
        ann(5, 3, 2, [0, 0, 50, 50], iscrowd=1),  # crowd: not a training target
    ]
    write_split(root, "train", "train/_annotations.coco.json", train_images, train_anns, RF_CATS)
    val_images = [
        {"id": 0, "file_name": "v0.jpg", "width": 80, "height": 60},
        {"id": 1, "file_name": "v1.jpg", "width": 80, "height": 60},
        {"id": 2, "file_name": "v_empty.jpg", "width": 80, "height": 60},
    ]
    val_anns = [
        ann(0, 0, 1, [10, 10, 30, 30]),  # annotation id 0: COCOeval would never match it unremapped
        ann(1, 0, 2, [-5, 20, 25, 20], area=123.0),  # partly outside, area from the file kept
        ann(2, 1, 2, [20, 10, 40, 40]),
        ann(3, 1, 1, [0, 0, 80, 60], iscrowd=1),
    ]
    write_split(root, "valid", "valid/_annotations.coco.json", val_images, val_anns, RF_CATS)
    test_images = [{"id": 0, "file_name": "t0.jpg", "width": 80, "height": 60}]
    write_split(root, "test", "test/_annotations.coco.json", test_images, [ann(0, 0, 2, [1, 2, 30, 40])], RF_CATS)
