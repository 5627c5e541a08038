"""Section 7: ``train.py -m experiment=translation attention=additive,dot`` (fixed steps, short validation, no test)
with Hydra's basic launcher vs ``hydra/launcher=joblib`` (2 jobs at once), wall time, launchers alternating."""

from __future__ import annotations

import statistics
import sys
from typing import Any

from benchmarks.child import failure, run_process
from benchmarks.harness import mode_overrides
from benchmarks.machine import interleave
from benchmarks.report import figure, target, timed
from benchmarks.settings import BenchSettings

TITLE = "7. Parallel sweep (joblib vs one after the other)"
TARGET_RATIO = 1.0
LAUNCHERS = {"basic": [], "joblib": ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"]}


@timed("sweep", TITLE)
def run(settings: BenchSettings, result: dict[str, Any]) -> None:
    """The same 2-job sweep with both launchers, alternating; the ratio and its target."""
    from attnlab.runs.metrics_file import read_metrics_file, sweep_metrics_files

    steps, overrides = settings.pick(150, 60, 2), mode_overrides(settings, "translation")
    job = [
        "experiment=translation",
        "attention=additive,dot",
        "trainer.max_epochs=1",
        f"trainer.limit_train_batches={steps}",
    ]
    job += [
        "trainer.limit_val_batches=2",
        "test=false",
        "extras.print_config=false",
        "callbacks.rich_progress_bar=null",
    ]

    def sweep(launcher: str, i: int) -> float:
        sweep_dir = settings.scratch("sweep") / f"{launcher}_{i}"
        paths = [f"paths.log_dir={(sweep_dir.parent / 'logs').as_posix()}", f"hydra.sweep.dir={sweep_dir.as_posix()}"]
        cmd = [sys.executable, "train.py", "-m", *job, *paths, *overrides, *LAUNCHERS[launcher]]
        seconds, done, _ = run_process(cmd, settings.pick(1800.0, 600.0, 600.0))
        statuses = [read_metrics_file(p).get("status") for p in sweep_metrics_files(sweep_dir)]
        if (error := failure(done)) or statuses != ["ok", "ok"]:
            raise RuntimeError(f"{launcher} sweep failed (jobs {statuses}): {error}")
        return seconds

    times = interleave(settings.pick(3, 1, 1), LAUNCHERS, sweep)
    ratios = [j / b for j, b in zip(times["joblib"], times["basic"])]
    result["figures"] += [
        figure("2 jobs one after the other (basic launcher)", times["basic"], "s"),
        figure("2 jobs at once (joblib, n_jobs=2)", times["joblib"], "s"),
        figure("joblib / one after the other, wall time", ratios, "x"),
    ]
    name = "2-job sweep: joblib / one after the other"
    result["targets"].append(target(name, "<=", TARGET_RATIO, statistics.median(ratios), "x"))
    result["notes"].append(
        f"Jobs: experiment=translation attention=additive,dot, {steps} training steps, 2 validation "
        "batches, no test, W&B offline; wall time of the whole train.py -m, start-up included."
    )
