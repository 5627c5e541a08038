"""A COCO-2017-sized data set written in seconds: the annotation file at full size, the images as links.

:func:`write_coco_sized` writes ``<root>/annotations/instances_train.json`` (and a small
``instances_val.json``) shaped like COCO 2017's ``instances_train2017.json``: 118,287 images,
830,000 annotations over 80 categories with COCO's sparse ids (1..90), about 1% crowd, polygon
``segmentation`` lists that make up most of the bytes (about 305 MB in all), the image fields COCO
has (``license``, ``coco_url``, ``date_captured``, ``flickr_url``). The images are symbolic links,
inside the split's images folder, to a few real JPEG files kept in that folder (``_real/``), so
that opening, decoding and training on them works and every path resolves inside the folder.

Polygons come from a small pool of pre-formatted strings: their values do not matter to any
reader timed here, only their bytes do.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["COCO2017_TRAIN", "write_coco_sized"]

#: COCO 2017 train's size, as the issue measured it.
COCO2017_TRAIN = {"images": 118_287, "annotations": 830_000}
# COCO's 80 category ids (1..90 with gaps).
_CATEGORY_IDS = [i for i in range(1, 91) if i not in (12, 26, 29, 30, 45, 66, 68, 69, 71, 83)]
# (width, height) of the real image files the links point to.
_REAL_SIZES = ((640, 480), (480, 640), (640, 427), (500, 375))


def _real_images(folder: Path, seed: int) -> list[tuple[str, int, int]]:
    """A few real JPEGs (textured noise with a few rectangles), as (relative name, width, height)."""
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for k, (w, h) in enumerate(_REAL_SIZES):
        small = rng.integers(0, 255, (h // 8, w // 8, 3), dtype=np.uint8)
        img = Image.fromarray(small, "RGB").resize((w, h), Image.BILINEAR)
        draw = ImageDraw.Draw(img)
        for _ in range(5):
            x0, y0 = int(rng.integers(0, w - 60)), int(rng.integers(0, h - 60))
            draw.rectangle([x0, y0, x0 + int(rng.integers(20, 60)), y0 + int(rng.integers(20, 60))],
                           fill=tuple(int(c) for c in rng.integers(0, 255, 3)))
        name = f"real_{k}.jpg"
        img.save(folder / name, quality=90)
        out.append((f"_real/{name}", w, h))
    return out


def _polygon_pool(rng: np.random.Generator, n: int, mean_bytes: int) -> list[str]:
    """``n`` formatted polygon lists, about ``mean_bytes`` long on average."""
    pool = []
    for _ in range(n):
        points = max(3, int(rng.normal(mean_bytes / 14, mean_bytes / 40)))
        values = rng.uniform(0, 640, 2 * points)
        pool.append("[[" + ",".join(f"{v:.2f}" for v in values) + "]]")
    return pool


def _annotation_lines(rng: np.random.Generator, n_images: int, n_anns: int, sizes: np.ndarray,
                      first_id: int, poly_bytes: int) -> list[str]:
    image_ids = np.sort(rng.integers(1, n_images + 1, n_anns))
    w_img, h_img = sizes[image_ids - 1, 0], sizes[image_ids - 1, 1]
    bw = rng.uniform(0.01, 0.6, n_anns) * w_img
    bh = rng.uniform(0.01, 0.6, n_anns) * h_img
    x = rng.uniform(0, 1, n_anns) * (w_img - bw)
    y = rng.uniform(0, 1, n_anns) * (h_img - bh)
    crowd = rng.random(n_anns) < 0.009
    cats = rng.choice(_CATEGORY_IDS, n_anns)
    pool = _polygon_pool(rng, 512, poly_bytes)
    pick = rng.integers(0, len(pool), n_anns)
    lines = []
    for k in range(n_anns):
        seg = '{"counts":[12,30,8,400],"size":[%d,%d]}' % (h_img[k], w_img[k]) if crowd[k] else pool[pick[k]]
        lines.append(
            f'{{"segmentation":{seg},"area":{bw[k] * bh[k] * 0.6:.3f},"iscrowd":{int(crowd[k])},'
            f'"image_id":{image_ids[k]},"bbox":[{x[k]:.2f},{y[k]:.2f},{bw[k]:.2f},{bh[k]:.2f}],'
            f'"category_id":{cats[k]},"id":{first_id + k}}}'
        )
    return lines


def _write_file(path: Path, images: list[str], annotations: list[str]) -> int:
    categories = ",".join(
        json.dumps({"supercategory": "thing", "id": c, "name": f"class_{c:02d}"}) for c in _CATEGORY_IDS
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w") as f:
        f.write('{"info":{"description":"attnlab COCO-2017-sized benchmark file","year":2017},')
        f.write('"licenses":[{"url":"http://example.org","id":1,"name":"bench"}],"images":[')
        f.write(",".join(images))
        f.write('],"annotations":[')
        for start in range(0, len(annotations), 100_000):
            if start:
                f.write(",")
            f.write(",".join(annotations[start:start + 100_000]))
        f.write('],"categories":[' + categories + "]}")
    os.replace(tmp, path)
    return path.stat().st_size


def _split(root: Path, split: str, n_images: int, n_anns: int, seed: int, poly_bytes: int) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    images_dir = root / "images" / split
    real = _real_images(images_dir / "_real", seed)
    which = rng.integers(0, len(real), n_images)
    sizes = np.array([[real[k][1], real[k][2]] for k in which], dtype=np.int64)
    lines = []
    for i in range(n_images):
        name = f"{i + 1:012d}.jpg"
        link = images_dir / name
        if not link.is_symlink():
            os.symlink(real[which[i]][0], link)  # relative: resolves inside the images folder
        w, h = sizes[i]
        lines.append(
            f'{{"license":1,"file_name":"{name}","coco_url":"http://images.example.org/{split}/{name}",'
            f'"height":{h},"width":{w},"date_captured":"2013-11-14 16:28:13",'
            f'"flickr_url":"http://farm.example.org/{name}","id":{i + 1}}}'
        )
    anns = _annotation_lines(rng, n_images, n_anns, sizes, 1, poly_bytes)
    nbytes = _write_file(root / "annotations" / f"instances_{split}.json", lines, anns)
    return {"images": n_images, "annotations": n_anns, "bytes": nbytes}


def write_coco_sized(root: str | os.PathLike[str], n_images: int = COCO2017_TRAIN["images"],
                     n_annotations: int = COCO2017_TRAIN["annotations"], n_val: int = 500,
                     seed: int = 0, polygon_bytes: int = 215) -> dict[str, Any]:
    """Write a COCO-layout set at ``root`` (train at the given size, a small val split); return counts.

    ``polygon_bytes`` is the mean length of an annotation's ``segmentation``; the default gives a
    305 MB train file at full size.
    """
    root = Path(root)
    train = _split(root, "train", n_images, n_annotations, seed, polygon_bytes)
    val = _split(root, "val", n_val, max(1, n_val * n_annotations // max(n_images, 1)), seed + 1, polygon_bytes)
    return {"root": str(root), "train": train, "val": val}
