"""The reference reader of COCO annotation files: ``json.load`` and every structural check, with
errors that name the file and the offending entries.

The fast reader (:mod:`attnlab.data.coco_parse`) hands a file it refuses to this one, so that a
bad file gets the same message whichever reader met it first (line and column of broken JSON,
the ids of annotations pointing nowhere, ...).
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

from attnlab.errors import DataError

__all__ = ["listing", "load_annotation_file", "validate_coco_dict"]

_MAX_LISTED = 5  # how many offending ids/paths an error message lists before "... and N more"


def listing(items: list[Any]) -> str:
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
            f"'images': {listing(missing_image)}"
        )
    if missing_category:
        raise DataError(
            f"COCO annotation file {path}: {len(missing_category)} annotation(s) point to a category id that is not in "
            f"'categories': {listing(missing_category)}"
        )
