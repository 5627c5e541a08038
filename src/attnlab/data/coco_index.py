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
  (detections on it are false positives). ``file_name`` must stay inside the split's images
  folder (no absolute path, no ``..``); at every setup each file must exist and resolve inside
  the folder, symlinks included (:mod:`attnlab.data.coco_files`, which also decodes every image
  when ``data.verify_images`` asks for it).
* **The index.** :func:`clean_split` turns a parsed file (:mod:`attnlab.data.coco_parse`) into
  numpy arrays, cached per content by :class:`attnlab.data.coco_split.CocoIndexCache`; training
  targets and the evaluation ground truth both come from those arrays.

Every problem with the input raises :class:`attnlab.errors.DataError` naming the file.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any

import numpy as np

from attnlab.data.coco_files import check_images_exist
from attnlab.data.coco_parse import CocoColumns, IdColumn
from attnlab.data.coco_validate import listing
from attnlab.errors import DataError

log = logging.getLogger(__name__)

__all__ = [
    "CLEANING",
    "INDEX_VERSION",
    "LabelSpace",
    "build_label_space",
    "check_categories_consistent",
    "check_file_names",
    "clean_split",
]

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


def build_label_space(train: CocoColumns) -> LabelSpace:
    """The label space from the TRAIN file: its categories used by >= 1 train annotation.

    Sorted by dataset category id (ints before strings), so labels do not depend on the order of
    the file's category list. Raises :class:`DataError` when no category is used.
    """
    used = set(train.ann_category.tolist())
    cats = [c for c in train.categories if c["id"] in used]
    if not cats:
        raise DataError(
            f"COCO annotation file {train.path} (the train split) has no annotations, so there are no classes to learn"
        )
    cats.sort(key=lambda c: (isinstance(c["id"], str), c["id"]))
    unused = [f"{c['id']!r} ({c['name']})" for c in train.categories if c["id"] not in used]
    if unused:
        log.info("categories with no train annotation, left out of the label space: %s", listing(unused))
    return LabelSpace(
        category_ids=tuple(c["id"] for c in cats),
        names=tuple(str(c["name"]) for c in cats),
        supercategories=tuple(str(c.get("supercategory", "")) for c in cats),
    )


def check_categories_consistent(columns: CocoColumns, labels: LabelSpace) -> None:
    """A category id must name the same class in every split's file."""
    names = dict(zip(labels.category_ids, labels.names))
    for cat in columns.categories:
        if cat["id"] in names and str(cat["name"]) != names[cat["id"]]:
            raise DataError(
                f"COCO annotation file {columns.path}: category id {cat['id']!r} is named {cat['name']!r} here but "
                f"{names[cat['id']]!r} in the train file; the splits must share one category list"
            )


# ------------------------------------------------------------------------------ cleaned splits

#: Bumped whenever the cleaning below or the arrays it writes change: cached indexes rebuild.
INDEX_VERSION = 1
#: The cleaning settings, part of every cached index's key.
CLEANING = {"min_train_box_px": 1.0, "clip_to_image": True, "drop_crowd_from_training": True}


def check_file_names(columns: CocoColumns, images_dir: str | os.PathLike[str], images_key: str | None) -> None:
    """Every ``file_name`` must be a relative path that stays inside the images folder.

    An absolute path would replace the folder and ``..`` would climb out of it: either would read
    (and upload as media) files the data set does not declare. Symlinks are checked where the
    files are, at every setup (:mod:`attnlab.data.coco_files`).
    """
    bad = []
    ids = columns.image_ids.tolist()
    for i, name in enumerate(columns.file_names):
        if not (name.startswith(("/", "\\")) or ".." in name or os.path.isabs(name)):
            continue  # cannot leave the folder: the usual case, decided without normpath
        norm = os.path.normpath(name)
        if os.path.isabs(name) or norm == os.pardir or norm.startswith(os.pardir + os.sep):
            bad.append(f"image id {ids[i]!r}: file_name {name!r}")
    if bad:
        where = f" ({images_key})" if images_key else ""
        raise DataError(
            f"COCO annotation file {columns.path}: {len(bad)} image(s) have a file_name outside the images folder "
            f"{images_dir}{where}: {listing(bad)}. file_name must be a path relative to that folder, without '..'"
        )


def _image_sizes(columns: CocoColumns, images_dir: str, images_key: str | None) -> tuple[np.ndarray, np.ndarray]:
    """(width, height) int32 per image: the file's, or read from the image header where it has none."""
    widths, heights = columns.widths.copy(), columns.heights.copy()
    missing = np.flatnonzero(np.isnan(widths) | np.isnan(heights))
    if len(missing):  # some exports omit the size; boxes need it for clipping
        paths = [os.path.join(images_dir, columns.file_names[i]) for i in missing]
        check_images_exist(paths, columns.path, images_dir, images_key)
        for i, path in zip(missing, paths):
            widths[i], heights[i] = _image_size_from_header(path)
    return np.round(widths).astype(np.int32), np.round(heights).astype(np.int32)


def _string_column(values: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """UTF-8 bytes of all strings in one buffer + int64 offsets (len + 1)."""
    encoded = [v.encode("utf-8") for v in values]
    offsets = np.zeros(len(encoded) + 1, dtype=np.int64)
    np.cumsum([len(e) for e in encoded], out=offsets[1:])
    return np.frombuffer(b"".join(encoded), dtype=np.uint8), offsets


def _id_arrays(prefix: str, ids: IdColumn, keep: np.ndarray | None = None) -> tuple[dict[str, np.ndarray], Any]:
    """Dataset ids as an int64 array when they are integers, else a JSON list for the meta."""
    if isinstance(ids.values, np.ndarray):  # ids.is_int
        values = ids.values if keep is None else ids.values[keep]
        return {prefix: values}, None
    values = ids.tolist()
    return {}, values if keep is None else [values[i] for i in np.flatnonzero(keep)]


def clean_split(
    columns: CocoColumns, images_dir: str | os.PathLike[str], labels: LabelSpace, images_key: str | None = None
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Clean one validated file into the arrays of a cached index (see the module docstring).

    Returns ``(arrays, meta)``. Per image (M, file order; remapped id = position + 1):
    ``file_name_buf``/``file_name_off``, ``width``/``height``, ``image_dataset_id``; training
    targets grouped by image: ``train_off`` (M + 1), ``train_boxes`` float32 (T, 4) xyxy,
    ``train_labels`` int64 (T,); the evaluation ground truth (K, file order; id = position + 1):
    ``gt_image`` (remapped image id), ``gt_label`` (1..C), ``gt_bbox`` float64 xywh, ``gt_area``,
    ``gt_crowd``, ``gt_dataset_id``. Non-integer dataset ids go to the meta instead.
    """
    images_dir = str(images_dir)
    check_categories_consistent(columns, labels)
    check_file_names(columns, images_dir, images_key)
    width, height = _image_sizes(columns, images_dir, images_key)
    label = IdColumn(list(labels.category_ids)).index_of(columns.ann_category) + 1  # 0: not in the label space
    known = label > 0
    w_img, h_img = width[columns.ann_image].astype(np.float64), height[columns.ann_image].astype(np.float64)
    x, y, w, h = columns.ann_bbox.T
    x0, y0 = np.maximum(x, 0.0), np.maximum(y, 0.0)
    x1, y1 = np.minimum(x + w, w_img), np.minimum(y + h, h_img)
    clipped = (x0 != x) | (y0 != y) | (x1 != x + w) | (y1 != y + h)
    empty = (x1 <= x0) | (y1 <= y0)  # nothing inside the image: cannot be matched, cannot be learnt
    gt = known & ~empty
    crowd = columns.ann_crowd
    degenerate = gt & ~crowd & (((x1 - x0) <= CLEANING["min_train_box_px"]) | ((y1 - y0) <= CLEANING["min_train_box_px"]))
    train = gt & ~crowd & ~degenerate
    area = np.where(np.isfinite(columns.ann_area), columns.ann_area, (x1 - x0) * (y1 - y0))

    n_images = len(columns.file_names)
    order = np.flatnonzero(train)
    order = order[np.argsort(columns.ann_image[order], kind="stable")]  # by image, file order within
    counts = np.bincount(columns.ann_image[order], minlength=n_images)
    train_off = np.zeros(n_images + 1, dtype=np.int64)
    np.cumsum(counts, out=train_off[1:])
    name_buf, name_off = _string_column(columns.file_names)
    image_ids, image_id_list = _id_arrays("image_dataset_id", columns.image_ids)
    ann_ids, ann_id_list = _id_arrays("gt_dataset_id", columns.ann_ids, gt)
    arrays = {
        "file_name_buf": name_buf, "file_name_off": name_off, "width": width, "height": height, **image_ids,
        "train_off": train_off,
        "train_boxes": np.stack([x0, y0, x1, y1], axis=1)[order].astype(np.float32).reshape(-1, 4),
        "train_labels": label[order].astype(np.int64),
        "gt_image": (columns.ann_image[gt] + 1).astype(np.int64),
        "gt_label": label[gt].astype(np.int64),
        "gt_bbox": np.stack([x0, y0, x1 - x0, y1 - y0], axis=1)[gt].reshape(-1, 4),
        "gt_area": area[gt].astype(np.float64),
        "gt_crowd": crowd[gt].astype(np.uint8),
        **ann_ids,
    }
    stats = {
        "images": n_images, "annotations_in_file": len(label), "crowd": int((crowd & known).sum()),
        "degenerate_dropped": int(degenerate.sum()), "empty_dropped": int((known & empty).sum()),
        "clipped": int((clipped & known).sum()), "unknown_category_dropped": int((~known).sum()),
        "gt_annotations": int(gt.sum()), "gt_boxes_not_crowd": int((gt & ~crowd).sum()),
        "train_boxes": int(train.sum()), "images_without_boxes": int((counts == 0).sum()),
    }
    if stats["unknown_category_dropped"]:
        log.warning("%s: %d annotation(s) of categories absent from the train label space were dropped",
                    columns.path, stats["unknown_category_dropped"])
    meta = {"annotation_file": columns.path, "stats": stats, "info": columns.info,
            "image_dataset_ids": image_id_list, "gt_dataset_ids": ann_id_list}
    return arrays, meta


def _image_size_from_header(path: str) -> tuple[int, int]:
    """(width, height) read from the image header only (PIL decodes lazily)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            return int(im.width), int(im.height)
    except (OSError, UnidentifiedImageError, ValueError) as e:
        raise DataError(f"image {path} cannot be read: {e}") from e
