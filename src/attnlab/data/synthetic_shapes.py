"""A generated object-detection set: coloured shapes on textured backgrounds, in COCO layout.

It is the default data of ``data=coco``: small enough that a CPU run learns it in minutes, hard
enough that the detector has to look at shape rather than colour (every class comes in every
colour, on noise / gradient / stripe / blotch backgrounds, with some objects overlapping).

Layout written under ``out_dir`` (exactly what ``conf/data/coco.yaml`` reads by default)::

    images/train/000001.png ...      images/val/...      images/test/...
    annotations/instances_train.json annotations/instances_val.json annotations/instances_test.json
    shapes_meta.json                 # the generator settings; marks the folder as generated

Each JSON has ``images`` (ids from 1, ``width``/``height``), ``annotations`` (ids from 1,
``bbox`` = visible pixel extent as ``[x, y, w, h]``, ``area`` = visible pixel count,
``iscrowd: 0``) and ``categories`` (ids from 1 in the order of ``ShapesConfig.shapes``).

Every image is drawn from its own RNG seeded by ``(seed, split, index)``, so the set is
deterministic and the val/test images do not change when ``n_train`` does.

The default data root holds one such set per settings (:mod:`attnlab.data.shapes_sets`).
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from attnlab.data.content_cache import temp_folder

log = logging.getLogger(__name__)

SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "star", "cross")
SPLITS: tuple[str, ...] = ("train", "val", "test")
META_FILE = "shapes_meta.json"
# Bumped whenever the drawing changes, so a stale generated set is recognised and rebuilt.
GENERATOR_VERSION = 1

# Saturated colours; each object takes one that stands out from the background under it.
_PALETTE = np.array(
    [
        (220, 30, 30),
        (30, 170, 40),
        (40, 70, 230),
        (240, 220, 40),
        (30, 210, 220),
        (220, 40, 210),
        (250, 140, 20),
        (245, 245, 245),
        (15, 15, 15),
        (130, 50, 200),
    ],
    dtype=np.float32,
)


@dataclass(frozen=True)
class ShapesConfig:
    """Generator settings. Sizes are in pixels; ``*_object_size`` bound the shape's diameter."""

    n_train: int = 2000
    n_val: int = 200
    n_test: int = 200
    image_size: int = 128
    min_object_size: int = 16
    max_object_size: int = 60
    min_objects: int = 1
    max_objects: int = 4
    shapes: tuple[str, ...] = ("circle", "square", "triangle")
    seed: int = 0
    image_format: str = "jpg"
    # An object may overlap others, but at least this fraction of it stays visible.
    min_visible_fraction: float = 0.6
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "shapes", tuple(self.shapes))
        unknown = [s for s in self.shapes if s not in SHAPES]
        if unknown or not self.shapes:
            raise ValueError(f"shapes must be a non-empty subset of {SHAPES}, got {list(self.shapes)}")
        if len(set(self.shapes)) != len(self.shapes):
            raise ValueError(f"shapes must not repeat, got {list(self.shapes)}")
        if self.image_format not in ("png", "jpg"):
            raise ValueError(f"image_format must be 'png' or 'jpg', got {self.image_format!r}")
        if not 4 <= self.min_object_size <= self.max_object_size <= self.image_size:
            raise ValueError(
                "need 4 <= min_object_size <= max_object_size <= image_size, got "
                f"{self.min_object_size}, {self.max_object_size}, {self.image_size}"
            )
        if not 0 <= self.min_objects <= self.max_objects or self.max_objects < 1:
            raise ValueError(f"need 0 <= min_objects <= max_objects, max_objects >= 1, got {self.min_objects}, {self.max_objects}")
        for name in ("n_train", "n_val", "n_test"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.extra:
            raise ValueError(f"unknown shapes-generator settings: {sorted(self.extra)}")

    @classmethod
    def from_dict(cls, settings: dict[str, Any]) -> ShapesConfig:
        """Build from a config mapping; unknown keys are an error that names them."""
        known = {f for f in cls.__dataclass_fields__ if f != "extra"}
        extra = {k: v for k, v in settings.items() if k not in known}
        kwargs = {k: v for k, v in settings.items() if k in known}
        if "shapes" in kwargs:
            kwargs["shapes"] = tuple(kwargs["shapes"])
        return cls(**kwargs, extra=extra)

    def split_size(self, split: str) -> int:
        return {"train": self.n_train, "val": self.n_val, "test": self.n_test}[split]

    def as_meta(self) -> dict[str, Any]:
        """What ``shapes_meta.json`` records (compared to decide whether a set is stale)."""
        meta = asdict(self)
        meta.pop("extra")
        meta["shapes"] = list(self.shapes)
        meta["generator_version"] = GENERATOR_VERSION
        return meta


# ----------------------------------------------------------------------------------- drawing


def _low_freq_noise(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    """Smooth random field (size, size, 3) in [0, 1]: a tiny random image upsampled bicubically."""
    small = (rng.random((cells, cells, 3)) * 255).astype(np.uint8)
    big = Image.fromarray(small, "RGB").resize((size, size), Image.Resampling.BICUBIC)
    return np.asarray(big, dtype=np.float32) / 255.0


def _noise(rng: np.random.Generator, shape: tuple[int, ...], amplitude: int) -> np.ndarray:
    """Uniform integer noise in [-amplitude, amplitude] as float32 (several times cheaper than
    Gaussian noise, which dominated generation time; the texture looks the same)."""
    return rng.integers(-amplitude, amplitude + 1, shape, dtype=np.int16).astype(np.float32)


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    """A textured background (size, size, 3) float32 in [0, 255]."""
    kind = rng.integers(4)
    c1 = rng.uniform(40, 215, 3).astype(np.float32)
    c2 = np.clip(c1 + rng.uniform(-90, 90, 3), 0, 255).astype(np.float32)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    theta = rng.uniform(0, math.pi)
    proj = xx * math.cos(theta) + yy * math.sin(theta)
    if kind == 0:  # plain colour + strong pixel noise
        img = c1 + _noise(rng, (size, size, 3), 40)
    elif kind == 1:  # linear gradient between two colours
        t = (proj - proj.min()) / max(float(np.ptp(proj)), 1e-6)
        img = c1 + (c2 - c1) * t[..., None]
    elif kind == 2:  # stripes at a random angle and frequency
        freq = rng.uniform(3, 12)
        t = 0.5 + 0.5 * np.sin(2 * math.pi * freq * proj + rng.uniform(0, 2 * math.pi))
        img = c1 + (c2 - c1) * t[..., None]
    else:  # blotches: smooth multi-colour field
        img = 40 + 175 * _low_freq_noise(rng, size, int(rng.integers(3, 7)))
    return np.asarray(img, dtype=np.float32)


def _polygon(shape: str, cx: float, cy: float, r: float, angle: float) -> list[tuple[float, float]]:
    """Vertices of ``shape`` centred at (cx, cy) with circumradius ``r``, rotated by ``angle``."""
    if shape == "square":
        pts = [(math.cos(angle + math.pi / 4 + k * math.pi / 2), math.sin(angle + math.pi / 4 + k * math.pi / 2)) for k in range(4)]
    elif shape == "triangle":
        pts = [(math.cos(angle + k * 2 * math.pi / 3), math.sin(angle + k * 2 * math.pi / 3)) for k in range(3)]
    elif shape == "star":
        pts = [
            ((1.0 if k % 2 == 0 else 0.45) * math.cos(angle + k * math.pi / 5),
             (1.0 if k % 2 == 0 else 0.45) * math.sin(angle + k * math.pi / 5))
            for k in range(10)
        ]
    elif shape == "cross":
        a, b = 0.3, 1.0  # half-width of the bars, half-length
        base = [(-a, -b), (a, -b), (a, -a), (b, -a), (b, a), (a, a), (a, b), (-a, b), (-a, a), (-b, a), (-b, -a), (-a, -a)]
        s = 1 / math.hypot(a, b)
        ca, sa = math.cos(angle), math.sin(angle)
        pts = [((x * ca - y * sa) * s, (x * sa + y * ca) * s) for x, y in base]
    else:
        raise ValueError(f"not a polygon shape: {shape}")
    return [(cx + r * x, cy + r * y) for x, y in pts]


def _draw_mask(shape: str, size: int, cx: float, cy: float, r: float, angle: float) -> np.ndarray:
    """Boolean (size, size) mask of one shape."""
    mask = Image.new("L", (size, size), 0)
    draw = ImageDraw.Draw(mask)
    if shape == "circle":
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=255)
    else:
        draw.polygon(_polygon(shape, cx, cy, r, angle), fill=255)
    return np.asarray(mask) > 0


def render_image(rng: np.random.Generator, cfg: ShapesConfig) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """Draw one image. Returns (uint8 array (S, S, 3), objects) with objects as
    ``{"category": index into cfg.shapes, "bbox": [x, y, w, h], "area": visible pixels}``."""
    size = cfg.image_size
    img = _background(rng, size)
    # owner[y, x] = index of the object visible at that pixel, -1 for background
    owner = np.full((size, size), -1, dtype=np.int16)
    n_objects = int(rng.integers(cfg.min_objects, cfg.max_objects + 1))
    placed: list[tuple[int, np.ndarray]] = []  # (category, full mask)
    for _ in range(n_objects):
        for _attempt in range(20):
            cat = int(rng.integers(len(cfg.shapes)))
            shape = cfg.shapes[cat]
            diameter = rng.uniform(cfg.min_object_size, cfg.max_object_size)
            r = diameter / 2
            cx = rng.uniform(r, size - r)
            cy = rng.uniform(r, size - r)
            angle = rng.uniform(0, 2 * math.pi) if shape != "square" else rng.uniform(-0.35, 0.35)
            mask = _draw_mask(shape, size, cx, cy, r, angle)
            if mask.sum() < 16:
                continue
            # Reject a placement that would hide too much of an object already drawn.
            ok = True
            for k, (_, m) in enumerate(placed):
                visible_after = np.count_nonzero((owner == k) & ~mask)
                if visible_after < cfg.min_visible_fraction * np.count_nonzero(m):
                    ok = False
                    break
            if ok:
                break
        else:
            continue  # crowded image: fewer objects than drawn for
        # A colour that stands out from the background under the shape.
        under = img[mask].mean(axis=0)
        dist = np.linalg.norm(_PALETTE - under, axis=1)
        candidates = np.flatnonzero(dist > 110)
        if candidates.size == 0:
            candidates = np.argsort(dist)[-3:]
        colour = _PALETTE[int(rng.choice(candidates))] + rng.uniform(-20, 20, 3)
        img[mask] = colour
        owner[mask] = len(placed)
        placed.append((cat, mask))
    # Sensor-like noise over everything, shapes included, so colours are not perfectly flat.
    img += _noise(rng, img.shape, 10)
    objects = []
    for k, (cat, _) in enumerate(placed):
        visible = owner == k
        ys, xs = np.nonzero(visible)
        x0, x1, y0, y1 = int(xs.min()), int(xs.max()) + 1, int(ys.min()), int(ys.max()) + 1
        objects.append({"category": cat, "bbox": [x0, y0, x1 - x0, y1 - y0], "area": int(visible.sum())})
    return np.clip(img, 0, 255).astype(np.uint8), objects


# ----------------------------------------------------------------------------------- writing


def _write_split(out_dir: Path, split: str, split_idx: int, cfg: ShapesConfig) -> dict[str, Any]:
    image_dir = out_dir / "images" / split
    image_dir.mkdir(parents=True, exist_ok=True)
    images, annotations = [], []
    ann_id = 1
    for i in range(cfg.split_size(split)):
        rng = np.random.default_rng([cfg.seed, split_idx, i])
        pixels, objects = render_image(rng, cfg)
        image_id = i + 1
        file_name = f"{image_id:06d}.{cfg.image_format}"
        pil = Image.fromarray(pixels, "RGB")
        if cfg.image_format == "png":
            pil.save(image_dir / file_name, compress_level=1)  # fast; size barely matters here
        else:
            pil.save(image_dir / file_name, quality=92)
        images.append({"id": image_id, "file_name": file_name, "width": cfg.image_size, "height": cfg.image_size})
        for obj in objects:
            annotations.append(
                {
                    "id": ann_id,
                    "image_id": image_id,
                    "category_id": obj["category"] + 1,
                    "bbox": obj["bbox"],
                    "area": obj["area"],
                    "iscrowd": 0,
                    "segmentation": [],
                }
            )
            ann_id += 1
    return {
        "info": {"description": f"attnlab generated shapes ({split})", "version": str(GENERATOR_VERSION)},
        "licenses": [],
        "images": images,
        "annotations": annotations,
        "categories": [{"id": k + 1, "name": s, "supercategory": "shape"} for k, s in enumerate(cfg.shapes)],
    }


def write_shapes_set(folder: Path, cfg: ShapesConfig) -> dict[str, dict[str, int]]:
    """Write a whole set into the existing, empty ``folder`` (``shapes_meta.json`` last); returns the
    images and annotations per split."""
    counts = {}
    for split_idx, split in enumerate(SPLITS):
        coco = _write_split(folder, split, split_idx, cfg)
        (folder / "annotations").mkdir(exist_ok=True)
        with open(folder / "annotations" / f"instances_{split}.json", "w") as f:
            json.dump(coco, f)
        counts[split] = {"images": len(coco["images"]), "annotations": len(coco["annotations"])}
    with open(folder / META_FILE, "w") as f:
        json.dump(cfg.as_meta(), f, indent=2)
    return counts


def generate_shapes_coco(out_dir: str | os.PathLike[str], cfg: ShapesConfig | None = None, overwrite: bool = False) -> dict[str, Any]:
    """Write the shapes set to ``out_dir`` in COCO layout (see module docstring); returns a summary.

    The set is written to a temporary sibling folder and renamed into place, so an interrupted run
    never leaves a half-written set and two processes generating at once both end with a complete
    one. ``out_dir`` must be missing or empty unless ``overwrite`` (which replaces only a folder
    that this generator wrote, recognised by its ``shapes_meta.json``).
    """
    cfg = cfg or ShapesConfig()
    out = Path(out_dir).expanduser().absolute()
    if out.exists() and any(out.iterdir()):
        if not overwrite:
            raise FileExistsError(f"{out} exists and is not empty; pass overwrite=True (--overwrite) to replace it")
        if not (out / META_FILE).is_file():
            raise FileExistsError(f"refusing to replace {out}: it was not written by the shapes generator (no {META_FILE})")
    out.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    with temp_folder(out.parent, f".{out.name}.tmp-") as tmp:
        counts = write_shapes_set(tmp, cfg)
        old = None
        if out.exists():
            if any(out.iterdir()):  # overwrite=True, checked above: move the old set aside first
                old = out.with_name(f".{out.name}.old-{os.getpid()}")
                os.rename(out, old)
            else:
                out.rmdir()
        try:
            os.rename(tmp, out)
        except OSError:
            # Another process finished first: keep its (identical, deterministic) set.
            if not (out / META_FILE).is_file():
                raise
            log.info("shapes dataset at %s was written by another process meanwhile; using it", out)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    seconds = time.perf_counter() - t0
    return {"root": str(out), "counts": counts, "seconds": seconds, "settings": cfg.as_meta()}
