"""Section 1: framework overhead — attnlab's task + a Lightning Trainer vs a plain PyTorch loop.

For each task (translation, detection) the same model class, data, batch order, seed and number of
steps are trained (a) by ``trainer.fit`` with the task LightningModule and a Trainer built from the
composed ``cfg.trainer`` (see :func:`attnlab.bench.harness.run_lightning` for what is and is not
included) and (b) by a plain loop over the same DataLoader
(:func:`attnlab.bench.harness.run_plain`). Repeats are interleaved a, b, a, b ... so that load
from other processes hits both alike; warm-up steps are excluded; figures are medians.

The ratio figure is the median of the per-pair ratios a_i / b_i (each pair ran back to back).
"""

from __future__ import annotations

import statistics
import time
from typing import Any

from attnlab.bench.report import figure, section, target
from attnlab.bench.settings import BenchSettings

__all__ = ["TITLE", "TARGET_RATIO", "run", "compare_task"]

TITLE = "1. Framework overhead (Lightning vs plain PyTorch)"
#: Lightning steps/s over plain-loop steps/s must be at least this.
TARGET_RATIO = 0.97


def _plan(settings: BenchSettings, task: str) -> tuple[int, int, int]:
    """(steps, warm-up steps, repeats per variant) for this mode."""
    if task == "translation":
        return settings.pick(full=(60, 10, 5), quick=(12, 3, 3), tiny=(3, 1, 1))
    return settings.pick(full=(30, 5, 5), quick=(8, 2, 3), tiny=(3, 1, 1))


def compare_task(settings: BenchSettings, task: str, overrides: list[str] | None = None) -> dict[str, Any]:
    """Interleaved Lightning/plain runs of one task; returns figures, the target and details."""
    from attnlab.bench.harness import prepare_job, run_lightning, run_plain, tiny_overrides

    steps, warmup, repeats = _plan(settings, task)
    extra = list(overrides or [])
    if settings.tiny:
        extra = tiny_overrides(task, settings.workdir) + extra
    job = prepare_job(task, device=settings.device, seed=settings.seed, scratch=settings.scratch(f"overhead_{task}"),
                      overrides=extra)
    lightning, plain = [], []
    for _ in range(repeats):
        lightning.append(run_lightning(job, steps, warmup))
        plain.append(run_plain(job, steps, warmup))
    a = [r.steps_per_second for r in lightning]
    b = [r.steps_per_second for r in plain]
    ratios = [x / y for x, y in zip(a, b)]
    cpu_ratios = [x.steps_per_cpu_second / y.steps_per_cpu_second for x, y in zip(lightning, plain)]
    reference = lightning[0].fingerprints
    same_batches = all(r.fingerprints == reference for r in lightning + plain)
    unit = "steps/s"
    figures = [
        figure(f"{task}: Lightning + {str(job.cfg.model._target_).rsplit('.', 1)[-1]}", a, unit),
        figure(f"{task}: plain PyTorch loop", b, unit),
        figure(f"{task}: ratio Lightning / plain", ratios, "ratio", note="median of per-pair ratios"),
        figure(f"{task}: ratio Lightning / plain, CPU time", cpu_ratios, "ratio",
               note="steps per CPU-second of the process; less sensitive to other processes' load"),
    ]
    ratio = statistics.median(ratios)
    tgt = target(f"{task}: Lightning/plain steps/s", ">=", TARGET_RATIO, ratio, "ratio")
    trainer_cfg = {k: job.cfg.trainer.get(k) for k in ("accelerator", "precision", "gradient_clip_val",
                                                       "accumulate_grad_batches", "log_every_n_steps",
                                                       "deterministic")}
    details = {
        "steps": steps, "warmup": warmup, "repeats": repeats,
        "batch_size": job.cfg.data.get("batch_size"),
        "overrides": extra,
        "seconds_lightning": [r.seconds for r in lightning],
        "seconds_plain": [r.seconds for r in plain],
        "cpu_seconds_lightning": [r.cpu_seconds for r in lightning],
        "cpu_seconds_plain": [r.cpu_seconds for r in plain],
        "same_batches": same_batches,
        "ratio_of_medians": statistics.median(a) / statistics.median(b),
        "final_loss_lightning": [r.final_loss for r in lightning],
        "final_loss_plain": [r.final_loss for r in plain],
        "items_per_timed_run": lightning[0].items,
        "trainer": trainer_cfg,
        "model": str(job.cfg.model.get("_target_")),
        "attention": str(job.cfg.attention.get("kind")),
    }
    if not extra:
        # The default config's Lightning runs are also the throughput section's measurement.
        settings.shared[("lightning_runs", task)] = (job, lightning)
    return {"figures": figures, "target": tgt, "details": details}


def run(settings: BenchSettings) -> dict[str, Any]:
    """Both tasks; see the module docstring."""
    started = time.perf_counter()
    result = section("overhead", TITLE)
    for task in ("translation", "detection"):
        out = compare_task(settings, task)
        result["figures"] += out["figures"]
        result["targets"].append(out["target"])
        result["details"][task] = out["details"]
        d = out["details"]
        if d["overrides"]:
            result["notes"].append(f"{task}: config overrides in this mode: {' '.join(d['overrides'])}")
        if not d["same_batches"]:
            result["notes"].append(f"{task}: the two loops did NOT see the same batches (fingerprints differ)")
    result["notes"] += [
        "(a) trainer.fit with the task LightningModule and a Trainer instantiated from the composed "
        "cfg.trainer (hydra.compose of conf/train.yaml + experiment=<task>): precision, clipping, "
        "log_every_n_steps and the task's self.log calls included; logger=False, no checkpointing, "
        "early stopping, progress bar, LR monitor or media callbacks, no validation, no model summary; "
        "one callback records a timestamp per step.",
        "(b) plain loop: same task class and initial weights (same seed), same optimizer partial, same "
        "DataLoader and batch order; zero_grad / forward / loss / backward / clip_grad_norm_ / step.",
        "The ratio figures are per-pair (a_i / b_i, runs back to back) medians; the CPU-time ratio "
        "divides steps per CPU-second instead of per wall second.",
        f"Repeats interleaved a,b,a,b; the first warm-up steps of every run are not timed "
        f"(translation {result['details']['translation']['warmup']}, "
        f"detection {result['details']['detection']['warmup']}); data loading of timed steps is included.",
    ]
    result["seconds"] = time.perf_counter() - started
    return result
