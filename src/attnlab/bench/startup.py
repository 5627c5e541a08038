"""Section 6: start-up — ``train.py --help``, ``--cfg job``, and process start -> first training step.

Wall times of subprocesses started from the benchmark (``sys.executable``, the repository as
working directory, ``WANDB_MODE=offline``):

* ``python -c pass`` (the interpreter alone), ``python -c "import torch, pytorch_lightning"``;
* ``python train.py --help`` and ``python train.py --cfg job``;
* per task, ``python train.py experiment=<task> debug=fdr`` with the :class:`FirstStepTimer`
  callback added on the command line (``+callbacks.first_step._target_=...``): it writes the
  wall-clock time at which the first training batch starts and ends to a JSON file and ends the
  process right there (``os._exit``), so nothing after the first step is paid for. Time to first
  step = that timestamp - the time just before the process was spawned. ``debug=fdr`` means
  ``fast_dev_run`` (no sanity validation before the first step) plus the debug defaults (config
  tree printed, anomaly detection on); the W&B logger (offline) is set up as in a normal run.

Targets: ``--help`` <= 1 s; first step <= 1.5 x the time to import torch + Lightning.
"""

from __future__ import annotations

import json
import os
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

try:  # the callback must be importable by train.py; the rest of this module does not need Lightning
    import pytorch_lightning as pl

    _Callback: Any = pl.Callback
except ImportError:  # pragma: no cover
    _Callback = object

from attnlab.bench.report import figure, section, target
from attnlab.bench.settings import BenchSettings

__all__ = [
    "FirstStepTimer", "TARGET_FIRST_STEP_RATIO", "TARGET_HELP_SECONDS", "TITLE", "run", "run_process", "time_command",
]

TITLE = "6. Start-up"
TARGET_HELP_SECONDS = 1.0
TARGET_FIRST_STEP_RATIO = 1.5


class FirstStepTimer(_Callback):
    """Record when the first training batch starts and ends (``time.time()``), then optionally exit.

    Args:
        path: JSON file to write ``{"first_step_start": t0, "first_step_end": t1, "pid": ...}`` to
            (written atomically, after the first step).
        exit_after: end the process right after writing (``os._exit(0)``: no teardown, no test).
    """

    def __init__(self, path: str, exit_after: bool = True) -> None:
        super().__init__()
        self.path = str(path)
        self.exit_after = bool(exit_after)
        self.start: float | None = None

    def on_train_batch_start(self, trainer: Any, pl_module: Any, batch: Any, batch_idx: int) -> None:
        if self.start is None:
            self.start = time.time()

    def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        if self.start is None or os.path.exists(self.path):
            return
        record = {"first_step_start": self.start, "first_step_end": time.time(), "pid": os.getpid()}
        tmp = f"{self.path}.tmp"
        with open(tmp, "w") as f:
            json.dump(record, f)
        os.replace(tmp, self.path)
        if self.exit_after:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(0)


def _env() -> dict[str, str]:
    from attnlab.project import project_root

    env = dict(os.environ)
    env.update({"WANDB_MODE": "offline", "WANDB_SILENT": "true", "HF_HUB_OFFLINE": "1",
                "PROJECT_ROOT": str(project_root()), "PYTHONUNBUFFERED": "1"})
    return env


def run_process(cmd: Sequence[str], timeout: float, cwd: Path) -> tuple[float, subprocess.CompletedProcess[str] | None, float]:
    """Run ``cmd`` in its own process group; (seconds, completed process or None on timeout, spawn time).

    The group is killed afterwards so that nothing it started (e.g. a W&B service) outlives it.
    """
    spawned = time.time()
    start = time.perf_counter()
    proc = subprocess.Popen(list(cmd), cwd=cwd, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
        seconds = time.perf_counter() - start
        done: subprocess.CompletedProcess[str] | None = subprocess.CompletedProcess(cmd, proc.returncode, out, err)
    except subprocess.TimeoutExpired:
        seconds, done = time.perf_counter() - start, None
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        proc.wait()
    return seconds, done, spawned


def time_command(cmd: Sequence[str], repeats: int, cwd: Path, timeout: float = 120.0) -> list[float]:
    """Wall seconds of ``repeats`` runs of ``cmd`` (each must exit 0)."""
    samples = []
    for _ in range(repeats):
        seconds, done, _ = run_process(cmd, timeout, cwd)
        if done is None:
            raise RuntimeError(f"{' '.join(cmd)} timed out after {timeout:.0f} s")
        if done.returncode != 0:
            tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
            raise RuntimeError(f"{' '.join(cmd)} exited {done.returncode}: {' | '.join(tail)}")
        samples.append(seconds)
    return samples


def first_step_seconds(task: str, extra: Sequence[str], scratch: Path, cwd: Path, timeout: float) -> dict[str, float]:
    """Spawn ``train.py experiment=<task> debug=fdr`` with the timer; seconds from spawn to the first step."""
    marker = scratch / f"first_step_{task}_{time.time_ns()}.json"
    cmd = [
        sys.executable, "train.py", f"experiment={task}", "debug=fdr",
        "+callbacks.first_step._target_=attnlab.bench.startup.FirstStepTimer",
        f"+callbacks.first_step.path={marker.as_posix()}", "+callbacks.first_step.exit_after=true",
        f"paths.log_dir={(scratch / 'logs').as_posix()}", *extra,
    ]
    seconds, done, spawned = run_process(cmd, timeout, cwd)
    if not marker.is_file():
        why = "timed out" if done is None else f"exited {done.returncode}"
        tail = "" if done is None else " | ".join((done.stderr or done.stdout).strip().splitlines()[-3:])
        raise RuntimeError(f"train.py experiment={task} {why} before its first step: {tail}")
    record = json.loads(marker.read_text())
    return {"to_first_step_start": record["first_step_start"] - spawned,
            "to_first_step_end": record["first_step_end"] - spawned,
            "process_seconds": seconds}


def _prepare_data(task: str, overrides: Sequence[str], scratch: Path) -> None:
    """Generate/prepare the task's data beforehand so that the timed start-up does not include it."""
    from attnlab.bench.harness import TASK_EXPERIMENTS, compose_train_config, quiet_lightning
    from attnlab.utils.instantiate import instantiate_component

    cfg = compose_train_config([TASK_EXPERIMENTS[task], *overrides], scratch)
    with quiet_lightning():
        instantiate_component(cfg.data).prepare_data()


def run(settings: BenchSettings) -> dict[str, Any]:
    """Every start-up figure and the two targets."""
    from attnlab.bench.harness import tiny_overrides
    from attnlab.project import project_root

    started = time.perf_counter()
    result = section("startup", TITLE)
    repo = project_root()
    py = sys.executable
    repeats = settings.pick(full=5, quick=3, tiny=1)
    heavy_repeats = settings.pick(full=5, quick=2, tiny=1)
    timings = {
        "python -c pass": time_command([py, "-c", "pass"], repeats, repo),
        "python -c 'import torch, pytorch_lightning'": time_command(
            [py, "-c", "import torch, pytorch_lightning"], heavy_repeats, repo),
        "train.py --help": time_command([py, "train.py", "--help"], repeats, repo),
        "train.py --cfg job": time_command([py, "train.py", "--cfg", "job"], repeats, repo),
    }
    for name, samples in timings.items():
        result["figures"].append(figure(name, samples, "s"))
    import_s = statistics.median(timings["python -c 'import torch, pytorch_lightning'"])
    result["targets"].append(target("train.py --help", "<=", TARGET_HELP_SECONDS,
                                    statistics.median(timings["train.py --help"]), "s"))
    scratch = settings.scratch("startup")
    first_repeats = settings.pick(full=3, quick=1, tiny=1)
    timeout = settings.pick(full=600.0, quick=300.0, tiny=300.0)
    variants: list[tuple[str, list[str]]] = [("", [])]
    if settings.mode == "full":
        variants.append((", logger=csv", ["logger=csv"]))
    for task in ("translation", "detection"):
        overrides = tiny_overrides(task, settings.workdir) if settings.tiny else []
        _prepare_data(task, overrides, scratch)
        # The same torch threads as the rest of the benchmark (train.py would take every core).
        overrides = [*overrides, f"torch_threads={settings.num_threads()}"]
        for label, extra in variants:
            runs = [first_step_seconds(task, [*overrides, *extra], scratch, repo, timeout)
                    for _ in range(first_repeats)]
            starts = [r["to_first_step_start"] for r in runs]
            result["figures"].append(figure(f"{task}: process start -> first training step{label}", starts, "s"))
            result["figures"].append(figure(f"{task}: process start -> end of first step{label}",
                                            [r["to_first_step_end"] for r in runs], "s"))
            ratio = statistics.median(starts) / import_s
            result["figures"].append(figure(f"{task}: first step / import torch+lightning{label}", ratio, "x"))
            if not label:
                result["targets"].append(target(f"{task}: first step / import torch+lightning", "<=",
                                                TARGET_FIRST_STEP_RATIO, ratio, "x"))
    result["notes"] += [
        "Subprocess wall times (spawn to exit), WANDB_MODE=offline, cwd = the repository.",
        "First step: train.py experiment=<task> debug=fdr with the FirstStepTimer callback added on the command "
        "line; time from spawn to the start of the first training batch (and to its end). debug=fdr skips the "
        "sanity validation; the config tree is printed and the W&B logger (offline) starts as in a normal run. "
        "Data is generated beforehand (not timed); the corpus/tokenizers of translation are built in the run.",
    ]
    if settings.tiny:
        result["notes"].append("tiny mode: tiny data/model overrides on the command line.")
    result["seconds"] = time.perf_counter() - started
    return result
