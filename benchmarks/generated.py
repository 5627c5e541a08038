"""Data sets made on the fly: parallel text with a Zipf vocabulary of made-up words (so BPE has work to do), a
COCO-2017-sized annotation file whose images are links to a few real JPEGs, scored detections."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

#: COCO 2017 train's size, as issue 9 measured it.
COCO2017_TRAIN = {"images": 118_287, "annotations": 830_000}
VOCAB_SIZE = 40_000  # made-up words per side of the parallel corpus
POLYGON_BYTES = 215  # mean length of a ``segmentation``: a 305 MB train file at full size
_CATEGORY_IDS = [i for i in range(1, 91) if i not in (12, 26, 29, 30, 45, 66, 68, 69, 71, 83)]
_REAL_SIZES = ((640, 480), (480, 640), (640, 427), (500, 375))  # (width, height) of the real JPEGs
_SYLLABLES = {  # onsets, vowels, codas of the made-up words of each side
    "src": ("- b d f g h k l m n p r s t w st tr ch sh br", "a e i o u ea ou ai", "- - n r s t l nd ng ck"),
    "tgt": ("- b d f g h k l m n p r s t w z sch pf kr gl", "a e i o u ä ö ü ei au ie", "- - n r s t ß ch nd"),
}


def _vocabulary(rng: np.random.Generator, side: str, size: int) -> list[str]:
    """``size`` distinct made-up words, shorter ones at the frequent (low) ranks, as in real text."""
    onsets, vowels, codas = ([p.replace("-", "") for p in parts.split()] for parts in _SYLLABLES[side])
    words: dict[str, None] = {}
    while len(words) < size:
        syllables = 1 + min(3, int(rng.poisson(0.2 + 2.0 * len(words) / size)))
        parts = (
            onsets[rng.integers(len(onsets))] + vowels[rng.integers(len(vowels))] + codas[rng.integers(len(codas))]
            for _ in range(syllables)
        )
        words["".join(parts)] = None
    return list(words)


def _sentences(rng: np.random.Generator, vocab: np.ndarray, probs: np.ndarray, lengths: np.ndarray) -> str:
    """One line per length: that many Zipf-drawn words, capitalised, and a full stop."""
    words, ends = vocab[rng.choice(len(vocab), size=int(lengths.sum()), p=probs)], np.cumsum(lengths)
    return "".join(" ".join(words[end - k : end]).capitalize() + " .\n" for end, k in zip(ends, lengths))


def write_parallel_corpus(folder: Path, n_train: int, mean_words: float, seed: int, n_eval: int = 1000) -> dict:
    """Train/val/test ``*.src``/``*.tgt`` files under ``folder``, lengths Poisson around ``mean_words`` (>= 3), the
    target's close to the source's: ``{"train_src": path, ...}``."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    vocabs = {side: np.asarray(_vocabulary(rng, side, VOCAB_SIZE), dtype=object) for side in ("src", "tgt")}
    probs = 1.0 / (np.arange(VOCAB_SIZE, dtype=np.float64) + 2.7)
    probs /= probs.sum()
    paths: dict[str, str] = {}
    for split, n in (("train", n_train), ("val", n_eval), ("test", n_eval)):
        paths |= {f"{split}_{side}": str(folder / f"{split}.{side}") for side in ("src", "tgt")}
        with open(paths[f"{split}_src"], "w") as src, open(paths[f"{split}_tgt"], "w") as tgt:
            for start in range(0, n, 100_000):
                src_len = np.maximum(3, rng.poisson(mean_words - 1, min(100_000, n - start)))
                tgt_len = np.maximum(3, src_len + rng.integers(-2, 3, len(src_len)))
                src.write(_sentences(rng, vocabs["src"], probs, src_len - 1))
                tgt.write(_sentences(rng, vocabs["tgt"], probs, tgt_len - 1))
    return paths


def _real_images(folder: Path, rng: np.random.Generator) -> list[tuple[str, int, int]]:
    """A few real JPEGs (textured noise, a few rectangles): (name relative to the images folder, w, h)."""
    from PIL import Image, ImageDraw

    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for k, (w, h) in enumerate(_REAL_SIZES):
        small = rng.integers(0, 255, (h // 8, w // 8, 3), dtype=np.uint8)
        img = Image.fromarray(small, "RGB").resize((w, h), Image.Resampling.BILINEAR)
        draw = ImageDraw.Draw(img)
        for _ in range(5):
            x0, y0 = int(rng.integers(0, w - 60)), int(rng.integers(0, h - 60))
            box = [x0, y0, x0 + int(rng.integers(20, 60)), y0 + int(rng.integers(20, 60))]
            draw.rectangle(box, fill=tuple(int(c) for c in rng.integers(0, 255, 3)))
        img.save(folder / f"real_{k}.jpg", quality=90)
        out.append((f"_real/real_{k}.jpg", w, h))
    return out


def _annotation_lines(rng: np.random.Generator, n_anns: int, sizes: np.ndarray) -> list[str]:
    image_ids = np.sort(rng.integers(1, len(sizes) + 1, n_anns))
    w_img, h_img = sizes[image_ids - 1, 0], sizes[image_ids - 1, 1]
    bw, bh = rng.uniform(0.01, 0.6, n_anns) * w_img, rng.uniform(0.01, 0.6, n_anns) * h_img
    x, y = rng.uniform(0, 1, n_anns) * (w_img - bw), rng.uniform(0, 1, n_anns) * (h_img - bh)
    crowd, cats = rng.random(n_anns) < 0.009, rng.choice(_CATEGORY_IDS, n_anns)
    points = (max(3, int(rng.normal(POLYGON_BYTES / 14, POLYGON_BYTES / 40))) for _ in range(512))
    pool = ["[[" + ",".join(f"{v:.2f}" for v in rng.uniform(0, 640, 2 * p)) + "]]" for p in points]
    pick = rng.integers(0, len(pool), n_anns)
    lines = []
    for k in range(n_anns):
        seg = f'{{"counts":[12,30,8,400],"size":[{h_img[k]},{w_img[k]}]}}' if crowd[k] else pool[pick[k]]
        lines.append(
            f'{{"segmentation":{seg},"area":{bw[k] * bh[k] * 0.6:.3f},"iscrowd":{int(crowd[k])},'
            f'"image_id":{image_ids[k]},"bbox":[{x[k]:.2f},{y[k]:.2f},{bw[k]:.2f},{bh[k]:.2f}],'
            f'"category_id":{cats[k]},"id":{k + 1}}}'
        )
    return lines


def _split(root: Path, split: str, n_images: int, n_anns: int, seed: int) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    images_dir = root / "images" / split
    real = _real_images(images_dir / "_real", np.random.default_rng(seed))
    which = rng.integers(0, len(real), n_images)
    sizes = np.array([[real[k][1], real[k][2]] for k in which], dtype=np.int64)
    images = []
    for i, ((w, h), k) in enumerate(zip(sizes, which), start=1):
        name = f"{i:012d}.jpg"
        if not (images_dir / name).is_symlink():
            os.symlink(real[k][0], images_dir / name)  # relative: resolves inside the images folder
        images.append(
            f'{{"license":1,"file_name":"{name}","coco_url":"http://images.example.org/{split}/{name}",'
            f'"height":{h},"width":{w},"date_captured":"2013-11-14 16:28:13",'
            f'"flickr_url":"http://farm.example.org/{name}","id":{i}}}'
        )
    categories = [{"supercategory": "thing", "id": c, "name": f"class_{c:02d}"} for c in _CATEGORY_IDS]
    path = root / "annotations" / f"instances_{split}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".tmp"), "w") as f:
        f.write('{"info":{"description":"attnlab COCO-2017-sized benchmark file","year":2017},')
        f.write('"licenses":[{"url":"http://example.org","id":1,"name":"bench"}],"images":[' + ",".join(images))
        f.write('],"annotations":[')
        for k, line in enumerate(_annotation_lines(rng, n_anns, sizes)):  # not one 300 MB string
            f.write("," + line if k else line)
        f.write('],"categories":' + json.dumps(categories, separators=(",", ":")) + "}")
    os.replace(path.with_name(path.name + ".tmp"), path)
    return {"images": n_images, "annotations": n_anns, "bytes": path.stat().st_size}


def write_coco_sized(root: str | os.PathLike[str], n_images: int, n_annotations: int, n_val: int = 500) -> dict:
    """A COCO-layout set at ``root``: train at the given size and a small val split; returns the counts."""
    train = _split(Path(root), "train", n_images, n_annotations, 0)
    val = _split(Path(root), "val", n_val, max(1, n_val * n_annotations // max(n_images, 1)), 1)
    return {"root": str(root), "train": train, "val": val}


def scored_detections(n_images: int, n_categories: int = 10, seed: int = 0) -> tuple[dict[str, Any], list[dict]]:
    """``(gt, per_image)``: COCO ground truth (640x480, 1-12 boxes an image) and detections per image (``image_id``,
    xyxy ``boxes``, ``scores``, ``labels``): each true box found with p=0.8 (jittered, score 0.3-1), 0-8 false ones."""
    rng = np.random.default_rng(seed)

    def boxes(n: int) -> np.ndarray:  # (n, 4) x, y, w, h inside the image
        wh = rng.uniform(8, 200, (n, 2))
        return np.concatenate([rng.uniform(0, 1, (n, 2)) * (np.array([640, 480]) - wh), wh], 1)

    images: list[dict[str, Any]] = []
    annotations: list[dict[str, Any]] = []
    per_image = []
    for image_id in range(1, n_images + 1):
        truth, fp = boxes(int(rng.integers(1, 13))), boxes(int(rng.integers(0, 9)))
        cats = rng.integers(1, n_categories + 1, len(truth))
        images.append({"id": image_id, "width": 640, "height": 480, "file_name": f"{image_id:06d}.jpg"})
        for b, c in zip(truth, cats):
            ann = {"id": len(annotations) + 1, "image_id": image_id, "category_id": int(c), "iscrowd": 0}
            annotations.append(ann | {"bbox": [float(v) for v in b], "area": float(b[2] * b[3])})
        keep = rng.uniform(size=len(truth)) < 0.8
        found = truth[keep] + rng.uniform(-0.1, 0.1, (int(keep.sum()), 4)) * np.tile(truth[keep, 2:], 2)
        dets = np.concatenate([found, fp])
        scores = np.concatenate([rng.uniform(0.3, 1, int(keep.sum())), rng.uniform(0, 0.6, len(fp))])
        labels = np.concatenate([cats[keep], rng.integers(1, n_categories + 1, len(fp))])
        xyxy = np.concatenate([dets[:, :2], dets[:, :2] + dets[:, 2:]], 1)
        per_image.append({"image_id": image_id, "boxes": xyxy, "scores": scores, "labels": labels})
    categories = [{"id": c, "name": f"class{c}", "supercategory": "thing"} for c in range(1, n_categories + 1)]
    return {"images": images, "annotations": annotations, "categories": categories}, per_image
