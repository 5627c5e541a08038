"""Section 8: time to quality -- the default experiments trained until a fixed validation score.

Per task, side by side in one run: ``fp32`` (``trainer.precision=32-true``, no compile: runs before
issue 12) and ``default`` (the config as it is; ``trainer=gpu`` on cuda), each ``trainer.fit`` of the
default experiment (``attnlab.cli.build``; no logger or checkpoints) validating every few dozen steps
and stopping at the first validation that reaches the threshold. Reported: training seconds until
then (the benchmark's own validations left out), the steps, and default / fp32 against the target.
"""

from __future__ import annotations

import math
import statistics
import time
from typing import Any

from benchmarks.report import figure, section, target
from benchmarks.settings import BenchSettings

TITLE = "8. Time to quality (fp32 vs the default)"
TARGET_RATIO = 0.6  # default / fp32 wall time to the same validation score (issue 12)
#: (monitored metric, threshold per mode full / quick / tiny, validate every N steps per mode).
GOALS = {"translation": ("val/bleu", (80.0, 50.0, 0.0), (60, 30, 2)),
         "detection": ("val/map_50", (0.8, 0.5, 0.0), (100, 50, 2))}
VARIANTS = {"fp32": ["trainer.precision=32-true", "compile.enabled=false"], "default": []}


def time_to_quality(job: Any, metric: str, threshold: float, every: int) -> dict[str, Any]:
    """Train ``job`` until ``metric >= threshold`` at a validation (or the configured epochs end)."""
    import pytorch_lightning as pl

    from attnlab.cli.build import build_trainer
    from benchmarks.harness import quiet_lightning

    class Clock(pl.Callback):
        def __init__(self) -> None:
            self.start = self.val_start = self.val_seconds = 0.0
            self.reached: tuple[float, int] | None = None
            self.values: list[tuple[int, float]] = []

        def on_train_start(self, trainer: Any, module: Any) -> None:
            self.start = time.perf_counter()

        def on_validation_start(self, trainer: Any, module: Any) -> None:
            self.val_start = time.perf_counter()

        def on_validation_end(self, trainer: Any, module: Any) -> None:
            self.val_seconds += time.perf_counter() - self.val_start
            value = float(trainer.callback_metrics.get(metric, math.nan))
            self.values.append((trainer.global_step, value))
            if value >= threshold and self.reached is None:
                self.reached = (time.perf_counter() - self.start - self.val_seconds, trainer.global_step)
                trainer.should_stop = True

    clock = Clock()
    model = job.build_task()
    with quiet_lightning():
        trainer = build_trainer(job.cfg, logger=False, callbacks=[clock], enable_checkpointing=False,
                                enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
                                min_epochs=None, min_steps=None,  # else should_stop waits for a whole epoch
                                val_check_interval=every, check_val_every_n_epoch=None,
                                default_root_dir=str(job.scratch))
        trainer.fit(model, datamodule=job.datamodule)
    seconds, steps = clock.reached or (math.nan, trainer.global_step)
    return {"seconds": seconds, "steps": steps, "reached": clock.reached is not None, "curve": clock.values,
            "validation_seconds": clock.val_seconds, "precision": str(job.cfg.trainer.precision),
            "compile": bool(job.cfg.compile.enabled)}


def run(settings: BenchSettings) -> dict[str, Any]:
    """Both tasks, fp32 then the default (alternating order between repeats)."""
    from benchmarks.harness import prepare_job, tiny_overrides

    started = time.perf_counter()
    result = section("quality", TITLE)
    for task, (metric, thresholds, every) in GOALS.items():
        threshold, every_n = settings.pick(*thresholds), settings.pick(*every)
        base = tiny_overrides(task, settings.workdir) + ["trainer.max_epochs=1"] if settings.tiny else []
        runs: dict[str, list[dict[str, Any]]] = {v: [] for v in VARIANTS}
        for i in range(settings.pick(2, 1, 1)):
            for v in (VARIANTS if i % 2 == 0 else reversed(list(VARIANTS))):
                job = prepare_job(task, device=settings.device, seed=settings.seed, overrides=base + VARIANTS[v],
                                  scratch=settings.scratch(f"quality_{task}_{v}_{i}"))
                runs[v].append(time_to_quality(job, metric, threshold, every_n))
        for v, rs in runs.items():
            label = f"{task} {v} ({rs[0]['precision']}{', compiled' if rs[0]['compile'] else ''})"
            if all(r["reached"] for r in rs):
                result["figures"] += [figure(f"{label}: training time to {metric} >= {threshold:g}",
                                             [r["seconds"] for r in rs], "s"),
                                      figure(f"{label}: steps to {metric} >= {threshold:g}",
                                             [r["steps"] for r in rs], "steps")]
            else:
                best = max((val for r in rs for _, val in r["curve"]), default=math.nan)
                result["notes"].append(f"{label}: {metric} >= {threshold:g} not reached in the configured epochs "
                                       f"(best {best:.4g})")
        pairs = [d["seconds"] / f["seconds"] for d, f in zip(runs["default"], runs["fp32"])]
        finite = all(math.isfinite(p) for p in pairs)
        if finite:
            result["figures"].append(figure(f"{task}: default / fp32 time to quality", pairs, "x"))
        result["targets"].append(target(f"{task}: default / fp32 time to {metric} >= {threshold:g}", "<=",
                                        TARGET_RATIO, statistics.median(pairs) if finite else None, "x"))
        result["details"][task] = {"metric": metric, "threshold": threshold, "validate_every": every_n,
                                   "runs": runs, "overrides": base}
    result["notes"].append("The LR schedule is the default run's (its epochs); a run stops at the threshold.")
    result["seconds"] = time.perf_counter() - started
    return result
