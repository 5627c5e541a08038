"""The cached COCO index: parsed once per content, never stale, built once across processes, shared.

Real files, real msgspec / json readers, real file locks and real processes.
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import pickle
import time
from pathlib import Path

import numpy as np
import pytest

from attnlab.data import content_cache
from attnlab.data.array_store import ArrayStore
from attnlab.data.coco import CocoDataModule
from attnlab.data.coco_parse import parse_annotation_file
from attnlab.data.coco_validate import load_annotation_file
from attnlab.data.loader_workers import default_num_workers
from attnlab.errors import DataError
from tests.coco_helpers import ROBOFLOW_SPLITS, ann, make_roboflow_export, write_split


def _dm(root: Path, cache: Path | None, **kwargs) -> CocoDataModule:
    dm = CocoDataModule(
        root=str(root),
        splits=ROBOFLOW_SPLITS,
        cache_dir=str(cache) if cache else None,
        image_size=None,
        num_workers=0,
        **kwargs,
    )
    dm.setup("fit")
    return dm


def _indexing_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.getMessage().startswith("indexing ")]


def test_second_setup_maps_the_cached_index_without_parsing(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    make_roboflow_export(tmp_path / "data")
    cache = tmp_path / "cache"
    caplog.set_level(logging.INFO, logger="attnlab.data.coco_split")
    first = _dm(tmp_path / "data", cache)
    assert len(_indexing_lines(caplog)) == 2  # train and val, once each
    caplog.clear()
    second = _dm(tmp_path / "data", cache)
    assert _indexing_lines(caplog) == []
    assert len(content_cache.read_build_log(cache)) == 2  # the builds are counted too
    mapped = second.split("train").index["train_boxes"]
    assert not mapped.flags.owndata and not mapped.flags.writeable  # a read-only view of the file
    assert second.model_kwargs() == first.model_kwargs()
    assert second.split("val").gt == first.split("val").gt
    # The same index without a cache (everything in memory) gives the same splits.
    uncached = _dm(tmp_path / "data", None)
    assert uncached.split("val").gt == first.split("val").gt
    for k in range(len(first.datasets["train"])):
        a, b = first.datasets["train"].record(k), uncached.datasets["train"].record(k)
        assert (a.file_name, a.image_id, a.dataset_id) == (b.file_name, b.image_id, b.dataset_id)
        assert np.array_equal(a.boxes, b.boxes) and np.array_equal(a.labels, b.labels)


def test_a_changed_file_never_reuses_its_index(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    make_roboflow_export(tmp_path / "data")
    cache = tmp_path / "cache"
    val_json = tmp_path / "data" / "valid" / "_annotations.coco.json"
    old = time.time_ns() - 10**10  # an old file: its digest memo is trusted while its stat matches
    os.utime(val_json, ns=(old, old))
    before = _dm(tmp_path / "data", cache).split("val").gt["annotations"][2]["bbox"]
    assert before == [20.0, 10.0, 40.0, 40.0]
    # Same size, same mtime (restored): only the content differs, and the ctime, which no one can set.
    st = val_json.stat()
    text = val_json.read_text()
    assert '"bbox": [20, 10, 40, 40]' in text
    val_json.write_text(text.replace('"bbox": [20, 10, 40, 40]', '"bbox": [21, 10, 40, 40]'))
    os.utime(val_json, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert val_json.stat().st_size == st.st_size
    caplog.set_level(logging.INFO, logger="attnlab.data.coco_split")
    after = _dm(tmp_path / "data", cache).split("val").gt["annotations"][2]["bbox"]
    assert after == [21.0, 10.0, 40.0, 40.0]
    assert any(str(val_json) in line for line in _indexing_lines(caplog))


def _lie_in_the_memo(memo: Path) -> None:
    """Make the one memo in ``memo`` claim another digest (believed only where a memo is trusted)."""
    [record_file] = memo.iterdir()
    record = json.loads(record_file.read_text())
    record_file.write_text(json.dumps({**record, "sha256": "from-the-memo"}))


def test_digest_memo_is_used_only_for_an_unchanged_settled_file(tmp_path: Path, monkeypatch) -> None:
    path, memo = tmp_path / "a.json", tmp_path / "memo"
    path.write_text("[1]")
    old = time.time_ns() - 10**10
    os.utime(path, ns=(old, old))
    # Just changed (its ctime is now, whatever its mtime says): a write in the same clock tick
    # could keep size and timestamps, so the memo is not trusted yet.
    first = content_cache.file_digest(path, memo)
    _lie_in_the_memo(memo)
    assert content_cache.file_digest(path, memo) == first
    # Settled (as if hashed SETTLE_SECONDS after the last change): the memo is believed while the
    # stat signature matches, and a changed file is hashed again.
    monkeypatch.setattr(content_cache, "SETTLE_SECONDS", 0.0)
    assert content_cache.file_digest(path, memo) == first
    _lie_in_the_memo(memo)
    assert content_cache.file_digest(path, memo) == "from-the-memo"
    path.write_text("[2]")
    os.utime(path, ns=(old, old))
    assert content_cache.file_digest(path, memo) not in (first, "from-the-memo")


def _build_in_process(root: str, log_file: str, value: int) -> None:
    def build():
        with open(log_file, "a") as f:
            f.write(f"{os.getpid()}\n")
        time.sleep(0.5)  # long enough for the other process to arrive and wait
        return {"x": np.full(4, value)}, {"value": value}

    stored = ArrayStore(root).load_or_build("key", build)
    assert stored["x"].tolist() == [7, 7, 7, 7] and stored.meta == {"value": 7}


def test_concurrent_builders_build_once(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("fork")
    log_file = tmp_path / "builds.txt"
    procs = [ctx.Process(target=_build_in_process, args=(str(tmp_path / "store"), str(log_file), 7)) for _ in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0, 0, 0]
    assert len(log_file.read_text().split()) == 1


def test_a_killed_build_leaves_nothing_taken_for_an_entry(tmp_path: Path) -> None:
    store = ArrayStore(tmp_path / "store")
    with pytest.raises(KeyboardInterrupt):
        store.load_or_build("key", lambda: (_ for _ in ()).throw(KeyboardInterrupt()))
    # A half-written folder from a build killed while saving: ignored, then cleaned up.
    half = tmp_path / "store" / ".tmp-key-dead"
    half.mkdir()
    (half / "x.npy").write_bytes(b"partial")
    stored = store.load_or_build("key", lambda: ({"x": np.arange(3)}, {}))
    assert stored["x"].tolist() == [0, 1, 2] and not half.exists()


def test_unwritable_cache_names_the_folder_and_the_config_key(tmp_path: Path) -> None:
    make_roboflow_export(tmp_path / "data")
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    with pytest.raises(DataError) as err:
        _dm(tmp_path / "data", blocker / "cache")
    assert str(blocker / "cache") in str(err.value) and "paths.cache_dir" in str(err.value)


def test_dataset_pickles_as_a_reference_to_the_mapped_index(tmp_path: Path) -> None:
    """What a DDP-spawned rank or a spawned worker receives: the index folder, not its arrays."""
    make_roboflow_export(tmp_path / "data")
    dataset = _dm(tmp_path / "data", tmp_path / "cache").datasets["train"]
    _ = dataset.split.gt  # a built ground truth is not shipped either
    blob = pickle.dumps(dataset)
    clone = pickle.loads(blob)
    assert not clone.split.index["train_boxes"].flags.owndata and clone.split._gt is None
    assert clone.record(0).file_name == dataset.record(0).file_name
    assert np.array_equal(clone.record(0).boxes, dataset.record(0).boxes)
    # The same size whatever the split's size: no per-image Python objects travel.
    assert len(blob) < 20_000


def test_ground_truth_comes_from_the_index_not_the_file(tmp_path: Path) -> None:
    make_roboflow_export(tmp_path / "data")
    dm = _dm(tmp_path / "data", tmp_path / "cache")
    (tmp_path / "data" / "valid" / "_annotations.coco.json").write_text("{ broken")
    gt = dm.gt_coco("val")
    assert sorted(gt.getAnnIds()) == [1, 2, 3, 4] and gt.dataset["annotations"][1]["area"] == 123.0


BAD_FILES = {
    "broken JSON": '{\n  "images": [\n    {"id": 0,, "file_name": "v0.jpg"}\n  ]\n}',
    "top level list": "[]",
    "no annotations key": '{"images": [], "categories": []}',
    "bool image id": '{"images": [{"id": true, "file_name": "a.jpg"}], "annotations": [], "categories": []}',
    "no file_name": '{"images": [{"id": 1}], "annotations": [], "categories": []}',
    "repeated image id": '{"images": [{"id": 1, "file_name": "a"}, {"id": 1, "file_name": "b"}], '
    '"annotations": [], "categories": []}',
    "zero width": '{"images": [{"id": 1, "file_name": "a", "width": 0, "height": 5}], "annotations": [], '
    '"categories": []}',
    "category without name": '{"images": [], "annotations": [], "categories": [{"id": 1}]}',
    "short bbox": '{"images": [{"id": 1, "file_name": "a"}], "categories": [{"id": 1, "name": "c"}], '
    '"annotations": [{"id": 5, "image_id": 1, "category_id": 1, "bbox": [1, 2, 3]}]}',
    "NaN bbox": '{"images": [{"id": 1, "file_name": "a"}], "categories": [{"id": 1, "name": "c"}], '
    '"annotations": [{"id": 5, "image_id": 1, "category_id": 1, "bbox": [1, 2, NaN, 3]}]}',
    "unknown image": '{"images": [{"id": 1, "file_name": "a"}], "categories": [{"id": 1, "name": "c"}], '
    '"annotations": [{"id": 5, "image_id": 9, "category_id": 1, "bbox": [1, 2, 3, 4]}]}',
    "unknown category": '{"images": [{"id": 1, "file_name": "a"}], "categories": [{"id": 1, "name": "c"}], '
    '"annotations": [{"id": 5, "image_id": 1, "category_id": 3, "bbox": [1, 2, 3, 4]}]}',
}


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_fast_reader_keeps_every_reference_error(tmp_path: Path, case: str) -> None:
    path = tmp_path / "ann.json"
    path.write_text(BAD_FILES[case])
    with pytest.raises(DataError) as reference:
        load_annotation_file(path, "data.splits.val.annotations")
    with pytest.raises(DataError) as fast:
        parse_annotation_file(path, "data.splits.val.annotations")
    assert str(fast.value) == str(reference.value) and str(path) in str(fast.value)


def test_string_ids_and_missing_optional_fields(tmp_path: Path) -> None:
    images = [
        {"id": "img-a", "file_name": "a.jpg", "width": 40, "height": 30},
        {"id": "img-b", "file_name": "b.jpg", "width": 40, "height": 30},
    ]
    anns = [
        {"image_id": "img-b", "category_id": "dog", "bbox": [1, 2, 10, 10]},  # no id, area, iscrowd
        ann(7, "img-a", "cat", [0, 0, 5, 5]),
    ]
    cats = [{"id": "cat", "name": "cat"}, {"id": "dog", "name": "dog"}]
    for split in ("train", "valid"):
        write_split(tmp_path, split, f"{split}/_annotations.coco.json", images, anns, cats)
    dm = CocoDataModule(
        root=str(tmp_path),
        splits={**ROBOFLOW_SPLITS, "test": None},
        cache_dir=str(tmp_path / "c"),
        image_size=None,
        num_workers=0,
    )
    dm.setup("fit")
    assert dm.model_kwargs()["category_ids"] == ["cat", "dog"]
    assert dm.to_dataset_image_id("val") == {1: "img-a", 2: "img-b"}
    gt = dm.gt_dict("val")
    assert [a["dataset_id"] for a in gt["annotations"]] == [None, 7]
    assert gt["annotations"][0]["area"] == 100.0 and gt["annotations"][0]["iscrowd"] == 0
    assert dm.datasets["train"].record(1).labels.tolist() == [2]


def test_num_workers_default_follows_the_cores_per_job(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "cpu_count", lambda: 16)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(16)), raising=False)
    monkeypatch.setenv("ATTNLAB_PARALLEL_JOBS", "1")
    assert default_num_workers() == 8
    monkeypatch.setenv("ATTNLAB_PARALLEL_JOBS", "4")  # 4 cores per job: 2 load, the rest compute
    assert default_num_workers() == 2
    monkeypatch.setenv("ATTNLAB_PARALLEL_JOBS", "8")  # 2 cores per job: measured, workers do not pay
    assert default_num_workers() == 0
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    monkeypatch.setenv("ATTNLAB_PARALLEL_JOBS", "1")
    assert default_num_workers() == 0


def test_bench_coco_sized_file_is_valid_coco_with_links_inside(tmp_path: Path) -> None:
    """The bench's COCO-2017-sized generator, at a small size: pycocotools and attnlab read the same."""
    import contextlib
    import io

    from pycocotools.coco import COCO

    from benchmarks.generated import write_coco_sized

    counts = write_coco_sized(tmp_path, n_images=300, n_annotations=2000, n_val=20)
    ann_file = tmp_path / "annotations" / "instances_train.json"
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO(str(ann_file))
    assert len(coco.getImgIds()) == counts["train"]["images"] == 300 and len(coco.getAnnIds()) == 2000
    columns = parse_annotation_file(ann_file)
    assert len(columns.file_names) == 300 and columns.ann_bbox.shape == (2000, 4)
    assert "segmentation" in json.loads(ann_file.read_text())["annotations"][0]
    splits = {
        "train": {"images": "images/train", "annotations": "annotations/instances_train.json"},
        "val": {"images": "images/val", "annotations": "annotations/instances_val.json"},
        "test": None,
    }
    dm = CocoDataModule(root=str(tmp_path), splits=splits, num_workers=0, batch_size=4)
    dm.setup("fit")  # every link resolves inside its images folder; val (20 images) is decoded
    images, targets = next(iter(dm.train_dataloader()))
    assert len(images) == 4 and all(len(t["boxes"]) >= 1 for t in targets)
