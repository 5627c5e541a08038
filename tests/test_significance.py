"""Paired bootstrap significance: sacreBLEU's test for BLEU, the image bootstrap for COCO mAP.

The crafted checks of issue 11: a system that is exactly the reference against an empty one is
significant (p < 0.01); identical systems are not (p = 1).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from attnlab.evaluation.coco_bootstrap import PerImageEvaluation, detection_paired_bootstrap
from attnlab.evaluation.coco_scoring import coco_evaluate
from attnlab.evaluation.significance import paired_p_value, translation_paired_bootstrap

REFS = [
    f"the {a} {n} did not {v} the {o} today ."
    for a in ("old", "young", "small", "quiet", "red")
    for n in ("cat", "dog", "student", "teacher")
    for v in ("see", "like", "carry")
    for o in ("box", "apple")
]


def _degrade(sentence: str, i: int) -> str:
    words = sentence.split()
    return " ".join(words[: len(words) - 1 - i % 4] + ["."])


def test_reference_against_empty_translation_is_significant() -> None:
    result = translation_paired_bootstrap([""] * len(REFS), REFS, REFS)
    assert result.system == pytest.approx(100.0) and result.baseline == 0.0
    assert result.p_value < 0.01 and result.significant
    assert result.difference == pytest.approx(100.0) and result.ci_low > 90.0
    assert result.n_resamples == 1000 and result.n_items == len(REFS)


def test_identical_translations_are_not_significant() -> None:
    hyps = [_degrade(s, i) for i, s in enumerate(REFS)]
    result = translation_paired_bootstrap(hyps, list(hyps), REFS)
    assert result.difference == 0.0 and (result.ci_low, result.ci_high) == (0.0, 0.0)
    assert result.p_value == pytest.approx(1.0) and not result.significant


def test_translation_bootstrap_is_sacrebleu_and_scores_as_the_runs_do() -> None:
    from sacrebleu.metrics import BLEU
    from sacrebleu.significance import PairedTest
    from torchmetrics.text import SacreBLEUScore

    base = [_degrade(s, i) for i, s in enumerate(REFS)]
    system = [s if i % 3 else _degrade(s, i + 1) for i, s in enumerate(REFS)]
    result = translation_paired_bootstrap(base, system, REFS)
    # The BLEU the runs log (torchmetrics, no smoothing) is the BLEU tested.
    logged = float(SacreBLEUScore(tokenize="13a")(system, [[r] for r in REFS])) * 100
    assert result.system == pytest.approx(logged, abs=1e-4)
    # The p-value is sacreBLEU's own, and our p-value rule reproduces it from the same resamples.
    _, scores = PairedTest(
        [("b", base), ("s", system)],
        {"BLEU": BLEU(smooth_method="none", force=True)},
        [REFS],
        test_type="bs",
        n_samples=1000,
    )()
    assert result.p_value == pytest.approx(scores["BLEU"][1].p_value)
    assert result.ci_low < result.difference < result.ci_high


def test_p_value_rule_matches_sacrebleu_definition() -> None:
    rng = np.random.default_rng(0)
    diffs = rng.normal(1.0, 1.0, size=999)
    centred = np.abs(diffs) - np.abs(diffs).mean()
    assert paired_p_value(diffs, 0.3) == pytest.approx((np.sum(centred > 0.3) + 1) / 1000)
    assert paired_p_value(np.zeros(999), 0.0) == 1.0


def _small_coco(tmp_path: Path) -> tuple[Path, list[dict], list[int]]:
    """40 images with their own (non-contiguous) ids, 2 categories (ids 7 and 9), 1-3 boxes each."""
    rng = np.random.default_rng(1)
    images, anns = [], []
    for i in range(40):
        image_id = 1000 + 7 * i
        images.append({"id": image_id, "width": 200, "height": 150, "file_name": f"{i}.png"})
        for _ in range(1 + i % 3):
            w, h = rng.uniform(20, 80, 2)
            x, y = rng.uniform(0, 200 - w), rng.uniform(0, 150 - h)
            anns.append(
                {
                    "id": len(anns) + 1,
                    "image_id": image_id,
                    "category_id": int(rng.choice([7, 9])),
                    "bbox": [x, y, w, h],
                    "area": w * h,
                    "iscrowd": 0,
                }
            )
    path = tmp_path / "instances.json"
    path.write_text(
        json.dumps(
            {"images": images, "annotations": anns, "categories": [{"id": 7, "name": "a"}, {"id": 9, "name": "b"}]}
        )
    )
    return path, anns, [img["id"] for img in images]


def test_reference_against_empty_detections_is_significant(tmp_path: Path) -> None:
    gt, anns, ids = _small_coco(tmp_path)
    perfect = [
        {"image_id": a["image_id"], "category_id": a["category_id"], "bbox": a["bbox"], "score": 1.0} for a in anns
    ]
    ref, empty = PerImageEvaluation(gt, perfect, ids), PerImageEvaluation(gt, [], ids)
    assert ref.map() == pytest.approx(1.0) and empty.map() == 0.0
    result = detection_paired_bootstrap([empty], [ref])
    assert result.p_value < 0.01 and result.difference == pytest.approx(1.0)
    same = detection_paired_bootstrap([ref], [ref])
    assert same.p_value == 1.0 and same.difference == 0.0


def test_weighted_re_accumulation_is_cocoeval_on_the_resampled_images(tmp_path: Path) -> None:
    """mAP with image weights equals COCOeval on a data set where each image is copied that many times."""
    gt_path, anns, ids = _small_coco(tmp_path)
    rng = np.random.default_rng(2)
    dets = [
        {
            "image_id": a["image_id"],
            "category_id": a["category_id"],
            "bbox": [v + rng.normal(0, 4) for v in a["bbox"]],
            "score": float(rng.uniform(0.2, 1)),
        }
        for a in anns
        if rng.random() < 0.8
    ]
    dets += [
        {
            "image_id": int(rng.choice(ids)),
            "category_id": 7,
            "bbox": [10.0, 10.0, 30.0, 30.0],
            "score": float(rng.uniform(0, 0.5)),
        }
        for _ in range(30)
    ]
    evaluation = PerImageEvaluation(gt_path, dets, ids, category_ids=[7, 9])
    assert evaluation.map() == pytest.approx(coco_evaluate(gt_path, dets)["map"], abs=1e-12)
    counts = np.bincount(rng.integers(0, len(ids), len(ids)), minlength=len(ids))
    gt = json.loads(gt_path.read_text())
    copies_img, copies_ann, copies_det = [], [], []
    for image, count in zip(gt["images"], counts):
        for c in range(int(count)):
            new_id = image["id"] * 10 + c
            copies_img.append(dict(image, id=new_id))
            copies_ann += [
                dict(a, id=len(copies_ann) + k + 1, image_id=new_id)
                for k, a in enumerate(x for x in gt["annotations"] if x["image_id"] == image["id"])
            ]
            copies_det += [dict(d, image_id=new_id) for d in dets if d["image_id"] == image["id"]]
    resampled = dict(gt, images=copies_img, annotations=copies_ann)
    # Distinct scores per image copy keep COCOeval's tie order irrelevant; scores are unique here.
    assert evaluation.map(counts) == pytest.approx(coco_evaluate(resampled, copies_det)["map"], abs=1e-9)


def test_per_image_evaluation_on_the_cocoapi_fixture(shared_fixtures: Path) -> None:
    folder = shared_fixtures / "cocoapi_val2014_100"
    gt = folder / "instances_val2014_100.json"
    dets = json.loads((folder / "instances_val2014_fakebbox100_results.json").read_text())
    ids = sorted(img["id"] for img in json.loads(gt.read_text())["images"])
    assert PerImageEvaluation(gt, dets, ids).map() == pytest.approx(0.5045806987249628, abs=1e-12)
