"""Loading, validating and cleaning COCO annotation files; id remapping and the label space.

Real COCO-format files are messy. What this module does about it, and why:

* **Ids.** Image and annotation ids may start at 0 (Roboflow exports do). pycocotools' COCOeval
  uses annotation id 0 to mean "unmatched", so a ground-truth box with id 0 can never count as
  found and AP drops silently. Every split is therefore re-indexed: images get ids 1..M in file
  order, kept ground-truth annotations 1..K. ``CocoSplit.to_dataset_image_id`` maps back.
* **Label space.** Built once, from the TRAIN annotation file only, and used for every split, so
  that the label space is identical across splits: the categories of the train file that at
  least one train annotation uses, sorted by dataset category id, become labels 1..C (0 is the
  detector's background). An unused category (e.g. Roboflow's id-0 supercategory "objects") is
  dropped. Val/test annotations of a category outside that space are dropped with a warning
  (the model cannot predict it). A category id whose name differs between files is an error.
* **Boxes.** ``bbox`` is ``[x, y, w, h]`` in original pixels. Training targets drop crowd boxes
  and boxes with w or h <= 1 px after clipping to the image; the rest are clipped. The
  evaluation ground truth keeps crowd boxes (``iscrowd=1``, which COCOeval ignores when matching,
  as COCO does), clips boxes to the image, drops only boxes with no area left inside the image
  (they can never be matched), and keeps ``area`` from the file (w*h of the clipped box when
  absent), so COCO's small/medium/large ranges mean what the dataset says.
* **Images.** An image with no usable box is skipped for training and kept for evaluation
  (detections on it are false positives). Every image file must exist (checked at load time,
  cheaply); unreadable files raise :class:`DataError` when loaded.

Every problem with the input raises :class:`attnlab.data.errors.DataError` naming the file.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from attnlab.data.errors import DataError

log = logging.getLogger(__name__)

__all__ = [
    "DataError",
    "LabelSpace",
    "ImageRecord",
    "CocoSplit",
    "load_annotation_file",
    "validate_coco_dict",
    "build_label_space",
    "build_split",
    "coco_from_dict",
]

_MAX_LISTED = 5  # how many offending ids/paths an error message lists before "... and N more"


def _listing(items: list[Any]) -> str:
    shown = ", ".join(str(i) for i in items[:_MAX_LISTED])
    more = len(items) - _MAX_LISTED
    return shown + (f", ... and {more} more" if more > 0 else "")


# ------------------------------------------------------------------------------ raw JSON files


def load_annotation_file(path: str | os.PathLike[str], config_key: str | None = None) -> dict[str, Any]:
    """Read and validate one COCO annotation JSON; raise :class:`DataError` naming the file.

    ``config_key`` (e.g. ``data.splits.val.annotations``) is named in the missing-file message.
    """
    path = Path(path)
    hint = f" (set {config_key}, relative to data.root)" if config_key else ""
    if not path.is_file():
        what = "is a folder, not a file" if path.is_dir() else "does not exist"
        raise DataError(f"COCO annotation file {path} {what}{hint}")
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except json.JSONDecodeError as e:
        raise DataError(
            f"COCO annotation file {path} is not valid JSON: {e.msg} at line {e.lineno} column {e.colno} (char {e.pos})"
        ) from e
    except UnicodeDecodeError as e:
        raise DataError(f"COCO annotation file {path} is not UTF-8 text: {e}") from e
    except OSError as e:
        raise DataError(f"COCO annotation file {path} cannot be read: {e}") from e
    validate_coco_dict(data, path)
    return data


def _is_id(value: Any) -> bool:
    return isinstance(value, (int, str)) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def validate_coco_dict(data: Any, path: str | os.PathLike[str]) -> None:
    """Check the structure a detection file needs; raise :class:`DataError` naming ``path``.

    Checks: top level is an object with ``images``, ``annotations`` and ``categories`` lists;
    images have a unique ``id`` and a ``file_name`` (``width``/``height`` positive when given);
    categories have a unique ``id`` and a ``name``; annotations have an ``image_id`` present in
    ``images``, a ``category_id`` present in ``categories`` and a ``bbox`` of 4 finite numbers.
    """
    if not isinstance(data, dict):
        raise DataError(f"COCO annotation file {path}: top level must be a JSON object, got {type(data).__name__}")
    for key in ("images", "annotations", "categories"):
        if not isinstance(data.get(key), list):
            got = "missing" if key not in data else f"a {type(data[key]).__name__}"
            raise DataError(f"COCO annotation file {path}: '{key}' must be a list, but it is {got}")

    image_ids: set[Any] = set()
    for i, img in enumerate(data["images"]):
        if not isinstance(img, dict) or not _is_id(img.get("id")) or not isinstance(img.get("file_name"), str):
            raise DataError(f"COCO annotation file {path}: images[{i}] needs an 'id' (integer) and a 'file_name', got {img!r:.200}")
        if img["id"] in image_ids:
            raise DataError(f"COCO annotation file {path}: image id {img['id']!r} appears more than once in 'images'")
        for dim in ("width", "height"):
            if dim in img and not (_is_number(img[dim]) and img[dim] > 0):
                raise DataError(f"COCO annotation file {path}: image id {img['id']!r} has invalid {dim} {img[dim]!r}")
        image_ids.add(img["id"])

    category_ids: set[Any] = set()
    for i, cat in enumerate(data["categories"]):
        if not isinstance(cat, dict) or not _is_id(cat.get("id")) or "name" not in cat:
            raise DataError(f"COCO annotation file {path}: categories[{i}] needs an 'id' and a 'name', got {cat!r:.200}")
        if cat["id"] in category_ids:
            raise DataError(f"COCO annotation file {path}: category id {cat['id']!r} appears more than once in 'categories'")
        category_ids.add(cat["id"])

    missing_image: list[str] = []
    missing_category: list[str] = []
    for i, ann in enumerate(data["annotations"]):
        ann_name = f"annotation id {ann.get('id')!r}" if isinstance(ann, dict) and "id" in ann else f"annotations[{i}]"
        if not isinstance(ann, dict):
            raise DataError(f"COCO annotation file {path}: {ann_name} is not an object")
        bbox = ann.get("bbox")
        if not (isinstance(bbox, (list, tuple)) and len(bbox) == 4 and all(_is_number(v) for v in bbox)):
            raise DataError(f"COCO annotation file {path}: {ann_name} needs 'bbox' = [x, y, w, h] (4 finite numbers), got {bbox!r}")
        if not _is_id(ann.get("image_id")) or ann["image_id"] not in image_ids:
            missing_image.append(f"{ann_name} -> image id {ann.get('image_id')!r}")
        if not _is_id(ann.get("category_id")) or ann["category_id"] not in category_ids:
            missing_category.append(f"{ann_name} -> category id {ann.get('category_id')!r}")
    if missing_image:
        raise DataError(
            f"COCO annotation file {path}: {len(missing_image)} annotation(s) point to an image id that is not in "
            f"'images': {_listing(missing_image)}"
        )
    if missing_category:
        raise DataError(
            f"COCO annotation file {path}: {len(missing_category)} annotation(s) point to a category id that is not in "
            f"'categories': {_listing(missing_category)}"
        )


# ------------------------------------------------------------------------------ label space


@dataclass(frozen=True)
class LabelSpace:
    """Contiguous labels 1..C <-> dataset category ids (label 0 is the detector's background).

    ``category_ids[i]`` and ``names[i]`` belong to label ``i + 1``.
    """

    category_ids: tuple[Any, ...]
    names: tuple[str, ...]
    supercategories: tuple[str, ...]

    @property
    def num_classes(self) -> int:
        """C + 1: the object classes plus background."""
        return len(self.category_ids) + 1

    @property
    def to_dataset_category_id(self) -> dict[int, Any]:
        """label (1..C) -> dataset category id."""
        return {i + 1: c for i, c in enumerate(self.category_ids)}

    @property
    def label_of(self) -> dict[Any, int]:
        """dataset category id -> label (1..C)."""
        return {c: i + 1 for i, c in enumerate(self.category_ids)}

    def coco_categories(self) -> list[dict[str, Any]]:
        """The ``categories`` list of the cleaned ground truth (dataset ids, label-space only)."""
        return [
            {"id": c, "name": n, "supercategory": s}
            for c, n, s in zip(self.category_ids, self.names, self.supercategories)
        ]


def build_label_space(train_data: dict[str, Any], path: str | os.PathLike[str]) -> LabelSpace:
    """The label space from the TRAIN file: its categories used by >= 1 train annotation.

    Sorted by dataset category id (ints before strings), so labels do not depend on the order of
    the file's category list. Raises :class:`DataError` when no category is used.
    """
    used = {ann["category_id"] for ann in train_data["annotations"]}
    cats = [c for c in train_data["categories"] if c["id"] in used]
    if not cats:
        raise DataError(f"COCO annotation file {path} (the train split) has no annotations, so there are no classes to learn")
    cats.sort(key=lambda c: (isinstance(c["id"], str), c["id"]))
    unused = [f"{c['id']!r} ({c['name']})" for c in train_data["categories"] if c["id"] not in used]
    if unused:
        log.info("categories with no train annotation, left out of the label space: %s", _listing(unused))
    return LabelSpace(
        category_ids=tuple(c["id"] for c in cats),
        names=tuple(str(c["name"]) for c in cats),
        supercategories=tuple(str(c.get("supercategory", "")) for c in cats),
    )


def check_categories_consistent(data: dict[str, Any], path: str | os.PathLike[str], labels: LabelSpace) -> None:
    """A category id must name the same class in every split's file."""
    names = dict(zip(labels.category_ids, labels.names))
    for cat in data["categories"]:
        if cat["id"] in names and str(cat["name"]) != names[cat["id"]]:
            raise DataError(
                f"COCO annotation file {path}: category id {cat['id']!r} is named {cat['name']!r} here but "
                f"{names[cat['id']]!r} in the train file; the splits must share one category list"
            )


# ------------------------------------------------------------------------------ cleaned splits


@dataclass
class ImageRecord:
    """One image of a split, with its training targets in ORIGINAL pixels.

    boxes: float32 (N, 4) xyxy, clipped to the image, crowd and <= 1 px boxes removed.
    labels: int64 (N,) contiguous labels 1..C.
    """

    image_id: int  # remapped id (1..M), the one used in the cleaned ground truth
    dataset_id: Any  # the id in the annotation file
    file_name: str
    path: str
    width: int
    height: int
    boxes: np.ndarray
    labels: np.ndarray


@dataclass
class CocoSplit:
    """A cleaned split: images with training targets, and the ground truth for evaluation."""

    name: str
    annotation_file: str
    images_dir: str
    records: list[ImageRecord]
    gt: dict[str, Any]  # cleaned COCO dict: remapped ids, label-space categories, crowd kept
    to_dataset_image_id: dict[int, Any]  # remapped image id -> id in the annotation file
    stats: dict[str, int] = field(default_factory=dict)
    _coco: Any = field(default=None, repr=False)

    def train_records(self) -> list[ImageRecord]:
        """Images with at least one training box (images without boxes are not trained on)."""
        return [r for r in self.records if len(r.boxes) > 0]

    def gt_coco(self) -> Any:
        """The cleaned ground truth as a ``pycocotools.coco.COCO`` object (built once)."""
        if self._coco is None:
            self._coco = coco_from_dict(self.gt)
        return self._coco


def coco_from_dict(data: dict[str, Any]) -> Any:
    """A ``pycocotools.coco.COCO`` indexing ``data`` (no file round trip; its prints silenced)."""
    from pycocotools.coco import COCO

    coco = COCO()
    coco.dataset = data
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


def _image_size_from_header(path: str) -> tuple[int, int]:
    """(width, height) read from the image header only (PIL decodes lazily)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            return int(im.width), int(im.height)
    except (OSError, UnidentifiedImageError, ValueError) as e:
        raise DataError(f"image {path} cannot be read: {e}") from e


def build_split(
    name: str,
    data: dict[str, Any],
    annotation_file: str | os.PathLike[str],
    images_dir: str | os.PathLike[str],
    labels: LabelSpace,
    images_key: str | None = None,
) -> CocoSplit:
    """Clean one validated annotation dict into a :class:`CocoSplit` (see module docstring).

    Checks that ``images_dir`` and every listed image file exist (``images_key``, e.g.
    ``data.splits.val.images``, is named in the message).
    """
    annotation_file = str(annotation_file)
    images_dir = Path(images_dir)
    hint = f" (set {images_key}, relative to data.root)" if images_key else ""
    if not images_dir.is_dir():
        raise DataError(f"images folder {images_dir} for the {name} split of {annotation_file} does not exist{hint}")
    check_categories_consistent(data, annotation_file, labels)

    # Every listed image must exist: a cheap stat per file now beats a crash mid-epoch.
    paths = [os.path.join(images_dir, img["file_name"]) for img in data["images"]]
    missing = [p for p in paths if not os.path.isfile(p)]
    if missing:
        raise DataError(
            f"{len(missing)} image(s) listed in {annotation_file} are missing from {images_dir}{hint}: {_listing(missing)}"
        )

    label_of = labels.label_of
    new_id_of: dict[Any, int] = {}
    sizes: dict[Any, tuple[int, int]] = {}
    gt_images = []
    for k, (img, path) in enumerate(zip(data["images"], paths)):
        new_id = k + 1
        new_id_of[img["id"]] = new_id
        if "width" in img and "height" in img:
            w, h = int(round(img["width"])), int(round(img["height"]))
        else:  # some exports omit the size; boxes need it for clipping
            w, h = _image_size_from_header(path)
        sizes[img["id"]] = (w, h)
        gt_images.append({"id": new_id, "file_name": img["file_name"], "width": w, "height": h, "dataset_id": img["id"]})

    stats = {"images": len(gt_images), "annotations_in_file": len(data["annotations"]), "crowd": 0,
             "degenerate_dropped": 0, "empty_dropped": 0, "clipped": 0, "unknown_category_dropped": 0}
    gt_anns: list[dict[str, Any]] = []
    train_boxes: dict[Any, list[list[float]]] = {img["id"]: [] for img in data["images"]}
    train_labels: dict[Any, list[int]] = {img["id"]: [] for img in data["images"]}
    for ann in data["annotations"]:
        label = label_of.get(ann["category_id"])
        if label is None:
            stats["unknown_category_dropped"] += 1
            continue
        w_img, h_img = sizes[ann["image_id"]]
        x, y, w, h = (float(v) for v in ann["bbox"])
        x0, y0 = max(x, 0.0), max(y, 0.0)
        x1, y1 = min(x + w, float(w_img)), min(y + h, float(h_img))
        if (x0, y0, x1, y1) != (x, y, x + w, y + h):
            stats["clipped"] += 1
        crowd = int(bool(ann.get("iscrowd", 0)))
        stats["crowd"] += crowd
        if x1 <= x0 or y1 <= y0:  # nothing inside the image: cannot be matched, cannot be learnt
            stats["empty_dropped"] += 1
            continue
        area = ann.get("area")
        gt_anns.append(
            {
                "id": len(gt_anns) + 1,
                "image_id": new_id_of[ann["image_id"]],
                "category_id": ann["category_id"],
                "bbox": [x0, y0, x1 - x0, y1 - y0],
                "area": float(area) if _is_number(area) else (x1 - x0) * (y1 - y0),
                "iscrowd": crowd,
                "dataset_id": ann.get("id"),
            }
        )
        if crowd:
            continue
        if x1 - x0 <= 1.0 or y1 - y0 <= 1.0:
            stats["degenerate_dropped"] += 1
            continue
        train_boxes[ann["image_id"]].append([x0, y0, x1, y1])
        train_labels[ann["image_id"]].append(label)

    records = []
    for img, path, gt_img in zip(data["images"], paths, gt_images):
        boxes = np.asarray(train_boxes[img["id"]], dtype=np.float32).reshape(-1, 4)
        records.append(
            ImageRecord(
                image_id=gt_img["id"], dataset_id=img["id"], file_name=img["file_name"], path=path,
                width=gt_img["width"], height=gt_img["height"], boxes=boxes,
                labels=np.asarray(train_labels[img["id"]], dtype=np.int64),
            )
        )
    stats["gt_annotations"] = len(gt_anns)
    stats["train_boxes"] = sum(len(r.boxes) for r in records)
    stats["images_without_boxes"] = sum(1 for r in records if len(r.boxes) == 0)
    if stats["unknown_category_dropped"]:
        log.warning(
            "%s: %d annotation(s) of categories absent from the train label space were dropped",
            annotation_file, stats["unknown_category_dropped"],
        )
    log.info("%s split from %s: %s", name, annotation_file, stats)

    gt = {
        "info": data.get("info", {}) if isinstance(data.get("info"), dict) else {},
        "images": gt_images,
        "annotations": gt_anns,
        "categories": labels.coco_categories(),
    }
    return CocoSplit(
        name=name,
        annotation_file=annotation_file,
        images_dir=str(images_dir),
        records=records,
        gt=gt,
        to_dataset_image_id={g["id"]: g["dataset_id"] for g in gt_images},
        stats=stats,
    )
