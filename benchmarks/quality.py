"""Section 8: time to quality -- ``trainer.fit`` of each default experiment, ``fp32`` (no compile) and ``default``,
validating every few dozen steps until a fixed score; training seconds (validations left out) and steps to it."""

from __future__ import annotations

import math
import statistics
import time
from typing import Any

from benchmarks.harness import TIMING_ONLY, TrainingJob, job_for, quiet_lightning, tiny_overrides
from benchmarks.machine import interleave
from benchmarks.report import figure, target, timed
from benchmarks.settings import BenchSettings

TITLE = "8. Time to quality (fp32 vs the default)"
TARGET_RATIO = 0.6  # default / fp32 wall time to the same validation score (issue 12)
#: (monitored metric, threshold per mode full / quick / tiny, validate every N steps per mode).
GOALS = {
    "translation": ("val/bleu", (80.0, 50.0, 0.0), (60, 30, 2)),
    "detection": ("val/map_50", (0.8, 0.5, 0.0), (100, 50, 2)),
}
VARIANTS = {"fp32": ["trainer.precision=32-true", "compile.enabled=false"], "default": []}


def time_to_quality(job: TrainingJob, metric: str, threshold: float, every: int) -> dict[str, Any]:
    """Train ``job`` until ``metric >= threshold`` at a validation (or the configured epochs end)."""
    import pytorch_lightning as pl

    from attnlab.cli.build import build_trainer

    class Clock(pl.Callback):
        start = val_start = val_seconds = 0.0
        reached: tuple[float, int] | None = None

        def __init__(self) -> None:
            self.values: list[tuple[int, float]] = []

        def on_train_start(self, trainer: Any, module: Any) -> None:
            self.start = time.perf_counter()

        def on_validation_start(self, trainer: Any, module: Any) -> None:
            self.val_start = time.perf_counter()

        def on_validation_end(self, trainer: Any, module: Any) -> None:
            self.val_seconds += time.perf_counter() - self.val_start
            self.values.append((trainer.global_step, value := float(trainer.callback_metrics.get(metric, math.nan))))
            if value >= threshold and self.reached is None:
                self.reached = (time.perf_counter() - self.start - self.val_seconds, trainer.global_step)
                trainer.should_stop = True

    clock, model = Clock(), job.build_task()
    with quiet_lightning():  # min_steps None: else should_stop waits for a whole epoch
        every_n = {"val_check_interval": every, "check_val_every_n_epoch": None, "min_steps": None}
        trainer = build_trainer(job.cfg, **TIMING_ONLY, **every_n, callbacks=[clock], default_root_dir=str(job.scratch))
        trainer.fit(model, datamodule=job.datamodule)
    seconds, steps = clock.reached or (math.nan, trainer.global_step)
    out = {"seconds": seconds, "steps": steps, "reached": clock.reached is not None, "curve": clock.values}
    run = {"precision": str(job.cfg.trainer.precision), "compile": bool(job.cfg.compile.enabled)}
    return out | run | {"validation_seconds": clock.val_seconds}


def _task_figures(task: str, runs: dict[str, list[dict]], metric: str, threshold: float, result: dict) -> None:
    goal = f"{metric} >= {threshold:g}"
    for v, rs in runs.items():
        label = f"{task} {v} ({rs[0]['precision']}{', compiled' if rs[0]['compile'] else ''})"
        if all(r["reached"] for r in rs):
            result["figures"] += [
                figure(f"{label}: training time to {goal}", [r["seconds"] for r in rs], "s"),
                figure(f"{label}: steps to {goal}", [r["steps"] for r in rs], "steps"),
            ]
        else:
            best = max((val for r in rs for _, val in r["curve"]), default=math.nan)
            result["notes"].append(f"{label}: {goal} not reached in the configured epochs (best {best:.4g})")
    pairs = [d["seconds"] / f["seconds"] for d, f in zip(runs["default"], runs["fp32"])]
    ratio = statistics.median(pairs) if all(math.isfinite(p) for p in pairs) else None
    if ratio is not None:
        result["figures"].append(figure(f"{task}: default / fp32 time to quality", pairs, "x"))
    result["targets"].append(target(f"{task}: default / fp32 time to {goal}", "<=", TARGET_RATIO, ratio, "x"))


def _measure(settings: BenchSettings, task: str, result: dict[str, Any]) -> None:
    metric, thresholds, every = GOALS[task]
    threshold, every_n = settings.pick(*thresholds), settings.pick(*every)
    base = ["trainer.max_epochs=1"] if settings.tiny else []

    def train(variant: str, i: int) -> dict[str, Any]:
        job = job_for(settings, task, f"quality_{task}_{variant}_{i}", base + VARIANTS[variant])
        return time_to_quality(job, metric, threshold, every_n)

    runs = interleave(settings.pick(2, 1, 1), VARIANTS, train, abba=True)
    _task_figures(task, runs, metric, threshold, result)
    overrides = (tiny_overrides(task, settings.workdir) if settings.tiny else []) + base
    details = {"metric": metric, "threshold": threshold, "validate_every": every_n, "runs": runs}
    result["details"][task] = details | {"overrides": overrides}


@timed("quality", TITLE)
def run(settings: BenchSettings, result: dict[str, Any]) -> None:
    """Both tasks, fp32 then the default (alternating order between repeats); the LR schedule is the default run's."""
    for task in GOALS:
        _measure(settings, task, result)
