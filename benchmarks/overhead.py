"""Section 1: framework overhead -- the task in a Lightning Trainer vs the same task in a plain loop
(same weights, batches, optimizer and steps; see :mod:`benchmarks.harness`). Repeats interleave
a, b, a, b; warm-up steps are not timed; the ratio is the median of the per-pair ratios. On a CPU
in float32 unless ``overrides`` set ``trainer.precision`` (section 3 times bf16)."""

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
    if settings.device == "cpu" and not any(o.startswith("trainer.precision=") for o in extra):
        # The overhead is per step, whatever the precision; bf16 translation steps/s varied by +-13%
        # between consecutive runs on this CPU (ratio 1.13, then 0.87), which would drown a 3% overhead.
        extra.append("trainer.precision=32-true")
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
               [x.steps_per_cpu_second / y.steps_per_cpu_second for x, y in zip(lightning, plain)], "ratio"),
    ]
    details = {"steps": steps, "warmup": warmup, "repeats": repeats, "overrides": extra,
               "batch_size": job.cfg.data.get("batch_size"), "precision": job.precision,
               "same_batches": all(r.fingerprints == lightning[0].fingerprints for r in lightning + plain),
               "seconds_lightning": [r.seconds for r in lightning], "seconds_plain": [r.seconds for r in plain],
               "final_loss_lightning": [r.final_loss for r in lightning],
               "final_loss_plain": [r.final_loss for r in plain], "items_per_timed_run": lightning[0].items,
               "ratio_of_medians": statistics.median(a) / statistics.median(b)}
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
        "(a) trainer.fit with a Trainer from cfg.trainer (attnlab.cli.build; precision "
        f"{result['details']['translation']['precision']}, clipping and the task's self.log included; no logger, "
        "checkpoints, callbacks or validation). (b) a plain loop over the same DataLoader calling the task's own "
        "configure_optimizers and training_step. Data loading of timed steps included.",
    ]
    result["seconds"] = time.perf_counter() - started
    return result
