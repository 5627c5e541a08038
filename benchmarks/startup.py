"""Section 6: wall times of fresh processes: ``python -c pass``, ``import torch, pytorch_lightning``, ``train.py
--help`` / ``--cfg job``, and ``train.py experiment=<task> debug=fdr`` up to its first training batch
(:class:`FirstStepTimer`, added on the command line, ends the process there)."""

from __future__ import annotations

import json
import os
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pytorch_lightning import Callback

from benchmarks.machine import failure, run_process
from benchmarks.report import figure, target, timed
from benchmarks.settings import BenchSettings

TITLE = "6. Start-up"
TARGET_HELP_SECONDS, TARGET_FIRST_STEP_RATIO = 1.0, 1.5
IMPORTS = "import torch, pytorch_lightning"
COMMANDS = {"python -c pass": ["-c", "pass"], f"python -c '{IMPORTS}'": ["-c", IMPORTS]}
COMMANDS |= {"train.py --help": ["train.py", "--help"], "train.py --cfg job": ["train.py", "--cfg", "job"]}


class FirstStepTimer(Callback):
    """Write ``{"first_step_start", "first_step_end", "pid"}`` (``time.time()``) to ``path`` after the
    first training batch, then end the process (``os._exit(0)``) unless ``exit_after`` is False."""

    def __init__(self, path: str, exit_after: bool = True) -> None:
        super().__init__()
        self.path, self.exit_after = str(path), bool(exit_after)
        self.start: float | None = None

    def on_train_batch_start(self, trainer: Any, pl_module: Any, batch: Any, batch_idx: int) -> None:
        self.start = self.start or time.time()

    def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        if self.start is None or os.path.exists(self.path):
            return
        record = {"first_step_start": self.start, "first_step_end": time.time(), "pid": os.getpid()}
        Path(f"{self.path}.tmp").write_text(json.dumps(record))
        os.replace(f"{self.path}.tmp", self.path)
        if self.exit_after:
            sys.stdout.flush()
            os._exit(0)


def time_command(cmd: Sequence[str], repeats: int, cwd: Path, timeout: float = 120.0) -> list[float]:
    """Wall seconds of ``repeats`` runs of ``cmd`` (each must exit 0)."""
    samples = []
    for _ in range(repeats):
        seconds, done, _ = run_process(cmd, timeout, cwd)
        if error := failure(done):
            raise RuntimeError(f"{' '.join(cmd)} {error}")
        samples.append(seconds)
    return samples


def first_step_seconds(task: str, extra: Sequence[str], scratch: Path, timeout: float) -> float:
    """Seconds from spawning ``train.py experiment=<task> debug=fdr`` to its first training batch."""
    marker = scratch / f"first_step_{task}_{time.time_ns()}.json"
    timer = ["+callbacks.first_step._target_=benchmarks.startup.FirstStepTimer", f"+callbacks.first_step.path={marker}"]
    logs = f"paths.log_dir={(scratch / 'logs').as_posix()}"
    _, done, spawned = run_process(
        [sys.executable, "train.py", f"experiment={task}", "debug=fdr", *timer, logs, *extra], timeout
    )
    if not marker.is_file():
        raise RuntimeError(f"train.py experiment={task} ended before its first step: {failure(done)}")
    return json.loads(marker.read_text())["first_step_start"] - spawned


@timed("startup", TITLE)
def run(settings: BenchSettings, result: dict[str, Any]) -> None:
    """Every start-up figure and the two targets."""
    from attnlab.cli.build import build_datamodule
    from attnlab.project import project_root
    from benchmarks.harness import compose_train_config, mode_overrides, quiet_lightning

    timings = {
        name: time_command([sys.executable, *args], settings.pick(5, 2 if "torch" in name else 3, 1), project_root())
        for name, args in COMMANDS.items()
    }
    result["figures"] += [figure(name, samples, "s") for name, samples in timings.items()]
    help_s = statistics.median(timings["train.py --help"])
    result["targets"].append(target("train.py --help", "<=", TARGET_HELP_SECONDS, help_s, "s"))
    import_s, scratch = statistics.median(timings[f"python -c '{IMPORTS}'"]), settings.scratch("startup")
    for task in ("translation", "detection"):
        overrides = mode_overrides(settings, task)
        with quiet_lightning():  # data generated beforehand: not part of start-up
            build_datamodule(compose_train_config([f"experiment={task}", *overrides], scratch), stage=None)
        overrides.append(f"torch_threads={settings.num_threads()}")  # as the rest of the benchmark
        timeout = settings.pick(600.0, 300.0, 300.0)
        starts = [first_step_seconds(task, overrides, scratch, timeout) for _ in range(settings.pick(3, 1, 1))]
        ratio, name = statistics.median(starts) / import_s, f"{task}: first step / import torch+lightning"
        result["figures"] += [
            figure(f"{task}: process start -> first training step", starts, "s"),
            figure(name, ratio, "x"),
        ]
        result["targets"].append(target(name, "<=", TARGET_FIRST_STEP_RATIO, ratio, "x"))
