"""COCO-layout detection data: the dataset, the LightningDataModule, and result conversion.

Layout is config: per split an images folder and an annotation file, both relative to ``root``
(``conf/data/coco.yaml`` documents the overrides for COCO 2017 and per-split-folder exports).
Cleaning rules (id remapping, label space, crowd/degenerate boxes) are in
:mod:`attnlab.data.coco_index`; the cached per-content index and the ground truth built from it
in :mod:`attnlab.data.coco_split`; checks of the image files in :mod:`attnlab.data.coco_files`;
the per-item dataset in :mod:`attnlab.data.coco_dataset`; transforms in
:mod:`attnlab.data.detection_transforms`.

Batch format (torchvision detection style), from every dataloader::

    images:  list of B FloatTensor (3, H_i, W_i), values in [0, 1], after resize (and train flip)
    targets: list of B dicts:
        "boxes":     FloatTensor (N_i, 4) xyxy in the transformed image's pixels
                     (crowd and degenerate boxes removed; N_i may be 0 for val/test images)
        "labels":    LongTensor (N_i,) contiguous labels 1..C (0 is background)
        "image_id":  int, the REMAPPED image id used by ``gt_coco(split)``
        "orig_size": (H0, W0) ints, the original image size
        "size":      (H, W) ints, the transformed image size
        "scale":     (sy, sx) floats = (H / H0, W / W0): original = transformed / scale
        "hflip":     bool, whether the sample was flipped (only ever True for train)

``boxes_to_original(boxes, target)`` maps boxes back to original pixels and
``CocoDataModule.to_coco_results(predictions, targets)`` turns detector outputs into COCO
results (xywh, original pixels, dataset category ids, remapped image ids) for COCOeval against
``CocoDataModule.gt_coco(split)``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from torch import Tensor
from torch.utils.data import DataLoader

from attnlab.data.coco_dataset import CocoDetectionDataset
from attnlab.data.coco_files import VERIFY_AUTO_MAX_IMAGES, check_split_files, verify_images
from attnlab.data.coco_index import LabelSpace
from attnlab.data.coco_split import CocoIndexCache, CocoSplit
from attnlab.data.detection_transforms import boxes_to_original, build_detection_transforms, collate_detection
from attnlab.data.loader_workers import default_num_workers
from attnlab.data.shapes_sets import ensure_shapes_coco, is_generated_root, shapes_set_dir
from attnlab.data.synthetic_shapes import ShapesConfig
from attnlab.errors import DataError
from attnlab.plain import plain

__all__ = ["CocoDataModule", "predictions_to_coco_results"]

log = logging.getLogger(__name__)

SPLIT_NAMES = ("train", "val", "test")
_SPLIT_KEYS = ("images", "annotations")


def predictions_to_coco_results(
    predictions: Sequence[Mapping[str, Tensor]],
    targets: Sequence[Mapping[str, Any]],
    category_ids: Sequence[Any],
) -> list[dict[str, Any]]:
    """Detector outputs -> COCO result dicts for COCOeval against the cleaned ground truth.

    predictions[i]: {"boxes": (N, 4) xyxy in the transformed image's pixels, "scores": (N,),
    "labels": (N,) 1..C} for the image of targets[i]. category_ids[l - 1] is label l's dataset
    category id. Returns [{"image_id": remapped id, "category_id": dataset id,
    "bbox": [x, y, w, h] in original pixels, "score": float}, ...].
    """
    results: list[dict[str, Any]] = []
    for pred, target in zip(predictions, targets, strict=True):
        boxes = boxes_to_original(pred["boxes"].detach(), target).cpu()
        scores = pred["scores"].detach().cpu().tolist()
        labels = pred["labels"].detach().cpu().tolist()
        for (x0, y0, x1, y1), score, label in zip(boxes.tolist(), scores, labels):
            if not 1 <= label <= len(category_ids):
                continue  # background or out of range: nothing to report
            results.append(
                {
                    "image_id": int(target["image_id"]),
                    "category_id": category_ids[label - 1],
                    "bbox": [x0, y0, x1 - x0, y1 - y0],
                    "score": float(score),
                }
            )
    return results


def _normalise_splits(splits: Mapping[str, Any]) -> dict[str, dict[str, str] | None]:
    splits = plain(splits)
    if not isinstance(splits, Mapping):
        raise DataError(f"data.splits must be a mapping of train/val/test, got {splits!r}")
    unknown = sorted(set(splits) - set(SPLIT_NAMES))
    if unknown:
        raise DataError(f"data.splits has unknown split(s) {unknown}; allowed: {list(SPLIT_NAMES)}")
    out: dict[str, dict[str, str] | None] = {}
    for name in SPLIT_NAMES:
        spec = splits.get(name)
        if spec is None:
            if name != "test":
                raise DataError(f"data.splits.{name} must be set (images: <folder>, annotations: <file>), relative to data.root")
            out[name] = None
            continue
        if not isinstance(spec, Mapping):
            raise DataError(f"data.splits.{name} must be a mapping with keys {list(_SPLIT_KEYS)}, got {spec!r}")
        bad = sorted(set(spec) - set(_SPLIT_KEYS))
        missing = [k for k in _SPLIT_KEYS if spec.get(k) is None]
        if bad or missing:
            raise DataError(
                f"data.splits.{name} needs exactly the keys {list(_SPLIT_KEYS)}"
                + (f"; unknown: {bad}" if bad else "")
                + (f"; missing: {missing}" if missing else "")
            )
        out[name] = {k: str(spec[k]) for k in _SPLIT_KEYS}
    return out


class CocoDataModule(pl.LightningDataModule):
    """COCO-layout detection data with a generated shapes set as the default.

    Args:
        root: folder holding the data set; ``splits`` paths are relative to it.
        splits: ``{train|val|test: {images: folder, annotations: json file}}``; ``test: null``
            means "test on val" (logged).
        default_root: the only root for which the shapes set is generated: one folder per
            ``synthetic`` settings under it (see :func:`~attnlab.data.shapes_sets.ensure_shapes_coco`),
            unless the folder holds data of your own. Any other missing root is an error. None
            disables generation.
        synthetic: :class:`~attnlab.data.synthetic_shapes.ShapesConfig` settings.
        cache_dir: where each annotation file's cleaned index is cached by content
            (``${paths.cache_dir}/coco_index``); None keeps it in memory, re-parsed every run.
        image_size: target size of the longer side (``resize="longest"``) or of both sides
            (``resize="square"``); None keeps the original size.
        batch_size / eval_batch_size: train / val+test batch sizes (eval defaults to train's).
        num_workers: DataLoader workers; None = :func:`~attnlab.data.loader_workers.default_num_workers`
            (0 below 4 cores per job). ``persistent_workers`` keeps them across epochs.
        pin_memory: None = pin when CUDA is available.
        hflip_prob: probability of a horizontal flip for training samples.
        verify_images: decode every image at setup and list the unreadable ones; None = only
            for splits of at most ``VERIFY_AUTO_MAX_IMAGES`` (5000) images. A split that passed
            is remembered in ``cache_dir`` until one of its files changes.
    """

    def __init__(
        self,
        root: str,
        splits: Mapping[str, Any],
        default_root: str | None = None,
        synthetic: Mapping[str, Any] | None = None,
        cache_dir: str | None = None,
        image_size: int | None = 128,
        resize: str = "longest",
        batch_size: int = 16,
        eval_batch_size: int | None = None,
        num_workers: int | None = None,
        persistent_workers: bool = True,
        pin_memory: bool | None = None,
        hflip_prob: float = 0.5,
        verify_images: bool | None = None,
    ) -> None:
        super().__init__()
        self.root = Path(os.path.expanduser(str(root))).absolute()
        self.default_root = Path(os.path.expanduser(str(default_root))).absolute() if default_root else None
        self.splits = _normalise_splits(splits)
        self.synthetic = ShapesConfig.from_dict(plain(synthetic) or {})
        self.cache_dir = Path(os.path.expanduser(str(cache_dir))).absolute() if cache_dir else None
        self.image_size = image_size
        self.resize = resize
        self.batch_size = int(batch_size)
        self.eval_batch_size = int(eval_batch_size or batch_size)
        self.num_workers = default_num_workers() if num_workers is None else int(num_workers)
        self.persistent_workers = bool(persistent_workers)
        self.pin_memory = torch.cuda.is_available() if pin_memory is None else bool(pin_memory)
        self.hflip_prob = float(hflip_prob)
        self.verify_images = verify_images
        # Built now so that a bad resize/hflip setting fails at instantiation, not mid-run.
        self._train_tf = build_detection_transforms(True, image_size, resize, self.hflip_prob)
        self._eval_tf = build_detection_transforms(False, image_size, resize, self.hflip_prob)
        self._index = CocoIndexCache(self.cache_dir)
        self._labels: LabelSpace | None = None
        self._train_digest = ""
        self._indexed: dict[str, CocoSplit] = {}
        self._loaded: dict[str, CocoSplit] = {}
        self.datasets: dict[str, CocoDetectionDataset] = {}
        if self.splits["test"] is None:
            val = self.splits["val"]
            assert val is not None  # _normalise_splits lets only test be null
            log.info("data.splits.test is null: the test split is the val split (%s)", val["annotations"])

    # ------------------------------------------------------------------ data on disk

    def is_default_root(self) -> bool:
        """Whether ``root`` is the default root, the only one for which data is generated."""
        return self.default_root is not None and self.root.resolve() == self.default_root.resolve()

    def data_root(self) -> Path:
        """The folder the splits are read from: ``root``, or at the default root (unless it holds
        data of your own) the generated set for these ``synthetic`` settings."""
        if self.is_default_root() and is_generated_root(self.root):
            return shapes_set_dir(self.root, self.synthetic)
        return self.root

    def _missing_root_error(self) -> DataError:
        default = f" ({self.default_root})" if self.default_root else ""
        return DataError(
            f"data.root {self.root} does not exist. Set data.root to the folder holding your COCO-layout data "
            f"(data.splits.<split>.images and .annotations are relative to it). The generated shapes set is "
            f"only created for the default root{default}, never for a path you chose."
        )

    def prepare_data(self) -> None:
        """Generate the shapes set for these settings at the default root when it is missing.

        A root other than the default that does not exist raises :class:`DataError`: a user's
        path is never silently replaced by generated data.
        """
        if not self.is_default_root():
            if not self.root.is_dir():
                raise self._missing_root_error()
            return
        if not is_generated_root(self.root):
            return  # the user's own data placed at the default root
        out = shapes_set_dir(self.root, self.synthetic)
        if not out.is_dir():
            log.info("generating shapes dataset at %s ...", out)
        _, summary = ensure_shapes_coco(self.root, self.synthetic)
        if summary is not None:
            log.info("shapes dataset at %s: %s in %.1f s", out, summary["counts"], summary["seconds"])

    def _paths(self, split: str) -> tuple[Path, Path]:
        spec = self.splits[split]
        assert spec is not None
        root = self.data_root()
        return root / spec["images"], root / spec["annotations"]

    def _check_root(self) -> None:
        if not self.data_root().is_dir():
            raise self._missing_root_error()

    def resolve_split(self, split: str) -> str:
        """The split whose files serve ``split`` ("test" is "val" when ``data.splits.test`` is null)."""
        if split not in SPLIT_NAMES:
            raise ValueError(f"split must be one of {SPLIT_NAMES}, got {split!r}")
        return "val" if split == "test" and self.splits["test"] is None else split

    def _images_dir(self, name: str) -> Path:
        images, ann = self._paths(name)
        if not images.is_dir():
            raise DataError(f"images folder {images} for the {name} split of {ann} does not exist "
                            f"(set data.splits.{name}.images, relative to data.root)")
        return images

    def label_space(self) -> LabelSpace:
        """The label space, from the train annotation file's cached index (built on first use)."""
        if self._labels is None:
            self._check_root()
            _, ann = self._paths("train")
            split, self._labels, self._train_digest = self._index.train(
                ann, str(self._images_dir("train")), "data.splits.train.annotations", "data.splits.train.images")
            self._indexed["train"] = split
            log.info("label space from %s: %d classes %s", ann, len(self._labels.names), list(self._labels.names))
        return self._labels

    def split(self, split: str) -> CocoSplit:
        """The cleaned split ("test" may resolve to "val"): its index loaded (built once per
        content) and its image files checked, on first use."""
        name = self.resolve_split(split)
        if name not in self._loaded:
            labels = self.label_space()
            if name not in self._indexed:
                _, ann = self._paths(name)
                self._indexed[name] = self._index.split(
                    name, ann, str(self._images_dir(name)), labels, self._train_digest,
                    f"data.splits.{name}.annotations", f"data.splits.{name}.images")
            self._loaded[name] = self._check_files(name, self._indexed[name])
        return self._loaded[name]

    def _check_files(self, name: str, split: CocoSplit) -> CocoSplit:
        key = f"data.splits.{name}.images"
        signature = check_split_files(split.file_names(), split.images_dir, split.annotation_file, key)
        verify = self.verify_images if self.verify_images is not None else len(split) <= VERIFY_AUTO_MAX_IMAGES
        if verify:
            memo = self.cache_dir / "verified_images" if self.cache_dir is not None else None
            if verify_images(split.paths(), split.sizes(), signature, memo, split.annotation_file, key):
                log.info("%s split: decoded all %d images (data.verify_images)", name, len(split))
        stats = split.stats
        if name != "train" and stats["gt_boxes_not_crowd"] == 0:
            log.warning("%s (the %s split) has no boxes to score: its COCO metrics will be -1", split.annotation_file,
                        name)
        log.info("%s split from %s: %s", name, split.annotation_file, stats)
        return split

    def check_monitored_splits(self, monitors: Sequence[str]) -> None:
        """Raise :class:`DataError` when a monitored COCO metric (``val/map`` ...) comes from a split
        with no boxes to score: it would be -1 every epoch and pick checkpoints at random."""
        for name in ("val", "test"):
            watched = sorted(m for m in monitors if m.startswith((f"{name}/map", f"{name}/mar")))
            if not watched or self.split(name).stats["gt_boxes_not_crowd"]:
                continue
            raise DataError(
                f"{self.split(name).annotation_file} (data.splits.{self.resolve_split(name)}) has no boxes to score, "
                f"so {', '.join(watched)} would be -1 every epoch, but it is the monitored metric (monitor.metric, "
                f"used by checkpointing and early stopping). Point data.splits.{self.resolve_split(name)} at "
                f"annotated data, or monitor another metric (e.g. monitor.metric=val/loss)."
            )

    def setup(self, stage: str | None = None) -> None:
        """Load the splits a stage needs: fit -> train+val, validate -> val, test/predict -> test."""
        self._check_root()
        wanted = {"fit": ("train", "val"), "validate": ("val",), "test": ("test",), "predict": ("test",)}.get(
            stage or "", SPLIT_NAMES
        )
        self.label_space()
        for name in wanted:
            if name in self.datasets:
                continue
            cleaned = self.split(name)
            if name == "train":
                indices = cleaned.train_indices()
                if not len(indices):
                    raise DataError(f"{cleaned.annotation_file}: no train image has a usable box")
                self.datasets[name] = CocoDetectionDataset(cleaned, indices, self._train_tf)
            else:
                self.datasets[name] = CocoDetectionDataset(cleaned, None, self._eval_tf)

    # ------------------------------------------------------------------ loaders

    def _loader(self, split: str, shuffle: bool, batch_size: int) -> DataLoader:
        if split not in self.datasets:
            self.setup({"train": "fit", "val": "validate"}.get(split, "test"))
        workers = self.num_workers
        return DataLoader(
            self.datasets[split],
            batch_size=batch_size,
            shuffle=shuffle,
            num_workers=workers,
            collate_fn=collate_detection,
            pin_memory=self.pin_memory,
            persistent_workers=self.persistent_workers and workers > 0,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", True, self.batch_size)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", False, self.eval_batch_size)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", False, self.eval_batch_size)

    def predict_dataloader(self) -> DataLoader:
        return self._loader("test", False, self.eval_batch_size)

    # ------------------------------------------------------------------ for the model and evaluation

    def model_kwargs(self) -> dict[str, Any]:
        """What the detection task needs from the data.

        ``num_classes`` = C + 1 (background included), ``class_names`` (label i+1 -> names[i]),
        ``category_ids`` (label i+1 -> dataset category id category_ids[i]).
        """
        labels = self.label_space()
        return {
            "num_classes": labels.num_classes,
            "class_names": list(labels.names),
            "category_ids": list(labels.category_ids),
        }

    def gt_coco(self, split: str) -> Any:
        """The cleaned ground truth of ``split`` as a ``pycocotools.coco.COCO`` (remapped image and
        annotation ids from 1, dataset category ids, crowd kept with ``iscrowd=1``)."""
        return self.split(split).gt_coco()

    def gt_dict(self, split: str) -> dict[str, Any]:
        """The same ground truth as a COCO-format dict (e.g. for faster-coco-eval)."""
        return self.split(split).gt

    def to_dataset_image_id(self, split: str) -> dict[int, Any]:
        """Remapped image id (``target["image_id"]``) -> the image id in the split's annotation file."""
        return dict(self.split(split).to_dataset_image_id)

    def to_dataset_category_id(self) -> dict[int, Any]:
        """Contiguous label (1..C) -> dataset category id."""
        return self.label_space().to_dataset_category_id

    def to_coco_results(
        self, predictions: Sequence[Mapping[str, Tensor]], targets: Sequence[Mapping[str, Any]]
    ) -> list[dict[str, Any]]:
        """Detector outputs for a batch -> COCO results; see :func:`predictions_to_coco_results`."""
        return predictions_to_coco_results(predictions, targets, self.label_space().category_ids)

    def fixed_val_samples(self, n: int = 4) -> tuple[list[Tensor], list[dict[str, Any]]]:
        """The first ``n`` val images (in id order, those with boxes first), eval-transformed, as a batch.

        The same images every call and every run, so media logged across epochs and runs compare.
        """
        val = self.split("val")
        counts = val.box_counts()
        chosen = np.concatenate([np.flatnonzero(counts > 0), np.flatnonzero(counts == 0)])[: max(int(n), 0)]
        dataset = CocoDetectionDataset(val, chosen, self._eval_tf)
        return collate_detection([dataset[i] for i in range(len(dataset))])
