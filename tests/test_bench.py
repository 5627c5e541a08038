"""scripts/bench.py at tiny sizes: report structure, units, finite positive figures — no timing asserts.

Fast tests exercise each section's building blocks on tiny data/models (real Trainer, real COCOeval,
real subprocesses); the whole sections and the command line run under ``-m slow``.
"""

from __future__ import annotations

import json
import math
import os
import sys
from pathlib import Path
from typing import Any

import pytest

from attnlab.bench import SECTIONS, report
from attnlab.bench.settings import BenchSettings

from .conftest import REPO


@pytest.fixture
def tiny(tmp_path: Path) -> BenchSettings:
    return BenchSettings(mode="tiny", workdir=tmp_path, threads=1)


def _check_figures(figures: list[dict[str, Any]]) -> None:
    assert figures
    for f in figures:
        assert f["unit"], f
        assert f["n"] == len(f["samples"]) >= 1, f
        assert all(math.isfinite(s) and s >= 0 for s in f["samples"]), f
        assert f["min"] <= f["value"] <= f["max"], f


def _check_section(result: dict[str, Any], key: str, tmp_path: Path) -> None:
    assert result["key"] == key and result["error"] is None, result.get("error")
    assert result["seconds"] is not None and result["seconds"] > 0
    _check_figures(result["figures"])
    for t in result["targets"]:
        assert t["met"] in (True, False), t
        assert math.isfinite(t["value"]) and t["value"] > 0, t
    # Strict JSON (no NaN) and a Markdown table with every figure.
    path = report.write_json({"sections": {key: result}}, tmp_path / f"{key}.json")
    assert json.loads(path.read_text())["sections"][key]["title"] == result["title"]
    markdown = report.to_markdown({"machine": {}, "sections": {key: result}})
    assert all(f["name"] in markdown for f in result["figures"])


# ------------------------------------------------------------------------------------------ report
def test_report_figures_targets_markdown_json(tmp_path: Path) -> None:
    fig = report.figure("x", [3.0, 1.0, 2.0], "steps/s")
    assert fig["value"] == 2.0 and fig["n"] == 3 and (fig["min"], fig["max"]) == (1.0, 3.0)
    assert report.target("r", ">=", 0.97, 0.99, "ratio")["met"] is True
    assert report.target("r", ">=", 0.97, 0.5, "ratio")["met"] is False
    assert report.target("m", "<", 2 * 2**30, None, "bytes")["met"] is None
    assert report.format_value(3 * 2**30, "bytes") == "3 GiB"
    assert report.format_value(2.5e9, "FLOP/s") == "2.5 GFLOP/s"
    sec = report.section("demo", "Demo section")
    sec.update(figures=[fig], targets=[report.target("r", ">=", 1.0, 2.0, "x")], seconds=1.0, notes=["a note"])
    rep = {"mode": "tiny", "machine": {"cores": 2}, "sections": {"demo": sec}, "nan": float("nan")}
    md = report.to_markdown(rep)
    assert "| Demo section | r >= 1x | 2x | met |" in md and "| x | 2 steps/s | 3 (1 steps/s .. 3 steps/s) |" in md
    loaded = json.loads(report.write_json(rep, tmp_path / "r.json").read_text())
    assert loaded["nan"] is None and loaded["sections"]["demo"]["figures"][0]["unit"] == "steps/s"


def test_machine_info_and_matmul_peak() -> None:
    from attnlab.bench.machine import machine_info, peak_matmul_flops

    info = machine_info("cpu")
    assert info["cores"] >= 1 and info["torch"] and info["device"] == "cpu"
    samples = peak_matmul_flops("cpu", n=64, repeats=2)
    assert len(samples) == 2 and all(s > 0 and math.isfinite(s) for s in samples)


def test_section_names_parse() -> None:
    from attnlab.bench.cli import parse_sections

    assert parse_sections(None) == list(SECTIONS)
    assert parse_sections("startup,overhead") == ["overhead", "startup"]
    with pytest.raises(ValueError, match="bogus"):
        parse_sections("overhead,bogus")


# ------------------------------------------------------------------------------------------ sections
def test_overhead_translation_same_batches_and_loss(tiny: BenchSettings) -> None:
    from attnlab.bench.overhead import compare_task

    out = compare_task(tiny, "translation")
    _check_figures(out["figures"])
    assert {f["unit"] for f in out["figures"]} == {"steps/s", "ratio"}
    details = out["details"]
    # Same model init, batches and optimizer: both loops end at the same loss.
    assert details["same_batches"]
    assert details["final_loss_lightning"][0] == pytest.approx(details["final_loss_plain"][0], rel=1e-4)
    assert out["target"]["op"] == ">=" and out["target"]["met"] in (True, False)


def test_attention_cases_and_isolated_peak_memory() -> None:
    from attnlab.bench.attention import NAIVE_LIMIT_BYTES, cases_for, naive_bytes, run_isolated

    quick_cases, notes = cases_for(BenchSettings(mode="quick"))
    assert naive_bytes(1, 4096, 4096) > NAIVE_LIMIT_BYTES and any("4096" in n for n in notes)
    assert not any(c.get("naive") and c["Tq"] == 4096 for c in quick_cases)
    kinds = {c["kind"] for c in quick_cases if c["impl"] == "attnlab"}
    assert kinds == {"additive", "dot", "general", "multihead", "none"}
    base = {"B": 2, "Tq": 8, "Tk": 8, "D": 16, "warmup": 1, "repeats": 2, "threads": 1, "device": "cpu"}
    additive, paired, bogus = run_isolated([
        {**base, "name": "additive", "impl": "attnlab", "kind": "additive"},
        {**base, "name": "paired", "impl": "paired_mha", "kind": "multihead"},
        {**base, "name": "bogus", "impl": "attnlab", "kind": "bogus"},
    ], timeout=120)
    assert additive["ok"], additive
    assert additive["baseline_rss_bytes"] > 0 and additive["peak_rss_bytes"] >= additive["baseline_rss_bytes"]
    assert len(additive["seconds"]) == 2 and all(s > 0 for s in additive["seconds"])
    assert paired["ok"], paired
    assert len(paired["ratios"]) == 2 and all(r > 0 for r in paired["ratios"])
    # A failing case is reported, not raised, and does not stop the others.
    assert not bogus["ok"] and "bogus" in bogus["error"]


def test_throughput_flop_count_tiny(tiny: BenchSettings) -> None:
    from attnlab.bench.harness import prepare_job, tiny_overrides
    from attnlab.bench.throughput import count_step_flops

    job = prepare_job("translation", scratch=tiny.scratch("t"), overrides=tiny_overrides("translation", tiny.workdir))
    flops, tokens, items = count_step_flops(job, batches=1)
    assert flops > 0 and tokens > 0 and items == job.cfg.data.batch_size


def test_evaluation_section_tiny(tiny: BenchSettings, tmp_path: Path) -> None:
    from attnlab.bench import evaluation

    gt, per_image = evaluation.make_synthetic(5, n_categories=3, seed=1)
    assert len(gt["images"]) == 5 and len(per_image) == 5 and gt["annotations"]
    result = evaluation.run(tiny)
    _check_section(result, "evaluation", tmp_path)
    aps = result["details"]["synthetic"]["ap"]
    assert aps["pycocotools"] == pytest.approx(aps["faster_coco_eval"], abs=1e-6) and 0 < aps["pycocotools"] <= 1


def test_startup_command_timing_and_first_step_timer(tmp_path: Path) -> None:
    import pytorch_lightning as pl
    import torch

    from attnlab.bench.startup import FirstStepTimer, time_command

    samples = time_command([sys.executable, "-c", "pass"], 2, REPO)
    assert len(samples) == 2 and all(s > 0 for s in samples)
    with pytest.raises(RuntimeError, match="exited 3"):
        time_command([sys.executable, "-c", "raise SystemExit(3)"], 1, REPO)

    class Tiny(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.layer = torch.nn.Linear(2, 1)

        def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
            return self.layer(batch[0]).pow(2).mean()

        def configure_optimizers(self) -> Any:
            return torch.optim.SGD(self.parameters(), lr=0.1)

    marker = tmp_path / "first.json"
    data = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.randn(8, 2)), batch_size=2)
    trainer = pl.Trainer(max_steps=2, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, callbacks=[FirstStepTimer(str(marker), exit_after=False)],
                         default_root_dir=tmp_path)
    trainer.fit(Tiny(), data)
    record = json.loads(marker.read_text())
    assert record["first_step_start"] <= record["first_step_end"] and record["pid"] == os.getpid()


# ------------------------------------------------------------------------------------------ slow: whole sections
@pytest.mark.slow
@pytest.mark.parametrize("key", SECTIONS)
def test_every_section_tiny(key: str, tiny: BenchSettings, tmp_path: Path) -> None:
    import importlib

    result = importlib.import_module(f"attnlab.bench.{key}").run(tiny)
    _check_section(result, key, tmp_path)
    if key == "overhead":
        assert result["details"]["translation"]["same_batches"] and result["details"]["detection"]["same_batches"]
        assert len(result["targets"]) == 2
    if key == "startup":
        assert {t["unit"] for t in result["targets"]} == {"s", "x"}
    if key == "sweep":  # both sweeps ran their 2 jobs to "ok" (the section raises otherwise)
        assert [f["unit"] for f in result["figures"]] == ["s", "s", "x"] and len(result["targets"]) == 1


@pytest.mark.slow
def test_command_line_writes_json_and_markdown(tmp_path: Path) -> None:
    from .helpers import run_script

    out = tmp_path / "bench.json"
    proc = run_script(["scripts/bench.py", "--tiny", "--sections", "evaluation,decoding", "--out", str(out),
                       "--workdir", str(tmp_path / "work")], timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    data = json.loads(out.read_text())
    assert data["schema"] == report.SCHEMA and list(data["sections"]) == ["decoding", "evaluation"]
    assert data["machine"]["cores"] >= 1 and data["machine"]["torch"]
    assert "### 4. Decoding" in out.with_suffix(".md").read_text() and "| Figure |" in proc.stdout
