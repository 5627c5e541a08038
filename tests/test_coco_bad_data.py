"""Issue 10, rows 5, 6, 7 and 10: COCO data stays where it is declared, is checked before training,
and a generated set is never replaced under a running job. Real files, real Trainer, real scripts."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import pytorch_lightning as pl
import torch

from attnlab.data.coco import CocoDataModule
from attnlab.data.synthetic_shapes import ShapesConfig, generate_shapes_coco
from attnlab.errors import DataError
from tests.coco_helpers import DEFAULT_SPLITS, REPO, ROBOFLOW_SPLITS, TINY, ann, make_roboflow_export, write_image

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _setup(root: Path, **kwargs) -> CocoDataModule:
    dm = CocoDataModule(root=str(root), splits=ROBOFLOW_SPLITS, image_size=None, num_workers=0, **kwargs)
    dm.setup("fit")
    return dm


def _set_file_name(json_path: Path, index: int, file_name: str) -> None:
    data = json.loads(json_path.read_text())
    data["images"][index]["file_name"] = file_name
    json_path.write_text(json.dumps(data))


# ----------------------------------------------------------------------------- row 5: paths stay inside


@pytest.mark.parametrize("kind", ["dotdot", "absolute"])
def test_file_name_escaping_the_images_folder_is_an_error(tmp_path: Path, kind: str) -> None:
    data = tmp_path / "data"
    make_roboflow_export(data)
    outside = tmp_path / "other" / "images" / "x.jpg"
    write_image(outside, 80, 60)
    val_json = data / "valid" / "_annotations.coco.json"
    name = "../../other/images/x.jpg" if kind == "dotdot" else str(outside)
    _set_file_name(val_json, 1, name)
    with pytest.raises(DataError) as err:
        _setup(data)
    msg = str(err.value)
    assert str(val_json) in msg and f"image id 1: file_name {name!r}" in msg and "outside the images folder" in msg


def test_symlink_leading_out_of_the_images_folder_is_an_error(tmp_path: Path) -> None:
    data = tmp_path / "data"
    make_roboflow_export(data)
    outside = tmp_path / "elsewhere" / "secret.jpg"
    write_image(outside, 80, 60)
    link = data / "valid" / "v1.jpg"
    link.unlink()
    link.symlink_to(outside)
    with pytest.raises(DataError) as err:
        _setup(data)
    msg = str(err.value)
    assert str(data / "valid" / "_annotations.coco.json") in msg and "'v1.jpg'" in msg and str(outside) in msg
    assert "symbolic link" in msg

    # A linked sub-folder leading out is caught too, and links that stay inside are fine.
    link.unlink()
    (data / "valid" / "sub").symlink_to(outside.parent)
    _set_file_name(data / "valid" / "_annotations.coco.json", 1, "sub/secret.jpg")
    with pytest.raises(DataError, match="folder 'sub'"):
        _setup(data)
    (data / "valid" / "sub").unlink()
    (data / "valid" / "store").mkdir()
    (data / "valid" / "v0.jpg").rename(data / "valid" / "store" / "v0.jpg")
    (data / "valid" / "v0.jpg").symlink_to("store/v0.jpg")
    write_image(data / "valid" / "v1.jpg", 80, 60)
    _set_file_name(data / "valid" / "_annotations.coco.json", 1, "v1.jpg")
    assert len(_setup(data).datasets["val"]) == 3


# ----------------------------------------------------------------------------- row 6: unreadable images


def test_unreadable_images_are_listed_at_setup_before_training(tmp_path: Path) -> None:
    data = tmp_path / "data"
    make_roboflow_export(data)
    (data / "train" / "b.jpg").write_bytes(os.urandom(2048))  # random bytes named .jpg
    good = (data / "valid" / "v0.jpg").read_bytes()
    (data / "valid" / "v0.jpg").write_bytes(good[: len(good) // 2])  # truncated
    with pytest.raises(DataError) as err:
        _setup(data)
    assert "b.jpg" in str(err.value) and "1 image(s) listed in" in str(err.value)  # train: checked first
    write_image(data / "train" / "b.jpg", 80, 60)
    with pytest.raises(DataError, match=r"v0\.jpg: .*truncated"):
        _setup(data)


def test_verification_is_remembered_and_automatic_only_for_small_splits(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    data, cache = tmp_path / "data", tmp_path / "cache"
    make_roboflow_export(data)
    caplog.set_level(logging.INFO, logger="attnlab.data.coco")
    _setup(data, cache_dir=str(cache))
    assert "train split: decoded all 4 images" in caplog.text
    caplog.clear()
    _setup(data, cache_dir=str(cache))
    assert "decoded all" not in caplog.text  # same files: remembered
    (data / "valid" / "v1.jpg").write_bytes(b"garbage")  # a changed file is decoded again
    with pytest.raises(DataError, match="v1.jpg"):
        _setup(data, cache_dir=str(cache))
    import attnlab.data.coco as coco_module

    monkeypatch.setattr(coco_module, "VERIFY_AUTO_MAX_IMAGES", 2)  # splits bigger than that: off by default
    _setup(data, cache_dir=str(cache))
    with pytest.raises(DataError, match="v1.jpg"):
        _setup(data, cache_dir=str(cache), verify_images=True)


# ----------------------------------------------------------------------------- row 7: empty val/test splits


def _empty_val(root: Path) -> Path:
    generate_shapes_coco(
        root,
        ShapesConfig(
            n_train=8, n_val=4, n_test=4, image_size=64, min_object_size=12, max_object_size=30, max_objects=3
        ),
    )
    val_json = root / "annotations" / "instances_val.json"
    data = json.loads(val_json.read_text())
    data["annotations"] = []
    val_json.write_text(json.dumps(data))
    return val_json


def _task(dm: CocoDataModule):
    import functools

    from attnlab.tasks.detection import DetectionTask

    return DetectionTask(
        attention={"kind": "none"},
        net=dict(
            min_size=64,
            max_size=64,
            fpn_channels=32,
            small_cnn_widths=[8, 16, 32, 32],
            small_cnn_depth=1,
            attention_levels=[],
        ),
        optimizer=functools.partial(torch.optim.AdamW, lr=1e-3),
        scheduler=None,
        **dm.model_kwargs(),
    )


class _Steps(pl.Callback):
    def __init__(self) -> None:
        self.steps = 0

    def on_train_batch_end(self, *args: object) -> None:
        self.steps += 1


def _fit(dm: CocoDataModule, callbacks: list[pl.Callback]) -> pl.Trainer:
    trainer = pl.Trainer(
        max_epochs=1,
        limit_train_batches=1,
        accelerator="cpu",
        logger=False,
        callbacks=callbacks,
        enable_checkpointing=any(isinstance(c, pl.callbacks.ModelCheckpoint) for c in callbacks),
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
    )
    trainer.fit(_task(dm), datamodule=dm)
    return trainer


def test_empty_val_split_is_an_error_when_its_metric_is_monitored(tmp_path: Path) -> None:
    val_json = _empty_val(tmp_path / "shapes")
    dm = CocoDataModule(
        root=str(tmp_path / "shapes"), splits=DEFAULT_SPLITS, image_size=64, batch_size=4, num_workers=0
    )
    steps = _Steps()
    checkpoint = pl.callbacks.ModelCheckpoint(dirpath=tmp_path / "ckpt", monitor="val/map", mode="max")
    with pytest.raises(DataError) as err:
        _fit(dm, [checkpoint, steps])
    msg = str(err.value)
    assert str(val_json) in msg and "val/map" in msg and "monitor.metric" in msg and "no boxes" in msg
    assert steps.steps == 0  # raised before training started


def test_empty_val_split_is_a_warning_when_nothing_monitors_it(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    val_json = _empty_val(tmp_path / "shapes")
    dm = CocoDataModule(
        root=str(tmp_path / "shapes"), splits=DEFAULT_SPLITS, image_size=64, batch_size=4, num_workers=0
    )
    caplog.set_level(logging.WARNING, logger="attnlab.data.coco")
    steps = _Steps()
    trainer = _fit(dm, [steps])
    assert trainer.state.finished and steps.steps == 1
    assert f"{val_json} (the val split) has no boxes to score" in caplog.text


def test_coco_eval_rejects_detections_of_unknown_categories(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``scripts/coco_eval.py GT DETS`` (its ``main``, in process: the script is one call to it)."""
    from attnlab.evaluation.coco_eval import main

    gt = {
        "images": [{"id": 1, "file_name": "a.jpg", "width": 100, "height": 100}],
        "annotations": [ann(1, 1, 3, [10, 10, 30, 30])],
        "categories": [{"id": 3, "name": "cat"}],
    }
    dets = [
        {"image_id": 1, "category_id": 3, "bbox": [10, 10, 30, 30], "score": 0.9},
        {"image_id": 1, "category_id": 17, "bbox": [10, 10, 30, 30], "score": 0.8},
        {"image_id": 1, "category_id": 4, "bbox": [50, 50, 10, 10], "score": 0.5},
    ]
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    (tmp_path / "dets.json").write_text(json.dumps(dets))
    assert main([str(tmp_path / "gt.json"), str(tmp_path / "dets.json")]) == 1
    err = capsys.readouterr().err
    assert "2 detection(s) have a category id that is not in the ground truth: [4, 17]" in err and "[3]" in err


# ----------------------------------------------------------------------------- row 10: generated sets


def test_a_generated_set_is_never_replaced_under_a_running_job(tmp_path: Path) -> None:
    root = tmp_path / "data" / "shapes_coco"
    first = CocoDataModule(
        root=str(root),
        default_root=str(root),
        splits=DEFAULT_SPLITS,
        synthetic=TINY,
        image_size=None,
        num_workers=0,
        hflip_prob=0.0,
    )  # pixels compared below: no flip
    first.prepare_data()
    first.setup("fit")
    # Another run with other settings starts while the first one trains.
    second = CocoDataModule(
        root=str(root),
        default_root=str(root),
        splits=DEFAULT_SPLITS,
        synthetic={**TINY, "seed": 1},
        image_size=None,
        num_workers=0,
    )
    second.prepare_data()
    second.setup("fit")
    reference = tmp_path / "reference"
    generate_shapes_coco(reference, ShapesConfig.from_dict(TINY))
    image, _ = first.datasets["train"][0]
    name = first.datasets["train"].record(0).file_name
    from PIL import Image

    expected = np.asarray(Image.open(reference / "images" / "train" / name).convert("RGB"))
    assert np.array_equal((image.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8), expected)
    assert first.data_root() != second.data_root()


def test_an_unwritable_default_root_names_the_folder_and_the_key(tmp_path: Path) -> None:
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    root = blocker / "shapes_coco"
    dm = CocoDataModule(
        root=str(root), default_root=str(root), splits=DEFAULT_SPLITS, synthetic=TINY, image_size=None, num_workers=0
    )
    with pytest.raises(DataError) as err:
        dm.prepare_data()
    assert str(root) in str(err.value) and "data.default_root" in str(err.value)


_RUN = """
import json, sys
from attnlab.data.coco import CocoDataModule
root, seed, n_train = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
splits = {s: {"images": f"images/{s}", "annotations": f"annotations/instances_{s}.json"} for s in ("train", "val", "test")}
synthetic = {"n_train": n_train, "n_val": 3, "n_test": 3, "image_size": 48, "min_object_size": 12,
             "max_object_size": 24, "seed": seed}
dm = CocoDataModule(root=root, default_root=root, splits=splits, synthetic=synthetic, image_size=None, num_workers=0)
dm.prepare_data()
dm.setup("fit")
images = sum(1 for _ in dm.train_dataloader() for _ in _[0])
print(json.dumps({"root": str(dm.data_root()), "train_images": len(dm.split("train")), "loaded": images}))
"""


@pytest.mark.slow  # three processes importing torch at once; the sequential case above is fast
def test_two_runs_with_different_settings_at_once_both_work(tmp_path: Path) -> None:
    root = tmp_path / "shapes_coco"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "src"), str(REPO)])}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _RUN, str(root), str(seed), str(n)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for seed, n in ((0, 60), (1, 40), (0, 60))
    ]
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], [o[1][-2000:] for o in outs]
    results = [json.loads(o[0].strip().splitlines()[-1]) for o in outs]
    assert [r["train_images"] for r in results] == [60, 40, 60]
    assert results[0]["root"] == results[2]["root"] != results[1]["root"]
    assert len([p for p in root.iterdir() if p.name.startswith("set-")]) == 2
