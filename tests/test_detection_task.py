"""DetectionTask with a real Trainer on a tiny generated shapes set: losses, COCO metrics, checkpoints, media."""

from __future__ import annotations

import functools
import logging
from pathlib import Path

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from omegaconf import OmegaConf

from attnlab.data.coco import CocoDataModule
from attnlab.data.synthetic_shapes import ShapesConfig, generate_shapes_coco
from attnlab.evaluation.coco_scoring import STAT_NAMES
from attnlab.tasks.detection import DetectionTask
from attnlab.tasks.detection_media import attention_figure
from attnlab.tasks.media import figure_pixels

REPO = Path(__file__).resolve().parents[1]
SPLITS = {
    s: {"images": f"images/{s}", "annotations": f"annotations/instances_{s}.json"} for s in ("train", "val", "test")
}
NET = dict(
    min_size=64,
    max_size=64,
    fpn_channels=64,
    small_cnn_widths=[16, 32, 64, 64],
    small_cnn_depth=1,
    attention_levels=["c4"],
    score_thresh=0.05,
)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def shapes_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("shapes")
    generate_shapes_coco(
        root,
        ShapesConfig(
            n_train=8, n_val=5, n_test=3, image_size=64, min_object_size=12, max_object_size=30, max_objects=3
        ),
    )
    return root


def _datamodule(root: Path) -> CocoDataModule:
    dm = CocoDataModule(root=str(root), splits=SPLITS, default_root=None, image_size=64, batch_size=4, num_workers=0)
    dm.prepare_data()
    dm.setup("fit")
    return dm


def _task(dm: CocoDataModule, kind: str = "additive", **overrides) -> DetectionTask:
    attention = {"kind": kind, "hidden_dim": 16} if kind == "additive" else {"kind": kind}
    kwargs = dict(
        attention=attention,
        net=dict(NET),
        optimizer=functools.partial(torch.optim.AdamW, lr=1e-3, weight_decay=1e-4),
        scheduler=functools.partial(torch.optim.lr_scheduler.OneCycleLR, max_lr=1e-3, pct_start=0.3),
        eval_backend="pycocotools",
    )
    kwargs.update(overrides)
    return DetectionTask(**kwargs, **dm.model_kwargs())


def _trainer(tmp_path: Path, **kwargs) -> pl.Trainer:
    options = dict(
        accelerator="cpu",
        devices=1,
        max_epochs=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        default_root_dir=str(tmp_path),
    )
    options.update(kwargs)
    return pl.Trainer(**options)


def test_fit_validate_test_log_losses_and_all_coco_metrics(shapes_root: Path, tmp_path: Path) -> None:
    dm = _datamodule(shapes_root)
    task = _task(dm)
    assert task.hparams.num_classes == 4 and task.hparams.class_names == ["circle", "square", "triangle"]
    trainer = _trainer(tmp_path, limit_train_batches=2)
    trainer.fit(task, datamodule=dm)
    metrics = trainer.callback_metrics
    for name in (
        "train/loss",
        "train/loss_classification",
        "train/loss_bbox_regression",
        "train/loss_bbox_ctrness",
        "val/loss",
        "val/loss_classification",
    ):
        assert torch.isfinite(metrics[name]), name
    for name in STAT_NAMES:
        value = float(metrics[f"val/{name}"])
        assert value == -1.0 or 0.0 <= value <= 1.0, name
    assert task.val_coco.evaluate_all_images  # every val batch was seen: the official protocol
    results = trainer.test(task, datamodule=dm, verbose=False)[0]
    assert {f"test/{n}" for n in STAT_NAMES} <= set(results) and "test/loss" in results
    assert task.test_coco.det_boxes == []  # reset after logging


def test_validation_scores_exactly_what_coco_eval_gives_for_the_predictions(shapes_root: Path, tmp_path: Path) -> None:
    """val/map is COCOeval of the model's detections mapped back to original pixels (independent check)."""
    from pycocotools.cocoeval import COCOeval

    dm = _datamodule(shapes_root)
    task = _task(dm, kind="dot")
    trainer = _trainer(tmp_path, limit_train_batches=1)
    trainer.fit(task, datamodule=dm)
    logged = float(trainer.callback_metrics["val/map_50"])
    task.eval()
    results = []
    with torch.no_grad():
        for images, targets in dm.val_dataloader():
            results += dm.to_coco_results(task(images), targets)  # the data module's own conversion
    gt = dm.gt_coco("val")
    if not results:
        assert logged == 0.0
        return
    evaluator = COCOeval(gt, gt.loadRes(results), "bbox")
    evaluator.params.imgIds = sorted(gt.getImgIds())
    evaluator.evaluate()
    evaluator.accumulate()
    evaluator.summarize()
    assert logged == pytest.approx(evaluator.stats[1], abs=1e-6)


def test_limited_runs_score_only_the_images_seen(shapes_root: Path, tmp_path: Path) -> None:
    dm = _datamodule(shapes_root)
    task = _task(dm, kind="none")
    trainer = _trainer(tmp_path, limit_train_batches=1, limit_val_batches=1)
    trainer.fit(task, datamodule=dm)
    assert not task.val_coco.evaluate_all_images
    assert "val/map" in trainer.callback_metrics


def test_checkpoint_round_trip(shapes_root: Path, tmp_path: Path) -> None:
    """load_from_checkpoint(path) alone rebuilds the same model (default torch.load, weights_only=True)."""
    dm = _datamodule(shapes_root)
    task = _task(dm, kind="multihead", eval_backend="faster_coco_eval")
    trainer = _trainer(tmp_path, limit_train_batches=1, limit_val_batches=1)
    trainer.fit(task, datamodule=dm)
    path = tmp_path / "task.ckpt"
    trainer.save_checkpoint(path)
    assert torch.serialization.get_unsafe_globals_in_checkpoint(str(path)) == []
    loaded = DetectionTask.load_from_checkpoint(path, weights_only=True)
    assert loaded.hparams.attention == {"kind": "multihead"}
    assert loaded.hparams.net == task.hparams.net and loaded.hparams.eval_backend == "faster_coco_eval"
    assert loaded.hparams.optimizer["_target_"].endswith("AdamW")
    for (name, a), (_, b) in zip(task.state_dict().items(), loaded.state_dict().items()):
        assert torch.equal(a, b), name
    images = [torch.rand(3, 64, 64, generator=torch.Generator().manual_seed(1))]
    task.eval()
    loaded.eval()
    with torch.no_grad():
        ours, theirs = task(images)[0], loaded(images)[0]
    assert torch.equal(ours["boxes"], theirs["boxes"]) and torch.equal(ours["scores"], theirs["scores"])
    # The stored optimizer config still builds the optimizer and schedule.
    trainer2 = _trainer(tmp_path, max_epochs=1, limit_train_batches=1, limit_val_batches=1)
    trainer2.fit(loaded, datamodule=dm)
    assert trainer2.global_step == 1


def test_none_baseline_and_other_detectors_train(shapes_root: Path, tmp_path: Path) -> None:
    dm = _datamodule(shapes_root)
    for kind, detector in (("none", "fcos"), ("general", "retinanet"), ("additive", "faster_rcnn")):
        net = dict(NET, detector=detector)
        if detector == "faster_rcnn":
            net["box_representation_size"] = 32
        task = _task(dm, kind=kind, net=net)
        trainer = _trainer(tmp_path, limit_train_batches=1, limit_val_batches=2)
        trainer.fit(task, datamodule=dm)
        assert torch.isfinite(trainer.callback_metrics["train/loss"]), detector
        assert "val/map" in trainer.callback_metrics, detector
        assert ("val/loss" in trainer.callback_metrics) == (detector != "faster_rcnn")
    assert list(task.net.spatial_attention) == ["c4"]  # the last one (faster_rcnn) has attention


def test_media_logged_to_wandb_offline(shapes_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from pytorch_lightning.loggers import WandbLogger

    from attnlab.callbacks import MediaLogger

    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    dm = _datamodule(shapes_root)
    task = _task(dm, n_media_images=2, media_score_thresh=0.0)
    logger = WandbLogger(project="attnlab-tests", save_dir=str(tmp_path), offline=True)
    trainer = _trainer(
        tmp_path, logger=logger, limit_train_batches=1, limit_val_batches=1, callbacks=[MediaLogger(every_n_epochs=1)]
    )
    try:
        trainer.fit(task, datamodule=dm)
        run_dir = Path(logger.experiment.dir).parent
    finally:
        import wandb

        wandb.finish()
    media = sorted(p.relative_to(run_dir).as_posix() for p in run_dir.rglob("*.png"))
    assert any("val/predictions" in m or "predictions" in m for m in media), media
    assert any("attention" in m for m in media), media


def test_media_failures_warn_instead_of_raising(shapes_root: Path, caplog: pytest.LogCaptureFixture) -> None:
    task = _task(_datamodule(shapes_root))  # not attached to a trainer: reading task.trainer fails
    with caplog.at_level(logging.WARNING):
        task.log_media([object()])
    assert "media logging failed" in caplog.text


def test_attention_figure_draws_an_rgb_image() -> None:
    from attnlab.models.detector import AttentionMap

    image = np.zeros((64, 48, 3), dtype=np.uint8)
    amap = AttentionMap("c4", torch.softmax(torch.randn(16), 0).reshape(4, 4), (64.0, 64.0), (20.0, 30.0))
    figure = figure_pixels(attention_figure(image, [amap, amap], title="t"))
    assert figure.ndim == 3 and figure.shape[2] == 3 and figure.dtype == np.uint8 and figure.std() > 0


def test_config_instantiates_the_task(shapes_root: Path) -> None:
    """conf/model/cnn_attn.yaml as Hydra instantiates it (minus `task`, which train.py strips)."""
    from hydra.utils import instantiate

    cfg = OmegaConf.load(REPO / "conf" / "model" / "cnn_attn.yaml")
    assert cfg.task == "detection" and cfg._target_ == "attnlab.tasks.detection.DetectionTask"
    del cfg["task"]
    recipe = OmegaConf.load(REPO / "conf" / "recipe" / "cnn_attn.yaml")
    assert recipe.monitor.metric == "val/map" and recipe.monitor.mode == "max"
    assert int(recipe.trainer.max_epochs) >= 1 and "gradient_clip_val" in recipe.trainer
    dm = _datamodule(shapes_root)
    attention = OmegaConf.to_container(OmegaConf.load(REPO / "conf" / "attention" / "additive.yaml"))
    task = instantiate(cfg, attention=attention, **dm.model_kwargs())
    assert isinstance(task, DetectionTask)
    assert task.hparams.net["min_size"] == task.hparams.net["max_size"] == 128  # no data node: the default
    assert set(task.net.spatial_attention) == set(cfg.net.attention_levels)
    assert isinstance(task.hparams.optimizer, dict) and task.hparams.scheduler["max_lr"] == cfg.optimizer.lr
