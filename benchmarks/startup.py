"""Section 6: start-up -- subprocess wall times (the repository as working directory, W&B offline) of
``python -c pass``, ``import torch, pytorch_lightning``, ``train.py --help`` / ``--cfg job``, and per
task ``train.py experiment=<task> debug=fdr`` up to its first training batch (:class:`FirstStepTimer`
added on the command line ends the process there). Targets: ``--help`` <= 1 s; first step <= 1.5 x
the time to import torch + Lightning."""

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

try:  # train.py imports the callback; the rest of this module needs no Lightning
    from pytorch_lightning import Callback
except ImportError:  # pragma: no cover
    Callback = object  # type: ignore[misc,assignment]

from benchmarks.report import figure, section, target
from benchmarks.settings import BenchSettings

TITLE = "6. Start-up"
TARGET_HELP_SECONDS, TARGET_FIRST_STEP_RATIO = 1.0, 1.5


class FirstStepTimer(Callback):
    """Write ``{"first_step_start", "first_step_end", "pid"}`` (``time.time()``) to ``path`` after the
    first training batch, then end the process (``os._exit(0)``) unless ``exit_after`` is False."""

    def __init__(self, path: str, exit_after: bool = True) -> None:
        super().__init__()
        self.path, self.exit_after, self.start = str(path), bool(exit_after), None

    def on_train_batch_start(self, trainer: Any, pl_module: Any, batch: Any, batch_idx: int) -> None:
        self.start = self.start or time.time()

    def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        if self.start is None or os.path.exists(self.path):
            return
        Path(f"{self.path}.tmp").write_text(json.dumps({"first_step_start": self.start,
                                                        "first_step_end": time.time(), "pid": os.getpid()}))
        os.replace(f"{self.path}.tmp", self.path)
        if self.exit_after:
            sys.stdout.flush()
            os._exit(0)


def run_process(cmd: Sequence[str], timeout: float, cwd: Path) -> tuple[float, Any, float]:
    """Run ``cmd`` in its own process group (killed afterwards, so nothing it started outlives it):
    ``(seconds, completed process or None on timeout, spawn time)``."""
    from attnlab.project import project_root

    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true", "HF_HUB_OFFLINE": "1",
           "PROJECT_ROOT": str(project_root()), "PYTHONUNBUFFERED": "1"}
    spawned, start = time.time(), time.perf_counter()
    proc = subprocess.Popen(list(cmd), cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
        done: subprocess.CompletedProcess | None = subprocess.CompletedProcess(cmd, proc.returncode, out, err)
    except subprocess.TimeoutExpired:
        done = None
    seconds = time.perf_counter() - start
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    proc.wait()
    return seconds, done, spawned


def _tail(done: subprocess.CompletedProcess | None) -> str:
    return "timed out" if done is None else " | ".join((done.stderr or done.stdout).strip().splitlines()[-3:])


def time_command(cmd: Sequence[str], repeats: int, cwd: Path, timeout: float = 120.0) -> list[float]:
    """Wall seconds of ``repeats`` runs of ``cmd`` (each must exit 0)."""
    samples = []
    for _ in range(repeats):
        seconds, done, _ = run_process(cmd, timeout, cwd)
        if done is None or done.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} {'timed out' if done is None else f'exited {done.returncode}'}: "
                               f"{_tail(done)}")
        samples.append(seconds)
    return samples


def first_step_seconds(task: str, extra: Sequence[str], scratch: Path, cwd: Path, timeout: float) -> float:
    """Seconds from spawning ``train.py experiment=<task> debug=fdr`` to its first training batch."""
    marker = scratch / f"first_step_{task}_{time.time_ns()}.json"
    cmd = [sys.executable, "train.py", f"experiment={task}", "debug=fdr",
           "+callbacks.first_step._target_=benchmarks.startup.FirstStepTimer",
           f"+callbacks.first_step.path={marker.as_posix()}", f"paths.log_dir={(scratch / 'logs').as_posix()}", *extra]
    _, done, spawned = run_process(cmd, timeout, cwd)
    if not marker.is_file():
        raise RuntimeError(f"train.py experiment={task} ended before its first step: {_tail(done)}")
    return json.loads(marker.read_text())["first_step_start"] - spawned


def run(settings: BenchSettings) -> dict[str, Any]:
    """Every start-up figure and the two targets."""
    from attnlab.cli.build import build_datamodule
    from attnlab.project import project_root
    from benchmarks.harness import TASK_EXPERIMENTS, compose_train_config, device_overrides, quiet_lightning
    from benchmarks.harness import tiny_overrides

    started = time.perf_counter()
    result = section("startup", TITLE)
    repo, py, repeats = project_root(), sys.executable, settings.pick(5, 3, 1)
    imports = "import torch, pytorch_lightning"
    timings = {name: time_command([py, *args], settings.pick(5, 2, 1) if "torch" in name else repeats, repo)
               for name, args in (("python -c pass", ["-c", "pass"]), (f"python -c '{imports}'", ["-c", imports]),
                                  ("train.py --help", ["train.py", "--help"]),
                                  ("train.py --cfg job", ["train.py", "--cfg", "job"]))}
    result["figures"] += [figure(name, samples, "s") for name, samples in timings.items()]
    result["targets"].append(target("train.py --help", "<=", TARGET_HELP_SECONDS,
                                    statistics.median(timings["train.py --help"]), "s"))
    import_s = statistics.median(timings[f"python -c '{imports}'"])
    scratch = settings.scratch("startup")
    for task in ("translation", "detection"):
        overrides = (tiny_overrides(task, settings.workdir) if settings.tiny else []) + \
            device_overrides(settings.device, task)
        with quiet_lightning():  # data generated beforehand: not part of start-up
            build_datamodule(compose_train_config([TASK_EXPERIMENTS[task], *overrides], scratch), stage=None)
        overrides.append(f"torch_threads={settings.num_threads()}")  # as the rest of the benchmark
        starts = [first_step_seconds(task, overrides, scratch, repo, settings.pick(600.0, 300.0, 300.0))
                  for _ in range(settings.pick(3, 1, 1))]
        ratio = statistics.median(starts) / import_s
        result["figures"] += [figure(f"{task}: process start -> first training step", starts, "s"),
                              figure(f"{task}: first step / import torch+lightning", ratio, "x")]
        result["targets"].append(target(f"{task}: first step / import torch+lightning", "<=", TARGET_FIRST_STEP_RATIO,
                                        ratio, "x"))
    result["notes"].append(
        "First step: spawn to the start of the first training batch of train.py experiment=<task> debug=fdr (no "
        "sanity validation; config tree printed, W&B offline logger started as in a run). Data generated beforehand.")
    result["seconds"] = time.perf_counter() - started
    return result
