"""Reading a COCO annotation file into columns: numpy arrays, never a Python object per field.

Why msgspec: at COCO-2017 size (305 MB, 118k images, 830k annotations, most bytes being
``segmentation`` polygons that detection never uses) ``json.load`` materialises every polygon
value. Measured on a generated file of that size (2 cores, load ~1.7, one process each; time and
peak RSS above the import baseline):

    =======================================  ======  ========
    reader                                   time    peak RSS
    =======================================  ======  ========
    msgspec, typed Structs (this module)     1.4 s   628 MB
    pysimdjson (lazy DOM, fields read)       2.4 s   1.6 GB
    orjson.loads                             9.9 s   3.0 GB
    ijson yajl2_c, annotations only          9.9 s   364 MB
    json.load (what attnlab did)             13.9 s  2.0 GB
    pycocotools COCO() (json.load + index)   11.0 s  2.0 GB
    =======================================  ======  ========

msgspec decodes straight into typed Structs and skips fields a Struct does not declare without
building them; the file's bytes plus one small Struct per annotation is the whole peak.

Validation: a file msgspec refuses (malformed JSON, a wrong type anywhere) or whose ids do not
line up is read again with :func:`attnlab.data.coco_validate.load_annotation_file`, the reference
validator, so that every error keeps its wording (line and column of broken JSON, the offending
ids...). Only bad files pay for the second read.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
import numpy as np

from attnlab.data.coco_validate import load_annotation_file
from attnlab.errors import DataError

__all__ = ["CocoColumns", "IdColumn", "parse_annotation_file", "require_file"]


class _Image(msgspec.Struct, gc=False):
    id: int | str
    file_name: str
    width: float | msgspec.UnsetType = msgspec.UNSET
    height: float | msgspec.UnsetType = msgspec.UNSET


class _Annotation(msgspec.Struct, gc=False):
    image_id: int | str
    category_id: int | str
    bbox: tuple[float, float, float, float]
    id: Any = None
    iscrowd: Any = 0
    area: Any = None


class _Category(msgspec.Struct):
    id: int | str
    name: Any
    supercategory: Any = ""


class _File(msgspec.Struct):
    images: list[_Image]
    annotations: list[_Annotation]
    categories: list[_Category]
    info: Any = None


_DECODER = msgspec.json.Decoder(_File)


class IdColumn:
    """Dataset ids (int or str, as COCO allows) as an int64 array when they are all integers,
    else as a Python list; ``values`` is one or the other."""

    def __init__(self, values: list[Any]) -> None:
        self.is_int = set(map(type, values)) <= {int}  # bool is not an id
        self.values: np.ndarray | list[Any] = np.asarray(values, dtype=np.int64) if self.is_int else list(values)

    def __len__(self) -> int:
        return len(self.values)

    def tolist(self) -> list[Any]:
        return self.values.tolist() if isinstance(self.values, np.ndarray) else list(self.values)

    def unique(self) -> bool:
        if self.is_int:
            return len(np.unique(self.values)) == len(self.values)
        return len(set(self.values)) == len(self.values)

    def index_of(self, queries: IdColumn) -> np.ndarray:
        """For each query id its position in this column, -1 where absent (ids are unique)."""
        if self.is_int and queries.is_int:
            order = np.argsort(self.values, kind="stable")
            keys = self.values[order]
            pos = np.searchsorted(keys, queries.values).clip(0, max(len(keys) - 1, 0))
            found = (keys[pos] == queries.values) if len(keys) else np.zeros(len(queries), bool)
            return np.where(found, order[pos] if len(keys) else 0, -1).astype(np.int64)
        where = {v: i for i, v in enumerate(self.tolist())}
        return np.fromiter((where.get(q, -1) for q in queries.tolist()), np.int64, count=len(queries))


@dataclass
class CocoColumns:
    """One annotation file as columns (validated: ids unique, references resolved).

    images: ``image_ids`` (:class:`IdColumn`), ``file_names`` (list of str), ``widths`` /
    ``heights`` (float64, NaN where the file gives none). annotations, in file order:
    ``ann_image`` (int64 index into the images), ``ann_category`` (:class:`IdColumn` of dataset
    category ids), ``ann_bbox`` (float64 (N, 4) xywh), ``ann_crowd`` (bool), ``ann_area``
    (float64, NaN where absent or not a number), ``ann_ids`` (:class:`IdColumn`, None where absent).
    ``categories``: the file's list of ``{"id", "name", "supercategory"}``; ``info``: its ``info``.
    """

    path: str
    image_ids: IdColumn
    file_names: list[str]
    widths: np.ndarray
    heights: np.ndarray
    ann_image: np.ndarray
    ann_category: IdColumn
    ann_bbox: np.ndarray
    ann_crowd: np.ndarray
    ann_area: np.ndarray
    ann_ids: IdColumn  # per annotation its 'id' (None where absent)
    categories: list[dict[str, Any]]
    info: dict[str, Any]


def _numbers_or_nan(values: list[Any]) -> np.ndarray:
    """float64 of each value that is a number (not a bool), NaN for the others."""
    if set(map(type, values)) <= {int, float}:  # the usual case, converted in one go
        return np.array(values, dtype=np.float64)
    return np.array([float(v) if type(v) in (int, float) else np.nan for v in values], dtype=np.float64)


def _flags(values: list[Any]) -> np.ndarray:
    """``bool(value)`` of each value, as a bool array."""
    if set(map(type, values)) <= {int, bool}:
        return np.array(values, dtype=bool)
    return np.array([bool(v) for v in values], dtype=bool)


def _reference_error(path: Path, config_key: str | None, why: str) -> DataError:
    """The reference validator's error for ``path`` (it raises); ``why`` if it finds nothing."""
    load_annotation_file(path, config_key)
    return DataError(f"COCO annotation file {path}: {why}")


def _size_column(images: list[_Image], field: str) -> np.ndarray:
    values = [getattr(img, field) for img in images]
    return np.array([np.nan if v is msgspec.UNSET else v for v in values], dtype=np.float64)


def require_file(path: str | os.PathLike[str], config_key: str | None = None) -> Path:
    """``path`` as a Path; :class:`DataError` naming it (and ``config_key``) when it is not a file."""
    path = Path(path)
    if not path.is_file():
        what = "is a folder, not a file" if path.is_dir() else "does not exist"
        hint = f" (set {config_key}, relative to data.root)" if config_key else ""
        raise DataError(f"COCO annotation file {path} {what}{hint}")
    return path


def parse_annotation_file(path: str | os.PathLike[str], config_key: str | None = None) -> CocoColumns:
    """Read and validate one COCO annotation file into :class:`CocoColumns`.

    Raises :class:`DataError` naming the file, with the same messages as
    :func:`attnlab.data.coco_validate.load_annotation_file` (``config_key`` names the setting to fix
    when the file is missing).
    """
    path = require_file(path, config_key)
    try:
        with open(path, "rb") as f:
            data = _DECODER.decode(f.read())
    except (msgspec.DecodeError, msgspec.ValidationError) as e:
        raise _reference_error(path, config_key, str(e)) from None
    except OSError as e:
        raise DataError(f"COCO annotation file {path} cannot be read: {e}") from e
    images, anns = data.images, data.annotations
    image_ids = IdColumn([img.id for img in images])
    widths, heights = _size_column(images, "width"), _size_column(images, "height")
    category_ids = IdColumn([c.id for c in data.categories])
    bad_size = not (np.all(np.nan_to_num(widths, nan=1.0) > 0) and np.all(np.nan_to_num(heights, nan=1.0) > 0))
    if bad_size or not np.isfinite(np.nan_to_num(widths, nan=1.0) + np.nan_to_num(heights, nan=1.0)).all() \
            or not image_ids.unique() or not category_ids.unique():
        raise _reference_error(path, config_key, "invalid image sizes or repeated ids")
    ann_bbox = np.array([a.bbox for a in anns], dtype=np.float64).reshape(-1, 4)
    ann_category = IdColumn([a.category_id for a in anns])
    ann_image = image_ids.index_of(IdColumn([a.image_id for a in anns]))
    if not np.isfinite(ann_bbox).all() or (ann_image < 0).any() or (category_ids.index_of(ann_category) < 0).any():
        raise _reference_error(path, config_key, "annotations with invalid boxes or unknown image/category ids")
    info = data.info if isinstance(data.info, dict) else {}
    return CocoColumns(
        path=str(path),
        image_ids=image_ids,
        file_names=[img.file_name for img in images],
        widths=widths,
        heights=heights,
        ann_image=ann_image,
        ann_category=ann_category,
        ann_bbox=ann_bbox,
        ann_crowd=_flags([a.iscrowd for a in anns]),
        ann_area=_numbers_or_nan([a.area for a in anns]),
        ann_ids=IdColumn([a.id for a in anns]),
        categories=[{"id": c.id, "name": c.name, "supercategory": c.supercategory} for c in data.categories],
        info=info,
    )
