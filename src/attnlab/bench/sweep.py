"""Section 7: a 2-job sweep, one job after the other vs two at once (``hydra/launcher=joblib``).

Both are ``python train.py -m experiment=translation attention=additive,dot ...`` subprocesses with
the same jobs (a fixed number of training steps, a short validation, no test): once with Hydra's
basic launcher, which runs the jobs one after the other in one process, each with every core, and
once with ``hydra/launcher=joblib hydra.launcher.n_jobs=2``, where ``train()`` gives each job
``cores / 2`` torch threads so the two do not oversubscribe the cores. Wall time of the whole
sweep, spawn to exit, start-up of the process(es) included.

Target (issue 4): the parallel sweep is not slower in total than the sequential one (ratio <= 1).
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from attnlab.bench.report import figure, section, target
from attnlab.bench.settings import BenchSettings

__all__ = ["TARGET_RATIO", "TITLE", "run"]

TITLE = "7. Parallel sweep (joblib vs one after the other)"
TARGET_RATIO = 1.0
ATTENTIONS = "additive,dot"


def _sweep_command(launcher: str, sweep_dir: Path, steps: int, overrides: list[str]) -> list[str]:
    cmd = [
        sys.executable, "train.py", "-m", "experiment=translation", f"attention={ATTENTIONS}",
        "trainer.max_epochs=1", f"trainer.limit_train_batches={steps}", "trainer.limit_val_batches=2",
        "test=false", "extras.print_config=false", "callbacks.rich_progress_bar=null",
        f"paths.log_dir={(sweep_dir.parent / 'logs').as_posix()}", f"hydra.sweep.dir={sweep_dir.as_posix()}",
        *overrides,
    ]
    if launcher == "joblib":
        cmd += ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"]
    return cmd


def _statuses(sweep_dir: Path) -> list[str]:
    return [json.loads(p.read_text()).get("status", "?") for p in sorted(sweep_dir.glob("*/metrics.json"))]


def run(settings: BenchSettings) -> dict[str, Any]:
    """Time the same 2-job sweep with both launchers, alternating; the ratio and its target."""
    from attnlab.bench.harness import tiny_overrides
    from attnlab.bench.startup import run_process
    from attnlab.project import project_root

    started = time.perf_counter()
    result = section("sweep", TITLE)
    repo = project_root()
    steps = settings.pick(full=150, quick=60, tiny=2)
    repeats = settings.pick(full=3, quick=1, tiny=1)
    overrides = tiny_overrides("translation", settings.workdir) if settings.tiny else []
    scratch = settings.scratch("sweep")
    times: dict[str, list[float]] = {"basic": [], "joblib": []}
    for i in range(repeats):
        for launcher in ("basic", "joblib"):  # alternating, so drifting load hits both alike
            sweep_dir = scratch / f"{launcher}_{i}"
            cmd = _sweep_command(launcher, sweep_dir, steps, overrides)
            seconds, done, _ = run_process(cmd, timeout=settings.pick(full=1800.0, quick=600.0, tiny=600.0), cwd=repo)
            statuses = _statuses(sweep_dir)
            if done is None or done.returncode != 0 or statuses != ["ok", "ok"]:
                tail = "" if done is None else " | ".join((done.stderr or done.stdout).strip().splitlines()[-3:])
                raise RuntimeError(f"{launcher} sweep failed (jobs {statuses}): {tail or 'timed out'}")
            times[launcher].append(seconds)
    basic, joblib = times["basic"], times["joblib"]
    result["figures"] += [
        figure("2 jobs one after the other (basic launcher)", basic, "s"),
        figure("2 jobs at once (joblib, n_jobs=2)", joblib, "s"),
        figure("joblib / one after the other, wall time", [j / b for j, b in zip(joblib, basic)], "x"),
    ]
    result["targets"].append(target("2-job sweep: joblib / one after the other", "<=", TARGET_RATIO,
                                    statistics.median(j / b for j, b in zip(joblib, basic)), "x"))
    result["notes"] += [
        f"Jobs: experiment=translation attention={ATTENTIONS}, {steps} training steps, 2 validation "
        "batches, no test; W&B offline as by default. Wall time of the whole `train.py -m` command, "
        "process start-up included.",
        f"Threads per job: {settings.num_threads()} one after the other; cores / 2 each with joblib "
        "(train() reads the launcher's n_jobs).",
    ]
    result["seconds"] = time.perf_counter() - started
    return result
