"""COCO-style object detection as a LightningModule: losses, COCO metrics and what its media show.

The architecture lives in :mod:`attnlab.models.detector` (a torchvision detector with spatial
attention); the COCO evaluation in :mod:`attnlab.evaluation.coco_eval`; hyper-parameters, the
optimizer and media logging come from :class:`attnlab.tasks.base.TaskModule`. This module only
trains and scores.

Logged metrics:
    train/loss, train/loss_<part>      detector loss and its parts (step and epoch)
    val/loss, val/loss_<part>          same on validation (one-stage detectors: FCOS, RetinaNet)
    val/map, val/map_50, val/map_75, val/map_{small,medium,large},
    val/mar_1, val/mar_10, val/mar_100, val/mar_{small,medium,large}
                                       COCOeval (bbox) on every image of the split, against the
                                       datamodule's cleaned ground truth (``gt_coco(split)``)
    test/...                           the same on the test split
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from attnlab.evaluation.coco_eval import CocoDetectionMetric
from attnlab.evaluation.coco_scoring import EVAL_BACKENDS, STAT_NAMES
from attnlab.models.detector import build_detector
from attnlab.plain import plain
from attnlab.tasks.base import TaskModule
from attnlab.tasks.detection_media import detection_images, query_position

__all__ = ["DetectionTask"]

log = logging.getLogger(__name__)

Batch = tuple[list[Tensor], list[dict[str, Any]]]


def _model_targets(targets: Sequence[Mapping[str, Any]]) -> list[dict[str, Tensor]]:
    """Only what torchvision detectors read (boxes (N, 4) xyxy, labels (N,) int64)."""
    return [{"boxes": t["boxes"], "labels": t["labels"]} for t in targets]


def _loss_name(part: str) -> str:
    # torchvision names parts "classification" (FCOS/RetinaNet) or "loss_classifier" (Faster R-CNN).
    return "loss_" + part.removeprefix("loss_")


class DetectionTask(TaskModule):
    """Train and evaluate :func:`~attnlab.models.detector.build_detector` on a COCO datamodule.

    Args:
        num_classes: ``C + 1`` (background included), from ``datamodule.model_kwargs()``.
        class_names: the ``C`` class names (label ``l`` is ``class_names[l - 1]``).
        category_ids: dataset category id of labels ``1..C`` (``category_ids[l - 1]``).
        attention: the ``attention`` config group as a dict (``kind`` + options); kind ``none`` is
            the plain torchvision detector.
        net: keyword arguments of :func:`~attnlab.models.detector.build_detector` (detector,
            backbone, weights, sizes, anchors, attention_levels ...).
        optimizer: ``functools.partial`` of a torch optimizer, called with ``params=`` (stored in the
            hyper-parameters as ``{"_target_": ..., **kwargs}``, see :mod:`attnlab.tasks.optim_factories`).
        scheduler: ``functools.partial`` of an LR scheduler (called with ``optimizer=``;
            ``total_steps`` / ``T_max`` are filled in from the trainer when left out) or None.
        scheduler_interval: ``step`` or ``epoch``.
        eval_backend: COCOeval implementation, ``pycocotools`` or ``faster_coco_eval``.
        n_media_images: validation images drawn with boxes and attention maps (W&B only).
        media_score_thresh: predicted boxes below this score are not drawn.

    ``self.save_hyperparameters()`` stores all of it, so ``DetectionTask.load_from_checkpoint(path)``
    rebuilds the model with no other argument.
    """

    # Hyper-parameters eval.py may change on a trained model: none (the COCO metrics are built in __init__).
    EVAL_SETTINGS: tuple[str, ...] = ()
    throughput_unit = "images"

    def __init__(
        self,
        num_classes: int,
        class_names: Sequence[str],
        category_ids: Sequence[Any],
        attention: Mapping[str, Any],
        net: Mapping[str, Any] | None = None,
        optimizer: Callable[..., torch.optim.Optimizer] | Mapping[str, Any] | None = None,
        scheduler: Callable[..., Any] | Mapping[str, Any] | None = None,
        scheduler_interval: str = "step",
        eval_backend: str = "pycocotools",
        n_media_images: int = 4,
        media_score_thresh: float = 0.3,
    ) -> None:
        super().__init__()
        if eval_backend not in EVAL_BACKENDS:
            raise ValueError(f"eval_backend must be one of {EVAL_BACKENDS}, got {eval_backend!r}")
        class_names = [str(n) for n in plain(class_names)]
        category_ids = list(plain(category_ids))
        if len(class_names) != num_classes - 1 or len(category_ids) != num_classes - 1:
            raise ValueError(
                f"num_classes={num_classes} counts the background, so class_names and category_ids need "
                f"{num_classes - 1} entries; got {len(class_names)} and {len(category_ids)}"
            )
        self.save_task_hyperparameters(locals())
        self.net = build_detector(num_classes, self.hparams.attention, **self.hparams.net)
        self.val_coco = CocoDetectionMetric(backend=eval_backend, category_ids=category_ids)
        self.test_coco = CocoDetectionMetric(backend=eval_backend, category_ids=category_ids)

    # ------------------------------------------------------------------ model
    def forward(self, images: list[Tensor]) -> list[dict[str, Tensor]]:
        """Detections for a list of ``(3, H, W)`` images in [0, 1]:
        ``[{"boxes": (N, 4) xyxy in those images' pixels, "scores": (N,), "labels": (N,) 1..C}]``."""
        return self.net(images)

    # ------------------------------------------------------------------ training
    def on_fit_start(self) -> None:
        # Before any step: a monitored COCO metric must have boxes to score (the datamodule knows
        # its splits, the trainer's checkpoint / early-stopping callbacks what they monitor).
        check = getattr(getattr(self.trainer, "datamodule", None), "check_monitored_splits", None)
        if check is not None:
            callbacks = self.trainer.callbacks  # type: ignore[attr-defined]  # set by Lightning's connector at run time
            monitors = {str(m) for cb in callbacks if (m := getattr(cb, "monitor", None))}
            check(sorted(monitors))

    def on_train_epoch_start(self) -> None:
        # torchvision detectors return losses only in training mode, and Lightning keeps whatever
        # mode the module had when fit() began (e.g. eval() after loading a checkpoint).
        self.net.train()

    def training_step(self, batch: Batch, batch_idx: int) -> Tensor:
        images, targets = batch
        losses = self.net(images, _model_targets(targets))
        loss = torch.stack(list(losses.values())).sum()
        size = len(images)
        # No .item(): logging tensors keeps the step free of host syncs.
        self.log("train/loss", loss, on_step=True, on_epoch=True, prog_bar=True, batch_size=size)
        self.log_dict(
            {f"train/{_loss_name(k)}": v.detach() for k, v in losses.items()},
            on_step=True,
            on_epoch=True,
            batch_size=size,
        )
        return loss

    def _eval_step(self, split: str, batch: Batch, metric: CocoDetectionMetric) -> None:
        images, targets = batch
        if self.net.has_loss_in_eval:
            losses, detections = self.net.losses_and_detections(images, _model_targets(targets))
            size = len(images)
            self.log(
                f"{split}/loss",
                torch.stack(list(losses.values())).sum(),
                on_epoch=True,
                sync_dist=True,
                batch_size=size,
            )
            self.log_dict(
                {f"{split}/{_loss_name(k)}": v for k, v in losses.items()},
                on_epoch=True,
                sync_dist=True,
                batch_size=size,
            )
        else:
            detections = self.net(images)
        self._update_coco(metric, detections, targets)

    @staticmethod
    def _update_coco(
        metric: CocoDetectionMetric, detections: Sequence[Mapping[str, Tensor]], targets: Sequence[Mapping[str, Any]]
    ) -> None:
        """Detections in transformed-image pixels -> original pixels -> the COCO metric."""
        from attnlab.data.detection_transforms import boxes_to_original

        preds = [
            {"boxes": boxes_to_original(d["boxes"], t), "scores": d["scores"], "labels": d["labels"]}
            for d, t in zip(detections, targets)
        ]
        metric.update(preds, [int(t["image_id"]) for t in targets])

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        self._eval_step("val", batch, self.val_coco)

    def test_step(self, batch: Batch, batch_idx: int) -> None:
        self._eval_step("test", batch, self.test_coco)

    def on_validation_epoch_end(self) -> None:
        if self.trainer.sanity_checking:
            # A couple of sanity batches say nothing about mAP; scoring them would only cost time.
            self.val_coco.reset()
            return
        self._log_coco("val", self.val_coco)

    def on_test_epoch_end(self) -> None:
        self._log_coco("test", self.test_coco)

    def _limited(self, split: str) -> bool:
        """Whether the trainer looks at only some batches of ``split`` (fast_dev_run, limit_*_batches)."""
        limit = self.trainer.limit_val_batches if split == "val" else self.trainer.limit_test_batches
        fast_dev_run = self.trainer.fast_dev_run  # type: ignore[attr-defined]  # set by Lightning's connector
        return bool(fast_dev_run) or isinstance(limit, int) or float(limit) < 1.0

    def _log_coco(self, split: str, metric: CocoDetectionMetric) -> None:
        datamodule = getattr(self.trainer, "datamodule", None)
        if datamodule is None or not hasattr(datamodule, "gt_coco"):
            log.warning("No datamodule with gt_coco(split): %s COCO metrics are not computed", split)
            metric.reset()
            return
        metric.set_ground_truth(datamodule.gt_coco(split))
        # The official protocol scores every image of the split; a run limited to some batches on
        # purpose scores the images it saw (otherwise the unseen images would count as misses).
        metric.evaluate_all_images = not self._limited(split)
        values = metric.compute()  # detections already gathered from every rank by torchmetrics
        metric.reset()
        # Python floats: COCOeval's float64 values, on any device (MPS has no float64).
        # sync_dist only silences Lightning's epoch-level warning: the values agree on every rank.
        self.log(f"{split}/map", float(values["map"]), prog_bar=True, sync_dist=True)
        self.log(f"{split}/map_50", float(values["map_50"]), prog_bar=True, sync_dist=True)
        self.log_dict(
            {f"{split}/{k}": float(values[k]) for k in STAT_NAMES if k not in ("map", "map_50")}, sync_dist=True
        )

    def test_outputs(self) -> dict[str, Any]:
        """The test detections as COCO results in the data set's own image and category ids, with what
        to score them against (call on all ranks before the test metric is reset: collective under DDP)."""
        with self.test_coco.sync_context():
            results = self.test_coco.results()
            state: list[Tensor] | Tensor = self.test_coco.seen_image_ids  # a list, or one tensor once synced
            if isinstance(state, list):
                state = torch.cat(state) if state else torch.zeros(0, dtype=torch.int64)
            seen = set(state.tolist())
        datamodule = self.trainer.datamodule  # type: ignore[attr-defined]  # set by Lightning's connector
        to_dataset = datamodule.to_dataset_image_id("test")
        evaluated = sorted(seen & set(to_dataset)) if self._limited("test") else sorted(to_dataset)
        return {
            "task": "detection",
            "detections": [dict(r, image_id=to_dataset[r["image_id"]]) for r in results],
            "annotation_file": str(datamodule.split("test").annotation_file),
            "image_ids": [to_dataset[i] for i in evaluated],
            "category_ids": list(self.hparams.category_ids),
            "all_images": not self._limited("test"),
        }

    # ------------------------------------------------------------------ cost
    def batch_units(self, batch: Batch) -> tuple[int, int]:
        """(images, images) in a batch."""
        return len(batch[0]), len(batch[0])

    # ------------------------------------------------------------------ prediction
    def predict_step(self, batch: Batch, batch_idx: int) -> list[dict[str, Any]]:
        """Detections per image in ORIGINAL image pixels, with the image id."""
        from attnlab.data.detection_transforms import boxes_to_original

        images, targets = batch
        detections = self.net(images)
        return [
            {
                "image_id": t["image_id"],
                "boxes": boxes_to_original(d["boxes"], t),
                "scores": d["scores"],
                "labels": d["labels"],
            }
            for d, t in zip(detections, targets)
        ]

    # ------------------------------------------------------------------ media
    def media(self) -> dict[str, Any]:
        """Predicted and ground-truth boxes on the datamodule's fixed validation images
        (``val/predictions``), and one query position's attention map over each (``val/attention``):
        the same images every epoch and every run, so media compare across both."""
        datamodule = getattr(self.trainer, "datamodule", None)
        if datamodule is None or not hasattr(datamodule, "fixed_val_samples"):
            log.warning("Detection media needs a datamodule with fixed_val_samples(n); skipped")
            return {}
        n = int(self.hparams.n_media_images)
        images, targets = datamodule.fixed_val_samples(n) if n > 0 else ([], [])
        if not images:
            return {}
        images = [img.to(self.device) for img in images]
        queries = [query_position(img, t["boxes"]) for img, t in zip(images, targets)]
        detections, maps = self.net.predict_with_attention(images, queries)
        return detection_images(
            images, targets, detections, maps, list(self.hparams.class_names), float(self.hparams.media_score_thresh)
        )

    # ------------------------------------------------------------------ optimisation
    def compile_targets(self) -> dict[str, nn.Module]:
        """What ``compile.enabled=true`` compiles: the backbone (CNN, FPN and the attention block),
        where the compute is; the heads' box decoding and NMS are data-dependent Python."""
        return {"net.detector.backbone": self.net.detector.backbone}
