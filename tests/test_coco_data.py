"""COCO-layout detection data: layouts, cleaning, label mapping, errors, generator, the Hydra config.
(Transforms, items and a real Trainer reading them: test_coco_loading.py.)

Everything runs on real files written under tmp_path (real JPEGs, real JSON, real pycocotools).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from attnlab.data.array_store import StoredArrays
from attnlab.data.coco import CocoDataModule
from attnlab.data.coco_index import LabelSpace, build_label_space, clean_split
from attnlab.data.coco_parse import parse_annotation_file
from attnlab.data.coco_split import CocoSplit
from attnlab.data.synthetic_shapes import ShapesConfig, generate_shapes_coco
from attnlab.errors import DataError
from tests.coco_helpers import (
    DEFAULT_SPLITS,
    REPO,
    ROBOFLOW_SPLITS,
    TINY,
    ann,
    make_roboflow_export,
    write_split,
)


def build_split(name: str, path: Path, images_dir: Path, labels: LabelSpace) -> CocoSplit:
    """One split cleaned in memory (what the cache stores), without the datamodule."""
    arrays, meta = clean_split(parse_annotation_file(path), images_dir, labels)
    return CocoSplit(name, str(images_dir), StoredArrays(arrays, meta), labels)


def coco_ap(dm: CocoDataModule, split: str, results: list[dict]) -> float:
    from pycocotools.cocoeval import COCOeval

    gt = dm.gt_coco(split)
    with contextlib.redirect_stdout(io.StringIO()):
        ev = COCOeval(gt, gt.loadRes(results), "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return float(ev.stats[1])  # AP@0.5


def tree_digest(root: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        if p.is_file():
            h.update(str(p.relative_to(root)).encode())
            h.update(p.read_bytes())
    return h.hexdigest()


# ----------------------------------------------------------------------------- generator


def test_generator_is_deterministic_and_writes_coco_layout(tmp_path: Path, tiny_shapes: Path) -> None:
    again = tmp_path / "again"
    generate_shapes_coco(again, ShapesConfig.from_dict(TINY))
    assert tree_digest(again) == tree_digest(tiny_shapes)

    other_seed = tmp_path / "other"
    generate_shapes_coco(other_seed, ShapesConfig.from_dict({**TINY, "seed": 1}))
    assert tree_digest(other_seed) != tree_digest(tiny_shapes)

    # val/test images are seeded per (seed, split, index): more train images leave them unchanged
    more_train = tmp_path / "more"
    generate_shapes_coco(more_train, ShapesConfig.from_dict({**TINY, "n_train": 12}))
    assert tree_digest(more_train / "images" / "val") == tree_digest(tiny_shapes / "images" / "val")

    for split, n in (("train", 10), ("val", 4), ("test", 4)):
        data = json.loads((tiny_shapes / "annotations" / f"instances_{split}.json").read_text())
        assert len(data["images"]) == n
        assert [c["name"] for c in data["categories"]] == ["circle", "square", "triangle"]
        assert [c["id"] for c in data["categories"]] == [1, 2, 3]
        assert [a["id"] for a in data["annotations"]] == list(range(1, len(data["annotations"]) + 1))
        for img in data["images"]:
            assert (img["width"], img["height"]) == (64, 64)
            assert (tiny_shapes / "images" / split / img["file_name"]).is_file()
        for a in data["annotations"]:
            x, y, w, h = a["bbox"]
            assert a["iscrowd"] == 0 and 0 < a["area"] <= w * h
            assert x >= 0 and y >= 0 and x + w <= 64 and y + h <= 64 and w >= 4 and h >= 4


def test_generator_refuses_to_overwrite_foreign_folder(tmp_path: Path) -> None:
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="not empty"):
        generate_shapes_coco(tmp_path / "mine", ShapesConfig.from_dict(TINY))
    with pytest.raises(FileExistsError, match="not written by the shapes generator"):
        generate_shapes_coco(tmp_path / "mine", ShapesConfig.from_dict(TINY), overwrite=True)
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"
    with pytest.raises(ValueError, match="unknown shapes-generator settings"):
        ShapesConfig.from_dict({"n_trian": 3})


# ----------------------------------------------------------------------------- default layout


def test_default_root_is_generated_and_batches_have_the_documented_format(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    root = tmp_path / "data" / "shapes_coco"
    dm = CocoDataModule(
        root=str(root), default_root=str(root), splits=DEFAULT_SPLITS, synthetic=TINY, image_size=96, batch_size=4
    )
    caplog.set_level(logging.INFO, logger="attnlab.data.coco")
    dm.prepare_data()
    assert f"generating shapes dataset at {dm.data_root()}" in caplog.text
    assert dm.data_root().parent == root and dm.data_root().name.startswith("set-")
    assert (dm.data_root() / "annotations" / "instances_train.json").is_file()

    # Second call: already there with the same settings, nothing regenerated.
    caplog.clear()
    dm.prepare_data()
    assert "generating" not in caplog.text

    dm.setup("fit")
    assert dm.model_kwargs() == {
        "num_classes": 4,
        "class_names": ["circle", "square", "triangle"],
        "category_ids": [1, 2, 3],
    }
    images, targets = next(iter(dm.train_dataloader()))
    assert len(images) == len(targets) == 4
    for img, t in zip(images, targets):
        assert img.dtype == torch.float32 and img.shape == (3, 96, 96) and 0.0 <= img.min() <= img.max() <= 1.0
        assert t["boxes"].dtype == torch.float32 and t["boxes"].shape[1] == 4 and len(t["boxes"]) >= 1
        assert type(t["boxes"]) is torch.Tensor  # plain tensors, not tv_tensors
        assert t["labels"].dtype == torch.int64 and t["labels"].shape == (len(t["boxes"]),)
        assert set(t["labels"].tolist()) <= {1, 2, 3}
        assert t["orig_size"] == (64, 64) and t["size"] == (96, 96) and t["scale"] == (1.5, 1.5)
        assert isinstance(t["image_id"], int) and isinstance(t["hflip"], bool)
        assert (t["boxes"][:, 2:] > t["boxes"][:, :2]).all() and (t["boxes"] >= 0).all() and (t["boxes"] <= 96).all()
    assert dm.gt_coco("val").getImgIds() == [1, 2, 3, 4]

    # The targets' boxes mapped back and scored against the cleaned ground truth: perfect AP.
    results = []
    for _images, targets in dm.val_dataloader():
        preds = [{"boxes": t["boxes"], "scores": torch.ones(len(t["boxes"])), "labels": t["labels"]} for t in targets]
        results += dm.to_coco_results(preds, targets)
    assert coco_ap(dm, "val", results) == pytest.approx(1.0)

    # Fixed media samples: same images every call, as a batch.
    a_imgs, a_tgts = dm.fixed_val_samples(2)
    b_imgs, b_tgts = dm.fixed_val_samples(2)
    assert [t["image_id"] for t in a_tgts] == [t["image_id"] for t in b_tgts] == [1, 2]
    assert all(torch.equal(x, y) for x, y in zip(a_imgs, b_imgs))

    # Changed generator settings at the default root: a set of its own, the first one left as it was.
    caplog.clear()
    dm2 = CocoDataModule(
        root=str(root), default_root=str(root), splits=DEFAULT_SPLITS, synthetic={**TINY, "n_train": 6}
    )
    dm2.prepare_data()
    assert f"generating shapes dataset at {dm2.data_root()}" in caplog.text and dm2.data_root() != dm.data_root()
    assert len(json.loads((dm2.data_root() / "annotations" / "instances_train.json").read_text())["images"]) == 6
    assert len(json.loads((dm.data_root() / "annotations" / "instances_train.json").read_text())["images"]) == 10


def test_missing_user_root_is_an_error_and_nothing_is_generated(tmp_path: Path) -> None:
    default = tmp_path / "data" / "shapes_coco"
    user = tmp_path / "my_coco"
    dm = CocoDataModule(root=str(user), default_root=str(default), splits=DEFAULT_SPLITS, synthetic=TINY)
    with pytest.raises(DataError) as err:
        dm.prepare_data()
    msg = str(err.value)
    assert (
        str(user) in msg
        and "does not exist" in msg
        and "data.root" in msg
        and "only created for the default root" in msg
    )
    with pytest.raises(DataError, match="does not exist"):
        dm.setup("fit")
    assert not user.exists() and not default.exists()


# ----------------------------------------------------------------------------- per-split-folder export


def test_roboflow_export_with_zero_based_ids_and_unused_category(tmp_path: Path) -> None:
    make_roboflow_export(tmp_path)
    dm = CocoDataModule(root=str(tmp_path), splits=ROBOFLOW_SPLITS, image_size=None, batch_size=8)
    dm.prepare_data()  # an existing user root: nothing to do
    dm.setup("fit")

    # Category 0 ("objects") has no annotation: left out; labels 1, 2 <-> dataset ids 1, 2.
    assert dm.model_kwargs() == {"num_classes": 3, "class_names": ["cat", "dog"], "category_ids": [1, 2]}
    assert dm.to_dataset_category_id() == {1: 1, 2: 2}

    # Train: the empty and the crowd-only images are skipped; bad boxes dropped, others clipped.
    train = dm.datasets["train"]
    assert train.file_names() == ["a.jpg", "b.jpg"]
    first = train.record(0)
    np.testing.assert_allclose(first.boxes, [[10, 10, 30, 30], [70, 40, 80, 60]])
    assert first.labels.tolist() == [1, 2]
    np.testing.assert_allclose(train.record(1).boxes, [[40, 5, 65, 35]])
    assert train.record(1).labels.tolist() == [1]

    # Evaluation ground truth: ids from 1, map back to the file's 0-based ids, crowd kept.
    val = dm.split("val")
    assert len(dm.datasets["val"]) == 3  # the image without boxes is kept for evaluation
    gt = dm.gt_coco("val")
    assert sorted(gt.getImgIds()) == [1, 2, 3]
    assert sorted(gt.getAnnIds()) == [1, 2, 3, 4]
    assert sorted(gt.getCatIds()) == [1, 2]
    assert dm.to_dataset_image_id("val") == {1: 0, 2: 1, 3: 2}
    crowd = [a for a in gt.dataset["annotations"] if a["iscrowd"]]
    assert len(crowd) == 1 and crowd[0]["bbox"] == [0.0, 0.0, 80.0, 60.0]
    clipped = gt.dataset["annotations"][1]
    assert clipped["bbox"] == [0.0, 20.0, 20.0, 20.0] and clipped["area"] == 123.0
    assert val.stats["clipped"] == 1 and val.stats["images_without_boxes"] == 1

    # Perfect predictions score AP 1.0; with the original 0-based annotation id it would not.
    images, targets = next(iter(dm.val_dataloader()))
    assert [t["image_id"] for t in targets] == [1, 2, 3] and len(targets[2]["boxes"]) == 0
    preds = [{"boxes": t["boxes"], "scores": torch.ones(len(t["boxes"])), "labels": t["labels"]} for t in targets]
    results = dm.to_coco_results(preds, targets)
    assert {r["category_id"] for r in results} == {1, 2}
    assert coco_ap(dm, "val", results) == pytest.approx(1.0)
    # The same results scored against the raw file (ids mapped back): annotation id 0 is never
    # matched by COCOeval, which is why the ids are remapped.
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    to_file_id = dm.to_dataset_image_id("val")
    raw_results = [{**r, "image_id": to_file_id[r["image_id"]]} for r in results]
    with contextlib.redirect_stdout(io.StringIO()):
        raw = COCO(str(tmp_path / "valid" / "_annotations.coco.json"))
        ev = COCOeval(raw, raw.loadRes(raw_results), "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    assert ev.stats[1] < 0.9

    dm.setup("test")
    assert dm.datasets["test"].file_names() == ["t0.jpg"]
    assert dm.gt_coco("test").getImgIds() == [1]


def test_test_split_null_means_val(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    make_roboflow_export(tmp_path)
    caplog.set_level(logging.INFO, logger="attnlab.data.coco")
    dm = CocoDataModule(root=str(tmp_path), splits={**ROBOFLOW_SPLITS, "test": None})
    assert "data.splits.test is null" in caplog.text
    dm.setup("test")
    assert dm.resolve_split("test") == "val"
    assert dm.datasets["test"].file_names() == ["v0.jpg", "v1.jpg", "v_empty.jpg"]
    assert dm.gt_coco("test") is dm.gt_coco("val")


def test_label_mapping_round_trip_with_sparse_category_ids(tmp_path: Path) -> None:
    cats = [
        {"id": 17, "name": "zebra"},
        {"id": 3, "name": "ant"},
        {"id": 90, "name": "unused"},
        {"id": 5, "name": "bee"},
    ]
    images = [{"id": 7, "file_name": "x.png", "width": 50, "height": 40}]
    anns = [ann(1, 7, 17, [1, 1, 10, 10]), ann(2, 7, 3, [20, 5, 10, 10]), ann(3, 7, 5, [5, 20, 30, 15])]
    path = write_split(tmp_path, "imgs", "ann.json", images, anns, cats)
    labels = build_label_space(parse_annotation_file(path))
    assert labels.category_ids == (3, 5, 17) and labels.names == ("ant", "bee", "zebra")
    assert labels.num_classes == 4
    for cat_id, label in labels.label_of.items():
        assert labels.to_dataset_category_id[label] == cat_id
    split = build_split("train", path, tmp_path / "imgs", labels)
    rec = split.record(0)
    # labels -> dataset category ids recovers each annotation's category, box for box
    assert [labels.to_dataset_category_id[int(lab)] for lab in rec.labels] == [17, 3, 5]
    assert split.gt["categories"] == [
        {"id": 3, "name": "ant", "supercategory": ""},
        {"id": 5, "name": "bee", "supercategory": ""},
        {"id": 17, "name": "zebra", "supercategory": ""},
    ]


def test_val_category_renamed_or_unknown(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    cats = [{"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}]
    images = [{"id": 1, "file_name": "x.png", "width": 50, "height": 40}]
    train = write_split(tmp_path, "imgs", "train.json", images, [ann(1, 1, 1, [1, 1, 10, 10])], cats)
    labels = build_label_space(parse_annotation_file(train))
    assert labels.names == ("cat",)  # "dog" has no train annotation
    # A val box of a class the model never learnt is dropped (with a warning), not scored.
    val = write_split(
        tmp_path, "imgs", "val.json", images, [ann(1, 1, 2, [1, 1, 10, 10]), ann(2, 1, 1, [20, 5, 10, 10])], cats
    )
    split = build_split("val", val, tmp_path / "imgs", labels)
    assert split.stats["unknown_category_dropped"] == 1 and len(split.gt["annotations"]) == 1
    assert "absent from the train label space" in caplog.text
    renamed = write_split(tmp_path, "imgs", "renamed.json", images, [], [{"id": 1, "name": "kitten"}])
    with pytest.raises(DataError, match="category id 1 is named 'kitten' here but 'cat' in the train file"):
        build_split("val", renamed, tmp_path / "imgs", labels)


# ----------------------------------------------------------------------------- bad input


def test_bad_input_errors_name_the_file(tmp_path: Path) -> None:
    make_roboflow_export(tmp_path)
    val_json = tmp_path / "valid" / "_annotations.coco.json"

    # missing annotation file (and which key to set)
    splits = {**ROBOFLOW_SPLITS, "val": {"images": "valid", "annotations": "valid/nope.json"}}
    with pytest.raises(DataError) as err:
        CocoDataModule(root=str(tmp_path), splits=splits).setup("fit")
    assert str(tmp_path / "valid" / "nope.json") in str(err.value) and "data.splits.val.annotations" in str(err.value)

    # invalid JSON, with the position
    good = val_json.read_text()
    val_json.write_text('{\n  "images": [\n    {"id": 0,, "file_name": "v0.jpg"}\n  ]\n}')
    with pytest.raises(DataError) as err:
        CocoDataModule(root=str(tmp_path), splits=ROBOFLOW_SPLITS).setup("fit")
    assert (
        str(val_json) in str(err.value) and "not valid JSON" in str(err.value) and "line 3 column 14" in str(err.value)
    )

    # an annotation pointing at an image id that does not exist
    data = json.loads(good)
    data["annotations"].append(ann(7, 99, 1, [1, 1, 5, 5]))
    val_json.write_text(json.dumps(data))
    with pytest.raises(DataError) as err:
        CocoDataModule(root=str(tmp_path), splits=ROBOFLOW_SPLITS).setup("fit")
    assert str(val_json) in str(err.value) and "annotation id 7 -> image id 99" in str(err.value)

    # an image listed but missing on disk (checked at setup)
    val_json.write_text(good)
    (tmp_path / "valid" / "v1.jpg").unlink()
    with pytest.raises(DataError) as err:
        CocoDataModule(root=str(tmp_path), splits=ROBOFLOW_SPLITS).setup("fit")
    assert str(tmp_path / "valid" / "v1.jpg") in str(err.value) and "missing" in str(err.value)

    # an unreadable image file: a small split decodes every image at setup (data.verify_images)
    (tmp_path / "valid" / "v1.jpg").write_bytes(b"this is not a jpeg")
    with pytest.raises(DataError) as err:
        CocoDataModule(root=str(tmp_path), splits=ROBOFLOW_SPLITS).setup("fit")
    assert "1 image(s) listed in" in str(err.value) and str(tmp_path / "valid" / "v1.jpg") in str(err.value)
    # ... and without the check, it is named when loaded
    dm = CocoDataModule(root=str(tmp_path), splits=ROBOFLOW_SPLITS, verify_images=False)
    dm.setup("fit")
    with pytest.raises(DataError, match=r"image .*v1\.jpg cannot be read"):
        next(iter(dm.val_dataloader()))


def test_bad_split_config_is_explained(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="data.splits.val must be set"):
        CocoDataModule(root=str(tmp_path), splits={"train": DEFAULT_SPLITS["train"], "val": None})
    with pytest.raises(DataError, match="unknown: \\['image'\\]"):
        CocoDataModule(root=str(tmp_path), splits={**DEFAULT_SPLITS, "val": {"image": "x", "annotations": "y"}})
    with pytest.raises(DataError, match="unknown split"):
        CocoDataModule(root=str(tmp_path), splits={**DEFAULT_SPLITS, "valid": DEFAULT_SPLITS["val"]})


# ----------------------------------------------------------------------------- hydra config


def _compose(tmp_path: Path, overrides: list[str]) -> Any:
    from hydra import compose, initialize_config_dir

    conf = tmp_path / "conf"
    (conf / "data").mkdir(parents=True, exist_ok=True)
    shutil.copy(REPO / "conf" / "data" / "coco.yaml", conf / "data" / "coco.yaml")
    (conf / "cfg.yaml").write_text(
        f"defaults:\n  - _self_\n  - data: coco\npaths:\n  data_dir: {tmp_path / 'data'}\n"
        f"  cache_dir: {tmp_path / 'cache'}\n"
    )
    with initialize_config_dir(config_dir=str(conf), version_base="1.3"):
        return compose(config_name="cfg", overrides=overrides)


def _instantiate(cfg: Any) -> CocoDataModule:
    from attnlab.cli.instantiate import instantiate_component  # what train.py uses

    assert cfg.data.task == "detection"
    return instantiate_component(cfg.data)


def test_config_default_and_both_layout_recipes_by_overrides_alone(tmp_path: Path) -> None:
    cfg = _compose(tmp_path, [])
    dm = _instantiate(cfg)
    assert dm.root == tmp_path / "data" / "shapes_coco" and dm.is_default_root()
    assert dm.splits["val"] == {"images": "images/val", "annotations": "annotations/instances_val.json"}

    # Per-split-folder export (Roboflow), exactly the recipe in conf/data/coco.yaml.
    export = tmp_path / "export"
    make_roboflow_export(export)
    cfg = _compose(
        tmp_path,
        [
            f"data.root={export}",
            "data.splits.train.images=train",
            "data.splits.train.annotations=train/_annotations.coco.json",
            "data.splits.val.images=valid",
            "data.splits.val.annotations=valid/_annotations.coco.json",
            "data.splits.test.images=test",
            "data.splits.test.annotations=test/_annotations.coco.json",
        ],
    )
    dm = _instantiate(cfg)
    assert not dm.is_default_root()
    dm.prepare_data()
    dm.setup("fit")
    assert dm.model_kwargs()["class_names"] == ["cat", "dog"]

    # COCO 2017 layout with no test split: test on val.
    coco = tmp_path / "coco"
    images = [{"id": 0, "file_name": "000000000001.jpg", "width": 64, "height": 48}]
    cats = [{"id": 18, "name": "dog", "supercategory": "animal"}]
    for split in ("train2017", "val2017"):
        write_split(coco, split, f"annotations/instances_{split}.json", images, [ann(0, 0, 18, [2, 3, 20, 20])], cats)
    cfg = _compose(
        tmp_path,
        [
            f"data.root={coco}",
            "data.splits.train.images=train2017",
            "data.splits.train.annotations=annotations/instances_train2017.json",
            "data.splits.val.images=val2017",
            "data.splits.val.annotations=annotations/instances_val2017.json",
            "data.splits.test=null",
        ],
    )
    dm = _instantiate(cfg)
    dm.prepare_data()
    dm.setup("test")
    assert dm.splits["test"] is None and dm.resolve_split("test") == "val"
    assert dm.model_kwargs() == {"num_classes": 2, "class_names": ["dog"], "category_ids": [18]}
    _, targets = next(iter(dm.test_dataloader()))
    assert targets[0]["image_id"] == 1 and dm.to_dataset_image_id("test") == {1: 0}

    # A user root that does not exist, through the config too: an error, no generation.
    dm = _instantiate(_compose(tmp_path, [f"data.root={tmp_path / 'missing'}"]))
    with pytest.raises(DataError, match="does not exist"):
        dm.prepare_data()
    assert not (tmp_path / "data" / "shapes_coco").exists()
