"""compare_runs.py reads metrics.json files (no W&B account, no network) into a table and plots."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

from PIL import Image

from attnlab.compare.records import load_records
from attnlab.utils.metrics_file import write_metrics_file

from .conftest import REPO

KINDS = ("additive", "dot", "general", "multihead", "none")


def _fake_sweep(root: Path) -> Path:
    """A sweep folder as train.py writes it: one folder per job, each with metrics.json."""
    sweep = root / "multiruns" / "2026-01-01_00-00-00"
    job = 0
    for task in ("translation", "detection"):
        for i, kind in enumerate(KINDS):
            if task == "translation":
                metrics = {"test/bleu": 90.0 - 10 * i, "test/chrf": 95.0 - 5 * i, "val/bleu": 89.0 - 10 * i,
                           "test/bleu_len_01-10": 95.0 - i, "test/bleu_len_11-20": 90.0 - 5 * i,
                           "test/bleu_len_21-30": 85.0 - 12 * i, "test/bleu_len_gt20": 84.0 - 12 * i}
                monitor = {"metric": "val/bleu", "mode": "max"}
            else:
                metrics = {"test/map": 0.5 - 0.05 * i, "test/map_50": 0.8 - 0.05 * i, "val/map": 0.45}
                monitor = {"metric": "val/map", "mode": "max"}
            status = "failed" if (task, kind) == ("detection", "general") else "ok"
            write_metrics_file(sweep / str(job), {
                "status": status, "task": task, "run_name": f"{task}-{kind}",
                "choices": {"attention": kind, "data": "x", "model": "y"}, "monitor": monitor,
                "metrics": metrics if status == "ok" else {}, "duration_s": 12.5 + job,
                "hparams": {"model.optimizer.lr": 0.001, "attention.kind": kind},
                "error": "RuntimeError: boom" if status == "failed" else None,
            })
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


def test_compare_runs_script_writes_table_and_readable_plots(tmp_path: Path) -> None:
    sweep = _fake_sweep(tmp_path)
    out = tmp_path / "cmp"
    proc = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "compare_runs.py"), str(sweep), "--out", str(out)],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "10 runs" in proc.stdout
    with open(out / "comparison.csv") as fh:
        rows = list(csv.reader(fh))
    assert len(rows) == 11 and "attention" in rows[0] and "test/bleu" in rows[0]
    md = (out / "comparison.md").read_text().splitlines()
    assert len(md) == 12
    for png in ("main_metric_by_attention.png", "bleu_by_length.png"):
        with Image.open(out / png) as img:
            assert img.size[0] >= 600 and img.size[1] >= 400


def test_compare_runs_names_a_missing_folder(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "compare_runs.py"), str(tmp_path / "nope")],
        capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 2 and "nope" in proc.stderr
