"""Section 7: a 2-job sweep, one job after the other vs two at once (``hydra/launcher=joblib``).

``train.py -m experiment=translation attention=additive,dot`` with a fixed number of steps, a short
validation and no test: once with Hydra's basic launcher (one job after the other, each with every
core) and once with ``hydra/launcher=joblib hydra.launcher.n_jobs=2`` (``train()`` gives each job
``cores / 2`` threads). Wall time of the whole command, alternating launchers between repeats.
Target: the parallel sweep is not slower than the sequential one (ratio <= 1).
"""

from __future__ import annotations

import statistics
import sys
import time
from typing import Any

from benchmarks.report import figure, section, target
from benchmarks.settings import BenchSettings

TITLE = "7. Parallel sweep (joblib vs one after the other)"
TARGET_RATIO = 1.0


def run(settings: BenchSettings) -> dict[str, Any]:
    """The same 2-job sweep with both launchers, alternating; the ratio and its target."""
    from attnlab.project import project_root
    from attnlab.runs.metrics_file import read_metrics_file, sweep_metrics_files
    from benchmarks.harness import device_overrides, tiny_overrides
    from benchmarks.startup import run_process

    started = time.perf_counter()
    result = section("sweep", TITLE)
    steps = settings.pick(150, 60, 2)
    overrides = (tiny_overrides("translation", settings.workdir) if settings.tiny else []) + \
        device_overrides(settings.device)
    times: dict[str, list[float]] = {"basic": [], "joblib": []}
    for i in range(settings.pick(3, 1, 1)):
        for launcher in times:  # alternating, so drifting load hits both alike
            sweep_dir = settings.scratch("sweep") / f"{launcher}_{i}"
            cmd = [sys.executable, "train.py", "-m", "experiment=translation", "attention=additive,dot",
                   "trainer.max_epochs=1", f"trainer.limit_train_batches={steps}", "trainer.limit_val_batches=2",
                   "test=false", "extras.print_config=false", "callbacks.rich_progress_bar=null",
                   f"paths.log_dir={(sweep_dir.parent / 'logs').as_posix()}", f"hydra.sweep.dir={sweep_dir.as_posix()}",
                   *overrides, *(["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"] if launcher == "joblib" else [])]
            seconds, done, _ = run_process(cmd, settings.pick(1800.0, 600.0, 600.0), project_root())
            statuses = [read_metrics_file(p).get("status") for p in sweep_metrics_files(sweep_dir)]
            if done is None or done.returncode != 0 or statuses != ["ok", "ok"]:
                tail = "timed out" if done is None else " | ".join((done.stderr or done.stdout).splitlines()[-3:])
                raise RuntimeError(f"{launcher} sweep failed (jobs {statuses}): {tail}")
            times[launcher].append(seconds)
    ratios = [j / b for j, b in zip(times["joblib"], times["basic"])]
    result["figures"] += [figure("2 jobs one after the other (basic launcher)", times["basic"], "s"),
                          figure("2 jobs at once (joblib, n_jobs=2)", times["joblib"], "s"),
                          figure("joblib / one after the other, wall time", ratios, "x")]
    result["targets"].append(target("2-job sweep: joblib / one after the other", "<=", TARGET_RATIO,
                                    statistics.median(ratios), "x"))
    result["notes"].append(f"Jobs: experiment=translation attention=additive,dot, {steps} training steps, 2 validation "
                           "batches, no test, W&B offline; wall time of the whole train.py -m, start-up included.")
    result["seconds"] = time.perf_counter() - started
    return result
