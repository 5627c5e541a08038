"""The COCO evaluator: official figures on the cocoapi fixture, ids, empty images, DDP repeats."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from attnlab.evaluation.coco_eval import CocoDetectionMetric, evaluate_results_file, main
from attnlab.evaluation.coco_scoring import EVAL_BACKENDS, STAT_NAMES, coco_evaluate, format_summary

REPO = Path(__file__).resolve().parents[1]


def _fixture_dir() -> Path:
    root = os.environ.get("ATTNLAB_FIXTURES")
    base = Path(root) if root else Path(__file__).resolve().parents[2] / "shared" / "fixtures"
    return base / "cocoapi_val2014_100"


FIXTURE = _fixture_dir()
needs_fixture = pytest.mark.skipif(
    not (FIXTURE / "instances_val2014_100.json").is_file(),
    reason=f"cocoapi fixture not found at {FIXTURE} (set ATTNLAB_FIXTURES to the fixtures folder)",
)
GT_FILE = FIXTURE / "instances_val2014_100.json"
DT_FILE = FIXTURE / "instances_val2014_fakebbox100_results.json"
# Full precision from the fixture README (official cocoapi evaluation of these files).
OFFICIAL_FULL = {"map": 0.5045806987249628, "map_50": 0.6969727247299577, "map_75": 0.5729816669904824}


def _official_bbox_figures() -> list[float]:
    """The twelve bbox figures printed by the official evaluator (val2014_fake_eval_res.txt)."""
    text = (FIXTURE / "val2014_fake_eval_res.txt").read_text()
    bbox = text.split("type=bbox", 1)[1].split("type=", 1)[0]
    values = [float(v) for v in re.findall(r"\] = (-?[0-9.]+)", bbox)]
    assert len(values) == 12
    return values


@needs_fixture
@pytest.mark.parametrize("backend", EVAL_BACKENDS)
def test_fixture_gives_the_official_figures(backend: str) -> None:
    stats = evaluate_results_file(GT_FILE, DT_FILE, backend=backend)
    assert list(stats) == list(STAT_NAMES)
    for name, official in zip(STAT_NAMES, _official_bbox_figures()):
        assert round(stats[name], 3) == official, name
    for name, value in OFFICIAL_FULL.items():
        assert stats[name] == pytest.approx(value, abs=1e-12), name
    assert (round(stats["map"], 3), round(stats["map_50"], 3), round(stats["map_75"], 3)) == (0.505, 0.697, 0.573)


@needs_fixture
@pytest.mark.slow  # two fresh interpreters importing torch: ~20 s on a busy 2-core machine
def test_script_prints_the_official_figures() -> None:
    """scripts/coco_eval.py as a user runs it: JSON with --json, the summary lines without."""
    cmd = [
        sys.executable,
        str(REPO / "scripts" / "coco_eval.py"),
        str(GT_FILE),
        str(DT_FILE),
        "--backend",
        "faster_coco_eval",
    ]
    out = subprocess.run(cmd + ["--json"], capture_output=True, text=True, check=True, timeout=300)
    stats = json.loads(out.stdout)
    assert stats["map"] == pytest.approx(OFFICIAL_FULL["map"], abs=1e-12)
    printed = subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=300).stdout
    bbox = (FIXTURE / "val2014_fake_eval_res.txt").read_text().split("type=bbox")[1].split("type=")[0]
    official = [ln for ln in bbox.splitlines() if ln.startswith(" Average")]
    assert printed.strip("\n").splitlines() == format_summary(stats).splitlines()
    # Same lines as the official output up to spacing (pycocotools 2.0.11 pads the title one more).
    assert [" ".join(ln.split()) for ln in printed.splitlines()] == [" ".join(ln.split()) for ln in official]


@needs_fixture
def test_cli_main_in_process(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([str(GT_FILE), str(DT_FILE)]) == 0
    printed = capsys.readouterr().out.strip().splitlines()
    assert len(printed) == 12 and printed[0].endswith("maxDets=100 ] = 0.505")
    assert [float(ln.rsplit("=", 1)[1]) for ln in printed] == _official_bbox_figures()
    assert main([str(GT_FILE), str(DT_FILE), "--json", "--backend", "faster_coco_eval"]) == 0
    assert json.loads(capsys.readouterr().out)["map_75"] == pytest.approx(OFFICIAL_FULL["map_75"], abs=1e-12)


@needs_fixture
def test_torchmetrics_mean_ap_differs_and_why() -> None:
    """Pins the explanation in coco_eval's docstring: torchmetrics' float32 default thresholds
    (torch.linspace) are most of its 0.5035 vs 0.5046; float64 thresholds fix AP50 exactly."""
    from torchmetrics.detection import MeanAveragePrecision

    def tm_map(**kwargs) -> dict[str, float]:
        metric = MeanAveragePrecision(box_format="xywh", **kwargs)
        preds, target = metric.coco_to_tm(str(DT_FILE), str(GT_FILE))
        metric.update(preds, target)
        return {k: float(v) for k, v in metric.compute().items() if k in ("map", "map_50")}

    default = tm_map()
    assert default["map"] == pytest.approx(0.5035, abs=5e-5) and default["map_50"] == pytest.approx(0.6962, abs=5e-5)
    fixed = tm_map(iou_thresholds=np.linspace(0.5, 0.95, 10).tolist(), rec_thresholds=np.linspace(0, 1, 101).tolist())
    assert fixed["map_50"] == pytest.approx(OFFICIAL_FULL["map_50"], abs=1e-6)
    # The rest (image renumbering changes the order of equal scores) is below 2e-5.
    assert fixed["map"] == pytest.approx(OFFICIAL_FULL["map"], abs=2e-5) and fixed["map"] != OFFICIAL_FULL["map"]


# ------------------------------------------------------------------------------ small hand-made cases
def _gt(image_ids=(1, 2), ann_ids=(1, 2), cat_id=1) -> dict:
    return {
        "images": [{"id": i, "width": 100, "height": 100} for i in image_ids],
        "annotations": [
            {
                "id": a,
                "image_id": i,
                "category_id": cat_id,
                "bbox": [10.0, 10.0, 40.0, 40.0],
                "area": 1600.0,
                "iscrowd": 0,
            }
            for a, i in zip(ann_ids, image_ids)
        ],
        "categories": [{"id": cat_id, "name": "thing"}],
    }


def _perfect(label: int = 1, box_format: str = "xyxy") -> dict[str, torch.Tensor]:
    box = [10.0, 10.0, 50.0, 50.0] if box_format == "xyxy" else [10.0, 10.0, 40.0, 40.0]
    return {"boxes": torch.tensor([box]), "scores": torch.tensor([0.9]), "labels": torch.tensor([label])}


def test_images_without_detections_count() -> None:
    metric = CocoDetectionMetric(category_ids=[1])
    metric.update([_perfect()], [1])  # image 2 has a ground truth but no detection
    metric.set_ground_truth(_gt())
    stats = metric.compute()
    # Precision 1 up to recall 0.5, nothing beyond: 51 of COCO's 101 recall points.
    assert float(stats["map"]) == pytest.approx(51 / 101)
    assert float(stats["mar_100"]) == pytest.approx(0.5)
    metric.evaluate_all_images = False  # only the images given to update (limited debug runs)
    assert float(metric.compute()["map"]) == pytest.approx(1.0)


def test_zero_based_ids_are_handled() -> None:
    """Image, annotation and category ids from 0: pycocotools alone loses the annotation with id 0."""
    gt = _gt(image_ids=(0, 1), ann_ids=(0, 1), cat_id=0)
    metric = CocoDetectionMetric(category_ids=[0])
    metric.update([_perfect(), _perfect()], torch.tensor([0, 1]))
    metric.set_ground_truth(gt)
    assert float(metric.compute()["map"]) == pytest.approx(1.0)

    coco = COCO()
    coco.dataset = gt
    coco.createIndex()
    results = [{"image_id": i, "category_id": 0, "bbox": [10.0, 10.0, 40.0, 40.0], "score": 0.9} for i in (0, 1)]
    raw = COCOeval(coco, coco.loadRes(results), "bbox")
    raw.evaluate()
    raw.accumulate()
    raw.summarize()
    assert raw.stats[0] < 0.99  # why load_ground_truth re-indexes annotation ids


def test_labels_map_to_category_ids_and_boxes_convert() -> None:
    gt = _gt(image_ids=(5,), ann_ids=(1,), cat_id=7)
    gt["categories"].append({"id": 3, "name": "other"})
    metric = CocoDetectionMetric(category_ids=[3, 7])  # label 2 -> category 7
    wrong = {
        "boxes": torch.tensor([[10.0, 10.0, 50.0, 50.0]]),
        "scores": torch.tensor([0.95]),
        "labels": torch.tensor([0]),
    }  # background label: dropped
    metric.update([_perfect(label=2)], [5])
    metric.update([wrong], [5])
    metric.set_ground_truth(gt)
    assert metric.results() == [
        {"image_id": 5, "category_id": 7, "bbox": [10.0, 10.0, 40.0, 40.0], "score": pytest.approx(0.9)}
    ]
    assert float(metric.compute()["map"]) == pytest.approx(1.0)


def test_no_detections_at_all() -> None:
    metric = CocoDetectionMetric()
    metric.update(
        [{"boxes": torch.zeros(0, 4), "scores": torch.zeros(0), "labels": torch.zeros(0, dtype=torch.long)}], [1]
    )
    metric.set_ground_truth(_gt())
    stats = metric.compute()
    assert float(stats["map"]) == 0.0 and float(stats["mar_100"]) == 0.0
    assert coco_evaluate(_gt(), [], backend="faster_coco_eval")["map"] == 0.0


def test_a_repeated_image_counts_once() -> None:
    """DistributedSampler pads by repeating images: their detections must not count twice."""
    once, twice = CocoDetectionMetric(category_ids=[1]), CocoDetectionMetric(category_ids=[1])
    detections = {
        "boxes": torch.tensor([[10.0, 10.0, 50.0, 50.0], [60.0, 60.0, 90.0, 90.0]]),
        "scores": torch.tensor([0.5, 0.9]),
        "labels": torch.tensor([1, 1]),
    }
    once.update([detections, _perfect()], [1, 2])
    twice.update([detections, _perfect()], [1, 2])
    twice.update([detections], [1])
    for metric in (once, twice):
        metric.set_ground_truth(_gt())
    assert len(twice.results()) == len(once.results()) == 3
    assert float(twice.compute()["map"]) == float(once.compute()["map"]) < 1.0


def test_unknown_image_ids_and_missing_ground_truth_are_errors() -> None:
    metric = CocoDetectionMetric()
    metric.update([_perfect()], [99])
    with pytest.raises(RuntimeError, match="set_ground_truth"):
        metric.compute()
    metric.set_ground_truth(_gt())
    with pytest.raises(ValueError, match="not in the ground truth"):
        metric.compute()


def test_backends_agree_on_a_small_case() -> None:
    results = [
        {"image_id": 1, "category_id": 1, "bbox": [12.0, 9.0, 40.0, 41.0], "score": 0.8},
        {"image_id": 1, "category_id": 1, "bbox": [60.0, 60.0, 20.0, 20.0], "score": 0.7},
        {"image_id": 2, "category_id": 1, "bbox": [10.0, 14.0, 35.0, 40.0], "score": 0.6},
    ]
    a, b = (coco_evaluate(_gt(), results, backend=backend) for backend in EVAL_BACKENDS)
    assert a == pytest.approx(b, abs=1e-12)
    with pytest.raises(ValueError, match="backend"):
        coco_evaluate(_gt(), results, backend="nope")


# ------------------------------------------------------------------------------ DDP
def _ddp_worker(rank: int, world: int, port: int, queue) -> None:
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    try:
        metric = CocoDetectionMetric(category_ids=[1])
        if rank == 0:
            metric.update([_perfect()], [1])
        else:
            # Rank 1 got image 2 and, as DistributedSampler pads, image 1 again (with a worse box).
            metric.update(
                [
                    _perfect(),
                    {
                        "boxes": torch.tensor([[0.0, 0.0, 5.0, 5.0]]),
                        "scores": torch.tensor([0.99]),
                        "labels": torch.tensor([1]),
                    },
                ],
                [2, 1],
            )
        metric.set_ground_truth(_gt())
        value = float(metric.compute()["map"])
        with metric.sync_context():  # compute() syncs, then restores each rank's own states
            gathered = len(metric.results())
        queue.put((rank, value, gathered))
    finally:
        dist.destroy_process_group()


@pytest.mark.slow  # two spawned interpreters with gloo
def test_detections_are_gathered_across_ddp_ranks() -> None:
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    mp.start_processes(_ddp_worker, args=(2, port, queue), nprocs=2, join=True, start_method="spawn")
    results = sorted(queue.get(timeout=60) for _ in range(2))
    # Both ranks see both images' detections, image 1 counted once (from rank 0): perfect score.
    assert results == [(0, 1.0, 2), (1, 1.0, 2)]
