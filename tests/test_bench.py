"""scripts/bench.py (benchmarks/) at tiny sizes: report structure, units, finite positive figures --
no timing asserts.

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

from benchmarks import SECTIONS, report
from benchmarks.settings import BenchSettings

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
    from benchmarks.machine import machine_info, peak_matmul_flops

    info = machine_info("cpu")
    assert info["cores"] >= 1 and info["torch"] and info["device"] == "cpu" and "cpu_bf16" in info
    for dtype in ("float32", "bfloat16"):
        samples = peak_matmul_flops("cpu", dtype, n=64, repeats=2)
        assert len(samples) == 2 and all(s > 0 and math.isfinite(s) for s in samples)


def test_section_names_parse() -> None:
    from benchmarks.cli import parse_sections

    assert parse_sections(None) == list(SECTIONS) and "quality" in SECTIONS
    assert parse_sections("startup,overhead") == ["overhead", "startup"]
    with pytest.raises(ValueError, match="bogus"):
        parse_sections("overhead,bogus")


# ------------------------------------------------------------------------------------------ sections
@pytest.mark.parametrize("precision", ["32-true", "bf16-mixed"])
def test_overhead_translation_same_batches_and_loss(precision: str, tiny: BenchSettings) -> None:
    """The plain loop calls the task's own training_step / configure_optimizers: same batches, same loss."""
    from benchmarks.overhead import compare_task

    out = compare_task(tiny, "translation", [f"trainer.precision={precision}"])
    _check_figures(out["figures"])
    assert {f["unit"] for f in out["figures"]} == {"steps/s", "ratio"}
    details = out["details"]
    # Same model init, batches and optimizer: both loops end at the same loss.
    assert details["same_batches"] and details["precision"] == precision
    # bf16: the same kernels, but not bit-identical from run to run (oneDNN's bf16 reductions).
    rel = 1e-4 if precision == "32-true" else 1e-2
    assert details["final_loss_lightning"][0] == pytest.approx(details["final_loss_plain"][0], rel=rel)
    assert out["target"]["op"] == ">=" and out["target"]["met"] in (True, False)


def test_attention_cases_and_isolated_peak_memory() -> None:
    from benchmarks.attention import NAIVE_LIMIT_BYTES, cases_for, median_lower_bound, naive_bytes, run_isolated

    # Parity target: a ~95% lower bound of the median; one noisy pair cannot flip it.
    assert median_lower_bound([1.04, 0.99, 1.01, 1.0, 0.98, 1.02, 1.03, 0.97, 1.05]) == 0.98
    assert median_lower_bound([1.2, 1.1]) == 1.1

    quick_cases, notes = cases_for(BenchSettings(mode="quick"))
    assert naive_bytes(1, 4096, 4096) > NAIVE_LIMIT_BYTES and any("4096" in n for n in notes)
    assert not any(c.get("naive") and c["Tq"] == 4096 for c in quick_cases)
    kinds = {c["kind"] for c in quick_cases if c["impl"] == "attnlab"}
    assert kinds == {"additive", "dot", "general", "multihead", "none"}
    base = {"B": 2, "Tq": 8, "Tk": 8, "D": 16, "warmup": 1, "repeats": 2, "threads": 1, "device": "cpu"}
    additive, paired, bogus = run_isolated(
        [
            {**base, "name": "additive", "impl": "attnlab", "kind": "additive"},
            {**base, "name": "paired", "impl": "paired_mha", "kind": "multihead"},
            {**base, "name": "bogus", "impl": "attnlab", "kind": "bogus"},
        ],
        timeout=120,
    )
    assert additive["ok"], additive
    assert additive["baseline_rss_bytes"] > 0 and additive["peak_rss_bytes"] >= additive["baseline_rss_bytes"]
    assert len(additive["seconds"]) == 2 and all(s > 0 for s in additive["seconds"])
    assert paired["ok"], paired
    assert len(paired["ratios"]) == 2 and all(r > 0 for r in paired["ratios"])
    assert len(paired["seconds"]) == len(paired["seconds_torch"]) == 2
    # A failing case is reported, not raised, and does not stop the others.
    assert not bogus["ok"] and "bogus" in bogus["error"]


def test_throughput_flop_count_tiny(tiny: BenchSettings) -> None:
    from benchmarks.harness import prepare_job, tiny_overrides
    from benchmarks.throughput import count_step_flops

    job = prepare_job("translation", scratch=tiny.scratch("t"), overrides=tiny_overrides("translation", tiny.workdir))
    flops, tokens, items = count_step_flops(job, batches=1)
    assert flops > 0 and tokens > 0 and items == job.cfg.data.batch_size


def test_evaluation_section_tiny(tiny: BenchSettings, tmp_path: Path) -> None:
    from benchmarks import evaluation
    from benchmarks.generated import scored_detections

    gt, per_image = scored_detections(5, n_categories=3, seed=1)
    assert len(gt["images"]) == 5 and len(per_image) == 5 and gt["annotations"]
    result = evaluation.run(tiny)
    _check_section(result, "evaluation", tmp_path)
    aps = result["details"]["synthetic"]["ap"]
    assert aps["pycocotools"] == pytest.approx(aps["faster_coco_eval"], abs=1e-6) and 0 < aps["pycocotools"] <= 1


def test_startup_command_timing_and_first_step_timer(tmp_path: Path) -> None:
    import pytorch_lightning as pl
    import torch

    from benchmarks.startup import FirstStepTimer, time_command

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
    trainer = pl.Trainer(
        max_steps=2,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[FirstStepTimer(str(marker), exit_after=False)],
        default_root_dir=tmp_path,
    )
    trainer.fit(Tiny(), data)
    record = json.loads(marker.read_text())
    assert record["first_step_start"] <= record["first_step_end"] and record["pid"] == os.getpid()


def test_time_to_quality_stops_at_the_threshold(tiny: BenchSettings) -> None:
    from benchmarks.harness import prepare_job, tiny_overrides
    from benchmarks.quality import time_to_quality

    job = prepare_job(
        "translation",
        scratch=tiny.scratch("q"),
        overrides=tiny_overrides("translation", tiny.workdir) + ["trainer.max_epochs=1"],
    )
    out = time_to_quality(job, "val/bleu", 101.0, every=8)  # never reached: runs the configured epoch
    assert not out["reached"] and math.isnan(out["seconds"]) and len(out["curve"]) >= 2
    assert out["precision"] in ("32-true", "bf16-mixed")  # auto was resolved
    job = prepare_job("translation", scratch=tiny.scratch("q2"), overrides=tiny_overrides("translation", tiny.workdir))
    out = time_to_quality(job, "val/bleu", 0.0, every=2)
    assert out["reached"] and out["steps"] == 2 and out["seconds"] > 0 and len(out["curve"]) == 1


def test_benchmarks_call_the_real_code_instead_of_copying_it() -> None:
    """Issue 13: no loss, schedule or build steps of their own, and nothing in the installed package."""
    assert not (REPO / "src" / "attnlab" / "bench").exists()
    code = "\n".join(p.read_text() for p in (REPO / "benchmarks").glob("*.py"))
    for copied in ("cross_entropy", "total_steps", "instantiate_component", "inspect.signature", "OneCycleLR"):
        assert copied not in code, copied


# ------------------------------------------------------------------------------------------ slow: whole sections
@pytest.mark.slow
@pytest.mark.parametrize("key", SECTIONS)
def test_every_section_tiny(key: str, tiny: BenchSettings, tmp_path: Path) -> None:
    import importlib

    result = importlib.import_module(f"benchmarks.{key}").run(tiny)
    _check_section(result, key, tmp_path)
    if key == "overhead":
        assert result["details"]["translation"]["same_batches"] and result["details"]["detection"]["same_batches"]
        assert len(result["targets"]) == 2
    if key == "startup":
        assert {t["unit"] for t in result["targets"]} == {"s", "x"}
    if key == "throughput":  # peaks of both dtypes; every variant's rate and utilisation
        names = [f["name"] for f in result["figures"]]
        assert any("bf16 2" in n or "bf16 256" in n for n in names) and any("fp32 256" in n for n in names)
        assert any("translation bf16: utilisation of the bf16" in n for n in names)
        assert {t["name"].split(":")[0] for t in result["targets"]} == {"translation", "detection"}
    if key == "quality":  # tiny thresholds (0): both variants reach them at the first validation
        for task in ("translation", "detection"):
            runs = result["details"][task]["runs"]
            assert runs["fp32"][0]["precision"] == "32-true" and all(r[0]["reached"] for r in runs.values())
    if key == "sweep":  # both sweeps ran their 2 jobs to "ok" (the section raises otherwise)
        assert [f["unit"] for f in result["figures"]] == ["s", "s", "x"] and len(result["targets"]) == 1


@pytest.mark.slow
def test_command_line_writes_json_and_markdown(tmp_path: Path) -> None:
    from .helpers import run_script

    out = tmp_path / "bench.json"
    proc = run_script(
        [
            "scripts/bench.py",
            "--tiny",
            "--sections",
            "evaluation,decoding",
            "--out",
            str(out),
            "--workdir",
            str(tmp_path / "work"),
        ],
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    data = json.loads(out.read_text())
    assert data["schema"] == report.SCHEMA and list(data["sections"]) == ["decoding", "evaluation"]
    assert data["machine"]["cores"] >= 1 and data["machine"]["torch"]
    assert "### 4. Decoding" in out.with_suffix(".md").read_text() and "| Figure |" in proc.stdout
