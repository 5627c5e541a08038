"""What the COCO loader hands a model: transforms that move boxes to hand-computed coordinates and back,
plain dataset items, variable box counts through collate, and a real Trainer consuming the datamodule.
(Layouts, cleaning, label mapping, errors and the generator are in test_coco_data.py.)"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torchvision import tv_tensors

from attnlab.data.coco import CocoDataModule
from attnlab.data.coco_dataset import CocoDetectionDataset
from attnlab.data.detection_transforms import boxes_to_original, build_detection_transforms
from tests.coco_helpers import DEFAULT_SPLITS, ROBOFLOW_SPLITS, make_roboflow_export


def _transform(
    tf: Any, width: int, height: int, boxes: list[list[float]], labels: list[int]
) -> tuple[torch.Tensor, dict]:
    image = Image.new("RGB", (width, height), (200, 100, 50))
    target = {
        "boxes": tv_tensors.BoundingBoxes(
            torch.tensor(boxes, dtype=torch.float32), format="XYXY", canvas_size=(height, width)
        ),
        "labels": torch.tensor(labels, dtype=torch.int64),
    }
    return tf(image, target)


def test_resize_and_flip_move_boxes_to_hand_computed_coordinates() -> None:
    # 100x50 image, longest side -> 200: scale 2; box [10, 5, 30, 25] -> [20, 10, 60, 50]
    img, t = _transform(build_detection_transforms(False, 200, "longest"), 100, 50, [[10, 5, 30, 25]], [3])
    assert img.shape == (3, 100, 200) and img.dtype == torch.float32
    assert torch.allclose(img[:, 0, 0], torch.tensor([200, 100, 50]) / 255.0)
    assert t["boxes"].tolist() == [[20.0, 10.0, 60.0, 50.0]] and t["labels"].dtype == torch.int64
    assert t["hflip"] is False

    # ... then flipped (p=1): x -> 200 - x: [140, 10, 180, 50]
    img, t = _transform(
        build_detection_transforms(True, 200, "longest", hflip_prob=1.0), 100, 50, [[10, 5, 30, 25]], [3]
    )
    assert t["boxes"].tolist() == [[140.0, 10.0, 180.0, 50.0]] and t["hflip"] is True
    target = {"hflip": True, "size": (100, 200), "scale": (2.0, 2.0), "orig_size": (50, 100)}
    assert boxes_to_original(t["boxes"], target).tolist() == [[10.0, 5.0, 30.0, 25.0]]

    # square 64: sx = 0.64, sy = 1.28
    _, t = _transform(build_detection_transforms(False, 64, "square"), 100, 50, [[10, 5, 30, 25]], [1])
    assert torch.allclose(t["boxes"], torch.tensor([[6.4, 6.4, 19.2, 32.0]]))

    # Downscaling by 4 (100x48 -> 25x12): a 2-px-wide box becomes 0.5 px and is sanitized away with its label.
    _, t = _transform(
        build_detection_transforms(False, 25, "longest"), 100, 48, [[10, 4, 30, 24], [50, 4, 52, 24]], [1, 2]
    )
    assert t["boxes"].tolist() == [[2.5, 1.0, 7.5, 6.0]] and t["labels"].tolist() == [1]


def test_dataset_scale_maps_predictions_back_to_original_pixels(tmp_path: Path) -> None:
    make_roboflow_export(tmp_path)
    dm = CocoDataModule(root=str(tmp_path), splits=ROBOFLOW_SPLITS, image_size=40, hflip_prob=1.0)
    dm.setup("fit")
    img, t = dm.datasets["train"][0]  # a.jpg, 80x60 -> 40x30, flipped
    assert img.shape == (3, 30, 40) and t["scale"] == (0.5, 0.5) and t["hflip"] is True
    # [10, 10, 30, 30] -> scaled [5, 5, 15, 15] -> flipped in width 40: [25, 5, 35, 15]
    assert t["boxes"][0].tolist() == [25.0, 5.0, 35.0, 15.0]
    np.testing.assert_allclose(boxes_to_original(t["boxes"], t).numpy(), dm.datasets["train"].record(0).boxes)


def test_real_trainer_consumes_the_datamodule(tiny_shapes: Path) -> None:
    import pytorch_lightning as pl

    class Probe(pl.LightningModule):
        """Trains one scalar on a loss built from the batch's boxes; records what it saw."""

        def __init__(self) -> None:
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(()))
            self.seen: list[int] = []

        def _loss(self, batch: Any) -> torch.Tensor:
            images, targets = batch
            assert len(images) == len(targets) and all(img.shape[0] == 3 for img in images)
            self.seen += [t["image_id"] for t in targets]
            sizes = torch.cat([t["boxes"][:, 2:] - t["boxes"][:, :2] for t in targets]).mean()
            return (self.w - sizes / 64) ** 2

        def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
            return self._loss(batch)

        def validation_step(self, batch: Any, batch_idx: int) -> None:
            self.log("val/loss", self._loss(batch), batch_size=len(batch[0]))

        def configure_optimizers(self) -> torch.optim.Optimizer:
            return torch.optim.SGD(self.parameters(), lr=0.5)

    dm = CocoDataModule(root=str(tiny_shapes), splits=DEFAULT_SPLITS, batch_size=4)
    model = Probe()
    trainer = pl.Trainer(
        max_epochs=1,
        limit_train_batches=2,
        limit_val_batches=1,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(model, datamodule=dm)
    assert trainer.state.finished and len(model.seen) == 4 + 2 * 4 + 4  # sanity val + 2 train batches + val
    assert model.w.item() > 0 and "val/loss" in trainer.callback_metrics


def test_dataset_items_are_plain_and_collate_keeps_variable_box_counts(tiny_shapes: Path) -> None:
    dm = CocoDataModule(root=str(tiny_shapes), splits=DEFAULT_SPLITS, batch_size=4)
    dm.setup("validate")
    ds = dm.datasets["val"]
    assert isinstance(ds, CocoDetectionDataset) and len(ds) == 4
    images, targets = next(iter(dm.val_dataloader()))
    counts = [len(t["boxes"]) for t in targets]
    expected = [len(ds.record(i).boxes) for i in range(len(ds))]
    assert counts == expected and all(type(i) is torch.Tensor for i in images)
