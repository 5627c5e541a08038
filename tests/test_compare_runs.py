"""compare_runs.py reads metrics.json files (no W&B account, no network) into tables and plots:
one row per run, seeds aggregated per configuration, each kind against a baseline with a paired
bootstrap on the runs' saved test outputs, and the comparison as a job_type=compare W&B run."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from attnlab.compare.aggregate import group_runs
from attnlab.compare.records import load_records
from attnlab.runs.metrics_file import write_metrics_file
from attnlab.runs.test_outputs import write_test_outputs

from .conftest import REPO
from .helpers import inspect_wandb_run

KINDS = ("additive", "dot", "general", "multihead", "none")


def _fake_sweep(root: Path) -> Path:
    """A sweep folder as train.py writes it: one folder per job, each with metrics.json."""
    sweep = root / "multiruns" / "2026-01-01_00-00-00"
    job = 0
    for task in ("translation", "detection"):
        for i, kind in enumerate(KINDS):
            if task == "translation":
                metrics = {
                    "test/bleu": 90.0 - 10 * i,
                    "test/chrf": 95.0 - 5 * i,
                    "val/bleu": 89.0 - 10 * i,
                    "test/bleu_len_01-10": 95.0 - i,
                    "test/bleu_len_11-20": 90.0 - 5 * i,
                    "test/bleu_len_21-30": 85.0 - 12 * i,
                    "test/bleu_len_gt20": 84.0 - 12 * i,
                }
                monitor = {"metric": "val/bleu", "mode": "max"}
            else:
                metrics = {"test/map": 0.5 - 0.05 * i, "test/map_50": 0.8 - 0.05 * i, "val/map": 0.45}
                monitor = {"metric": "val/map", "mode": "max"}
            status = "failed" if (task, kind) == ("detection", "general") else "ok"
            write_metrics_file(
                sweep / str(job),
                {
                    "status": status,
                    "task": task,
                    "run_name": f"{task}-{kind}",
                    "choices": {"attention": kind, "data": "x", "model": "y"},
                    "monitor": monitor,
                    "metrics": metrics if status == "ok" else {},
                    "duration_s": 12.5 + job,
                    "hparams": {"model.optimizer.lr": 0.001, "attention.kind": kind},
                    "error": "RuntimeError: boom" if status == "failed" else None,
                },
            )
            job += 1
    return sweep


def test_records_prefer_test_split_and_keep_failures(tmp_path: Path) -> None:
    records = load_records([_fake_sweep(tmp_path)])
    assert len(records) == 10
    additive = next(r for r in records if r.task == "translation" and r.attention == "additive")
    assert additive.main_metric == "test/bleu" and additive.main_value == 90.0
    assert [label for label, _ in additive.bleu_by_length()] == ["1-10", "11-20", "21-30"]
    failed = [r for r in records if r.status == "failed"]
    assert len(failed) == 1 and "boom" in failed[0].error


def _compare(args: list[str], tmp_path: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(REPO / "scripts" / "compare_runs.py"), *args, "--wandb-dir", str(tmp_path / "wb")],
        capture_output=True,
        text=True,
        timeout=300,
        env={**__import__("os").environ, "WANDB_MODE": "offline"},
    )


def test_compare_runs_script_writes_table_and_readable_plots(tmp_path: Path) -> None:
    sweep = _fake_sweep(tmp_path)
    out = tmp_path / "cmp"
    proc = _compare([str(sweep), "--out", str(out), "--no-wandb-run"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "10 runs" in proc.stdout
    with open(out / "comparison.csv") as fh:
        rows = list(csv.reader(fh))
    assert len(rows) == 11 and "attention" in rows[0] and "test/bleu" in rows[0]
    # No test outputs were kept by these runs: the significance says so instead of guessing.
    assert "not tested (no test outputs" in proc.stdout
    for png in ("main_metric_by_attention.png", "bleu_by_length.png"):
        with Image.open(out / png) as img:
            assert img.size[0] >= 600 and img.size[1] >= 400


def _seed_sweep(root: Path) -> Path:
    """2 tasks x 2 kinds x 2 seeds, with test outputs: additive translates and detects well, none badly."""
    sweep = root / "sweep"
    gt_path = root / "instances_test.json"
    rng = np.random.default_rng(0)
    images = [{"id": 500 + i, "width": 100, "height": 100, "file_name": f"{i}.png"} for i in range(30)]
    anns = [
        {
            "id": i + 1,
            "image_id": 500 + i,
            "category_id": 3,
            "bbox": [10.0, 10.0, 40.0, 40.0],
            "area": 1600.0,
            "iscrowd": 0,
        }
        for i in range(30)
    ]
    gt_path.write_text(json.dumps({"images": images, "annotations": anns, "categories": [{"id": 3, "name": "c"}]}))
    refs = [f"sentence {i} has some words in it ." for i in range(60)]
    job = 0
    for task in ("translation", "detection"):
        for kind in ("additive", "none"):
            for seed in (1, 2):
                run = sweep / str(job)
                good = kind == "additive"
                if task == "translation":
                    hyps = [r if good or i % 2 else "sentence ." for i, r in enumerate(refs)]
                    write_test_outputs(
                        run / "test_outputs",
                        {"task": "translation", "hypotheses": hyps, "references": refs, "bleu_tokenize": "13a"},
                    )
                    metrics = {"test/bleu": 90.0 + seed if good else 40.0 + seed, "val/bleu": 50.0}
                    monitor = "val/bleu"
                else:
                    dets = [
                        {
                            "image_id": a["image_id"],
                            "category_id": 3,
                            "score": float(rng.uniform(0.5, 1)),
                            "bbox": [10.0, 10.0, 40.0, 40.0] if good or i % 3 else [60.0, 60.0, 30.0, 30.0],
                        }
                        for i, a in enumerate(anns)
                    ]
                    write_test_outputs(
                        run / "test_outputs",
                        {
                            "task": "detection",
                            "detections": dets,
                            "annotation_file": str(gt_path),
                            "image_ids": [img["id"] for img in images],
                            "category_ids": [3],
                            "all_images": True,
                        },
                    )
                    metrics = {"test/map": 0.9 if good else 0.6 + 0.01 * seed, "val/map": 0.5}
                    monitor = "val/map"
                metrics.update(
                    {
                        "cost/params_total": 1000.0 + (500 if good else 0),
                        "cost/params_attention": 500.0 if good else 0.0,
                        "cost/steps_per_s": 5.0 + seed,
                        "cost/test_ms_per_image" if task == "detection" else "cost/test_ms_per_sentence": 2.0,
                    }
                )
                write_metrics_file(
                    run,
                    {
                        "status": "ok",
                        "task": task,
                        "run_name": f"{task}-{kind}_seed={seed}",
                        "choices": {"attention": kind, "experiment": task},
                        "monitor": {"metric": monitor},
                        "metrics": metrics,
                        "hparams": {"seed": seed, "data.seed": seed, "attention.kind": kind},
                    },
                )
                job += 1
    return sweep


def test_runs_differing_only_in_seed_form_one_group(tmp_path: Path) -> None:
    groups = group_runs(load_records([_seed_sweep(tmp_path)]))
    assert [(g.task, g.attention, g.seeds) for g in groups] == [
        ("detection", "additive", [1, 2]),
        ("detection", "none", [1, 2]),
        ("translation", "additive", [1, 2]),
        ("translation", "none", [1, 2]),
    ]
    stats = groups[2].stats("test/bleu")
    assert (stats.n, stats.mean, stats.min, stats.max) == (2, 91.5, 91.0, 92.0)
    assert abs(stats.std - 0.7071) < 1e-4


def test_compare_runs_seeds_significance_files_and_wandb_run(tmp_path: Path) -> None:
    sweep = _seed_sweep(tmp_path)
    out = tmp_path / "cmp"
    proc = _compare([str(sweep), "--out", str(out), "--baseline", "attention=none"], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    text = proc.stdout
    # The aggregated table of each task...
    assert "translation: runs that differ only in seed" in text and "detection: runs that differ only" in text
    assert "91.5 ± 0.71" in text and "91–92" in text
    # ...and one significance line per task, both significant, saying how seeds were combined.
    lines = [line for line in text.splitlines() if " vs none:" in line]
    assert len(lines) == 2, text
    assert all("*" in line and "seeds 1,2 paired by seed" in line for line in lines), lines
    assert "pooled" in lines[1] and "sacreBLEU paired bootstrap" in lines[1]
    assert "seeds averaged" in lines[0] and "paired image bootstrap of COCO mAP" in lines[0]
    md = (out / "comparison.md").read_text()
    assert "## Significance against attention=none" in md and "**additive**" in md
    with open(out / "aggregated.csv") as fh:
        agg = list(csv.DictReader(fh))
    assert len(agg) == 4 and {"test/bleu:mean", "test/bleu:std", "test/bleu:min", "test/bleu:max"} <= set(agg[0])
    with open(out / "significance.csv") as fh:
        sig = list(csv.DictReader(fh))
    assert [row["p < 0.05"] for row in sig] == ["*", "*"]
    for png in ("main_metric_by_attention.png", "quality_vs_cost_translation.png", "quality_vs_cost_detection.png"):
        with Image.open(out / png) as img:
            assert img.size[0] >= 600
    # The comparison is one W&B run of its own, readable offline.
    (run_dir,) = list((tmp_path / "wb" / "wandb").glob("offline-run-*"))
    run = inspect_wandb_run(run_dir)
    assert run["job_type"] == "compare" and "compare" in run["tags"]
    assert run["summary"]["significance/translation/additive/significant"] is True
    logged = {"comparison/aggregated", "comparison/significance", "plots/quality_vs_cost_detection"}
    assert logged <= set(run["summary"])


def test_compare_runs_names_a_missing_folder(tmp_path: Path) -> None:
    proc = _compare([str(tmp_path / "nope")], tmp_path)
    assert proc.returncode == 2 and "nope" in proc.stderr
