"""Section 7: ``train.py -m experiment=translation attention=additive,dot`` (fixed steps, short validation, no test)
with Hydra's basic launcher vs ``hydra/launcher=joblib`` (2 jobs at once), wall time, launchers alternating."""

from __future__ import annotations

import sys
from typing import Any

from benchmarks.harness import mode_overrides
from benchmarks.machine import failure, interleave, run_process
from benchmarks.report import compare, target, timed
from benchmarks.settings import BenchSettings

TITLE = "7. Parallel sweep (joblib vs one after the other)"
TARGET_RATIO = 1.0
LAUNCHERS = {"joblib": ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"], "basic": []}
JOB = "experiment=translation attention=additive,dot trainer.max_epochs=1 trainer.limit_val_batches=2 test=false"
JOB += " extras.print_config=false callbacks.rich_progress_bar=null"


@timed("sweep", TITLE)
def run(settings: BenchSettings, result: dict[str, Any]) -> None:
    """The same 2-job sweep with both launchers, alternating; the ratio and its target."""
    from attnlab.runs.metrics_file import read_metrics_file, sweep_metrics_files

    steps, overrides = settings.pick(150, 60, 2), mode_overrides(settings, "translation")

    def sweep(launcher: str, i: int) -> float:
        sweep_dir = settings.scratch("sweep") / f"{launcher}_{i}"
        paths = [f"paths.log_dir={(sweep_dir.parent / 'logs').as_posix()}", f"hydra.sweep.dir={sweep_dir.as_posix()}"]
        job = [*JOB.split(), f"trainer.limit_train_batches={steps}", *paths, *overrides, *LAUNCHERS[launcher]]
        seconds, done, _ = run_process([sys.executable, "train.py", "-m", *job], settings.pick(1800.0, 600.0, 600.0))
        statuses = [read_metrics_file(p).get("status") for p in sweep_metrics_files(sweep_dir)]
        if (error := failure(done)) or statuses != ["ok", "ok"]:
            raise RuntimeError(f"{launcher} sweep failed (jobs {statuses}): {error}")
        return seconds

    times = interleave(settings.pick(3, 1, 1), ("basic", "joblib"), sweep)
    names = ("2 jobs at once (joblib, n_jobs=2)", "2 jobs one after the other (basic launcher)")
    ratio = compare(result, (*names, "joblib / one after the other, wall time"), times["joblib"], times["basic"], "s")
    name = "2-job sweep: joblib / one after the other"
    result["targets"].append(target(name, "<=", TARGET_RATIO, ratio, "x"))
    result["notes"].append(f"{steps} training steps per job; wall time of the whole train.py -m, start-up included.")
