"""What every run keeps besides its checkpoints, checked on real runs of train.py (stdout to a pipe,
so not a terminal; W&B offline): one progress line per epoch in train.log, test outputs next to
metrics.json, cost figures, a small and flat W&B config, a short run name and no W&B warnings."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from attnlab.runs.run_info import name_parts, run_name, split_overrides
from attnlab.runs.test_outputs import read_test_outputs

from .helpers import inspect_wandb_run, run_script

COST = (
    "cost/params_total",
    "cost/params_attention",
    "cost/train_wall_s",
    "cost/train_steps",
    "cost/steps_per_s",
    "cost/peak_rss_mb",
)
WORDS = [
    "the",
    "a",
    "small",
    "old",
    "red",
    "cat",
    "dog",
    "bird",
    "sees",
    "likes",
    "takes",
    "gives",
    "house",
    "tree",
    "river",
    "book",
]


def _corpus(folder: Path, split: str, n: int, seed: int) -> tuple[Path, Path, list[str]]:
    """Parallel text: sources of 3 to 15 words (so length bucketing reorders them), a reversed target."""
    import random

    rng = random.Random(seed)
    src = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 15))) for _ in range(n)]
    tgt = [" ".join(reversed(s.split())) + " ." for s in src]
    paths = folder / f"{split}.src", folder / f"{split}.tgt"
    paths[0].write_text("\n".join(src) + "\n")
    paths[1].write_text("\n".join(tgt) + "\n")
    return paths[0], paths[1], tgt


def _flat(prefix: str, value: object) -> dict[str, object]:
    if isinstance(value, dict):
        return {k: v for key, sub in value.items() for k, v in _flat(f"{prefix}.{key}" if prefix else key, sub).items()}
    return {prefix: value}


def test_translation_files_run_keeps_records_and_a_clean_wandb_run(tmp_path: Path) -> None:
    data = tmp_path / "multi30k"
    data.mkdir()
    overrides = ["data=translation_files", "data.tokenizer=word", "data.batch_size=16", "data.eval_batch_size=8"]
    for split, n, seed in (("train", 160, 0), ("val", 16, 1), ("test", 30, 2)):
        src, tgt, refs = _corpus(data, split, n, seed)
        overrides += [f"data.{split}_src={src.resolve()}", f"data.{split}_tgt={tgt.resolve()}"]
    run_dir = tmp_path / "run"
    proc = run_script(
        [
            "train.py",
            *overrides,
            "debug=limit",
            "trainer.limit_test_batches=1.0",
            "model.beam_size=2",
            "torch_threads=1",
            "extras.print_config=false",
            f"paths.log_dir={tmp_path / 'logs'}",
            f"hydra.run.dir={run_dir}",
        ],
        env={"WANDB_SILENT": None},
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-3000:]
    assert "wandb: WARNING" not in output and "anonymous" not in output, output[-3000:]

    # Progress without a terminal: one line per epoch in train.log.
    progress = [line for line in (run_dir / "train.log").read_text().splitlines() if "epoch_progress" in line]
    assert len(progress) == 2, progress
    for epoch, line in enumerate(progress, start=1):
        assert re.search(
            rf"epoch {epoch}/2  step {3 * epoch}  train/loss [\d.]+  val/bleu [\d.]+  "
            r"elapsed \d+:\d\d:\d\d( {2}left ~\d+:\d\d:\d\d)?$",
            line,
        ), line

    # Test outputs in reference order, scoring as the run scored.
    record = json.loads((run_dir / "metrics.json").read_text())
    outputs = read_test_outputs(run_dir)
    assert outputs is not None and outputs.order == "reference" and outputs.references == refs
    assert len(outputs.hypotheses) == 30
    from sacrebleu.metrics import BLEU

    bleu = BLEU(smooth_method="none", force=True).corpus_score(outputs.hypotheses, [outputs.references]).score
    assert bleu == pytest.approx(record["metrics"]["test/bleu"], abs=1e-3)
    assert all(
        record["metrics"].get(key) is not None
        for key in (*COST, "cost/train_tokens_per_s", "cost/test_ms_per_sentence")
    )
    assert record["metrics"]["cost/params_attention"] > 0

    # W&B: a short name without paths, a small config nested once, test metrics and cost in the summary.
    (wandb_dir,) = list((tmp_path / "logs" / "wandb").glob("offline-run-*"))
    run = inspect_wandb_run(wandb_dir)
    assert len(run["name"]) <= 80 and "/" not in run["name"] and run["name"] == record["run_name"]
    config = {k: (v.get("value") if isinstance(v, dict) and "value" in v else v) for k, v in run["config"].items()}
    config.pop("_wandb", None)
    sizes = {k: len(json.dumps(v)) for k, v in _flat("", config).items()}
    assert max(sizes.values()) < 10_000, max(sizes.items(), key=lambda kv: kv[1])
    assert len(json.dumps(config)) < 100_000
    assert not [k for k in sizes if "tokenizer_json" in k]
    # Nested once: the model's arguments live under model.*, not again at the top level.
    assert {"model", "data", "attention", "trainer"} <= set(config) and not {"net", "src_vocab_size"} & set(config)
    summary = run["summary"]
    assert summary["test/bleu"] == pytest.approx(record["metrics"]["test/bleu"], abs=1e-4)
    assert all(key in summary for key in COST)


def _dirname(overrides: list[str]) -> str:
    """Hydra's ``override_dirname``: the overrides sorted and joined by commas."""
    return ",".join(sorted(overrides))


def test_run_name_of_a_multi30k_style_command_is_short() -> None:
    # The README's corpus commands, with absolute paths to a Multi30k checkout (~400 characters).
    root = "/data/shared/corpora/multi30k/data/task1/tok"
    text = [
        "data=translation_files",
        *(
            f"data.{s}_{side}={root}/{f}.lc.norm.tok.{lang}"
            for s, f in (("train", "train"), ("val", "val"), ("test", "test_2016_flickr"))
            for side, lang in (("src", "de"), ("tgt", "en"))
        ),
    ]
    assert len(_dirname(text)) > 300
    assert build_name(_dirname(text)) == "translation-additive"
    tsv = [
        "data=translation_files",
        "data.format=tsv",
        *(f"data.{s}_tsv={root}/{s}.tsv" for s in ("train", "val", "test")),
        "data.tsv_src_col=0",
        "data.tsv_tgt_col=1",
        "data.lowercase=true",
        "data.max_len=80",
    ]
    assert build_name(_dirname(tsv)) == "translation-additive_lowercase=true,max_len=80"
    # More settings than fit: cut to 80 characters, ending in a hash that keeps names apart.
    many = [
        *text,
        "model.net.hidden_dim=512",
        "model.optimizer.lr=0.001",
        "trainer.max_epochs=20",
        "model.net.weights=/models/pretrained/resnet18.pth",
        "model.label_smoothing=0.2",
        "model.beam_size=10",
    ]
    name = build_name(_dirname(many))
    assert len(name) == 80 and "/" not in name and "weights=resnet18.pth" not in name  # cut, but no path
    assert build_name(_dirname(many[:-1])) != name


def build_name(override_dirname: str, attention: str = "additive") -> str:
    return run_name("translation", attention, name_parts(split_overrides(override_dirname)))


def test_run_name_keeps_swept_values_and_cuts_with_a_hash() -> None:
    assert (
        run_name("detection", "dot", name_parts(["seed=2", "model.optimizer.lr=0.01"], constant={"seed"}))
        == "detection-dot_lr=0.01"
    )
    assert name_parts(["model.net.dropout=0.1", "data.dropout=0.2"]) == ["model.net.dropout=0.1", "data.dropout=0.2"]
    assert name_parts(["model.net.weights=/models/x/resnet18.pth", "data.root=/data/coco"]) == ["weights=resnet18.pth"]
    long_a = run_name("translation", "additive", [f"k{i}=v" for i in range(40)])
    long_b = run_name("translation", "additive", [f"k{i}=w" for i in range(40)])
    assert len(long_a) == 80 and long_a != long_b


def _coco_with_own_ids(root: Path) -> None:
    """A tiny COCO-layout set with the data set's own ids (images 101, 108, ...; categories 7 and 9)
    and images of two sizes (landscape and portrait), so media and ids are exercised for real."""
    from PIL import Image, ImageDraw

    for s, split in enumerate(("train", "val", "test")):
        (root / split).mkdir(parents=True)
        images, anns = [], []
        for i in range(8 if split == "train" else 4):
            w, h = (96, 64) if i % 2 else (64, 96)
            image_id, cat = 101 + 7 * i + 1000 * s, 7 if i % 3 else 9
            img = Image.new("RGB", (w, h), (40, 90, 40))
            ImageDraw.Draw(img).rectangle([10, 12, 40, 44], fill=(230, 200, 30) if cat == 7 else (30, 60, 220))
            img.save(root / split / f"{image_id}.png")
            images.append({"id": image_id, "width": w, "height": h, "file_name": f"{image_id}.png"})
            anns.append(
                {
                    "id": len(anns) + 1,
                    "image_id": image_id,
                    "category_id": cat,
                    "bbox": [10, 12, 30, 32],
                    "area": 960.0,
                    "iscrowd": 0,
                }
            )
        (root / split / "annotations.json").write_text(
            json.dumps(
                {"images": images, "annotations": anns, "categories": [{"id": 7, "name": "y"}, {"id": 9, "name": "b"}]}
            )
        )


def test_detection_run_keeps_coco_results_in_the_data_sets_ids(tmp_path: Path) -> None:
    from attnlab.evaluation.coco_bootstrap import PerImageEvaluation

    root = tmp_path / "coco"
    _coco_with_own_ids(root)
    splits = [
        f"data.splits.{s}.{k}={s}{suffix}"
        for s in ("train", "val", "test")
        for k, suffix in (("images", ""), ("annotations", "/annotations.json"))
    ]
    run_dir = tmp_path / "run"
    proc = run_script(
        [
            "train.py",
            "experiment=detection",
            f"data.root={root}",
            *splits,
            "data.batch_size=4",
            "data.num_workers=0",
            "debug=limit",
            "torch_threads=1",
            "extras.print_config=false",
            f"paths.log_dir={tmp_path / 'logs'}",
            f"hydra.run.dir={run_dir}",
        ],
        env={"WANDB_SILENT": None},
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-3000:]
    assert "Images sizes do not match" not in output and "wandb: WARNING" not in output, output[-3000:]
    record = json.loads((run_dir / "metrics.json").read_text())
    outputs = read_test_outputs(run_dir)
    assert outputs is not None and outputs.annotation_file == str(root / "test" / "annotations.json")
    assert outputs.image_ids == [2101, 2108, 2115, 2122] and outputs.category_ids == [7, 9]
    assert {d["image_id"] for d in outputs.detections} <= set(outputs.image_ids)
    assert {d["category_id"] for d in outputs.detections} <= {7, 9}
    # Scored again from the kept outputs alone: the run's own test/map.
    again = PerImageEvaluation(outputs.annotation_file, outputs.detections, outputs.image_ids, outputs.category_ids)
    assert again.map() == pytest.approx(record["metrics"]["test/map"], abs=1e-4)
    assert all(
        record["metrics"].get(key) is not None for key in (*COST, "cost/train_images_per_s", "cost/test_ms_per_image")
    )


def test_peak_memory_is_each_runs_own_in_one_process() -> None:
    """Jobs of a sequential sweep share a process: the peak is reset when a run starts training."""
    import numpy as np

    from attnlab.callbacks.cost import _peak_rss_mb, _reset_peak_rss

    block = np.ones(300 * 2**20 // 8)  # 300 MiB, touched
    before = _peak_rss_mb()
    del block
    if not _reset_peak_rss():
        pytest.skip("this kernel has no resettable high-water mark (/proc/self/clear_refs)")
    assert _peak_rss_mb() < before - 200
