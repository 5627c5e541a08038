"""Section 1: framework overhead -- the task in a Lightning Trainer vs the same task in a plain loop.

Per task: the same task class, initial weights, batches, optimizer and steps, trained by
``trainer.fit`` (:func:`benchmarks.harness.run_lightning`) and by a plain loop calling the task's
own ``training_step`` (:func:`benchmarks.harness.run_plain`). Repeats interleave a, b, a, b so that
load from other processes hits both alike; warm-up steps are not timed. The ratio is the median of
the per-pair ratios.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

from benchmarks.report import figure, section, target
from benchmarks.settings import BenchSettings

TITLE = "1. Framework overhead (Lightning vs plain PyTorch)"
TARGET_RATIO = 0.97  # Lightning steps/s over plain-loop steps/s


def compare_task(settings: BenchSettings, task: str, overrides: list[str] | None = None) -> dict[str, Any]:
    """Interleaved Lightning / plain runs of one task: figures, the target, details."""
    from benchmarks.harness import prepare_job, run_lightning, run_plain, tiny_overrides

    steps, warmup, repeats = settings.pick(full=(60, 10, 5), quick=(12, 3, 3), tiny=(3, 1, 1)) \
        if task == "translation" else settings.pick(full=(30, 5, 5), quick=(8, 2, 3), tiny=(3, 1, 1))
    extra = (tiny_overrides(task, settings.workdir) if settings.tiny else []) + list(overrides or [])
    job = prepare_job(task, device=settings.device, seed=settings.seed, scratch=settings.scratch(f"overhead_{task}"),
                      overrides=extra)
    lightning, plain = [], []
    for _ in range(repeats):
        lightning.append(run_lightning(job, steps, warmup))
        plain.append(run_plain(job, steps, warmup))
    a, b = [r.steps_per_second for r in lightning], [r.steps_per_second for r in plain]
    ratios = [x / y for x, y in zip(a, b)]
    model = str(job.cfg.model._target_).rsplit(".", 1)[-1]
    figures = [
        figure(f"{task}: Lightning + {model}", a, "steps/s"),
        figure(f"{task}: plain PyTorch loop", b, "steps/s"),
        figure(f"{task}: ratio Lightning / plain", ratios, "ratio", note="median of per-pair ratios"),
        figure(f"{task}: ratio Lightning / plain, CPU time",
               [x.steps_per_cpu_second / y.steps_per_cpu_second for x, y in zip(lightning, plain)], "ratio",
               note="steps per CPU-second of the process; less sensitive to other processes' load"),
    ]
    details = {"steps": steps, "warmup": warmup, "repeats": repeats, "overrides": extra,
               "batch_size": job.cfg.data.get("batch_size"), "precision": job.precision,
               "same_batches": all(r.fingerprints == lightning[0].fingerprints for r in lightning + plain),
               "seconds_lightning": [r.seconds for r in lightning], "seconds_plain": [r.seconds for r in plain],
               "final_loss_lightning": [r.final_loss for r in lightning],
               "final_loss_plain": [r.final_loss for r in plain], "items_per_timed_run": lightning[0].items,
               "ratio_of_medians": statistics.median(a) / statistics.median(b)}
    if not overrides:  # the default config's Lightning runs are also section 3's default-precision rate
        settings.shared[("lightning_runs", task)] = (job, lightning)
    return {"figures": figures, "details": details,
            "target": target(f"{task}: Lightning/plain steps/s", ">=", TARGET_RATIO, statistics.median(ratios),
                             "ratio")}


def run(settings: BenchSettings) -> dict[str, Any]:
    """Both tasks; see the module docstring."""
    started = time.perf_counter()
    result = section("overhead", TITLE)
    for task in ("translation", "detection"):
        out = compare_task(settings, task)
        result["figures"] += out["figures"]
        result["targets"].append(out["target"])
        result["details"][task] = d = out["details"]
        if not d["same_batches"]:
            result["notes"].append(f"{task}: the two loops did NOT see the same batches (fingerprints differ)")
    result["notes"] += [
        "(a) trainer.fit of the task with a Trainer from the composed cfg.trainer (attnlab.cli.build; precision "
        f"{result['details']['translation']['precision']}, clipping, log_every_n_steps and the task's self.log "
        "included); no logger, checkpoints, early stopping, progress bar, LR monitor, media or validation.",
        "(b) plain loop: the same task's configure_optimizers and training_step (self.log returns at once), same "
        "seed, DataLoader and batch order; zero_grad / training_step / backward / clip_grad_norm_ / step.",
        "Repeats interleaved a,b,a,b; warm-up steps not timed; data loading of timed steps included.",
    ]
    result["seconds"] = time.perf_counter() - started
    return result
