"""The one way a benchmark runs something in a fresh process: ``train.py`` (start-up, sweep) or a function of
``benchmarks`` (data set-ups, attention cases), so that its time and memory are its own."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any


def child_env(root: Path | None = None, src: Path | None = None) -> dict[str, str]:
    """W&B offline; ``benchmarks/`` (not installed) importable from this repository; ``PROJECT_ROOT`` = ``root``
    and ``src`` ahead on the path when timing another checkout's attnlab."""
    from attnlab.project import project_root

    paths = [str(p) for p in (src, project_root()) if p] + [os.environ.get("PYTHONPATH", "")]
    return {
        **os.environ,
        "WANDB_MODE": "offline",
        "WANDB_SILENT": "true",
        "HF_HUB_OFFLINE": "1",
        "PYTHONUNBUFFERED": "1",
        "PROJECT_ROOT": str(root or project_root()),
        "PYTHONPATH": os.pathsep.join(p for p in paths if p),
    }


def run_process(
    cmd: Sequence[str], timeout: float, cwd: Path | None = None, env: dict[str, str] | None = None
) -> tuple[float, subprocess.CompletedProcess | None, float]:
    """Run ``cmd`` in its own process group (killed afterwards, so nothing it started outlives it):
    ``(seconds, completed process or None on timeout, spawn time)``."""
    from attnlab.project import project_root

    spawned, start = time.time(), time.perf_counter()
    proc = subprocess.Popen(
        list(cmd),
        cwd=cwd or project_root(),
        env=env or child_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=timeout)
        done: subprocess.CompletedProcess | None = subprocess.CompletedProcess(cmd, proc.returncode, out, err)
    except subprocess.TimeoutExpired:
        done = None
    seconds = time.perf_counter() - start
    with contextlib.suppress(ProcessLookupError, PermissionError):  # the group may be gone already
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    return seconds, done, spawned


def failure(done: subprocess.CompletedProcess | None) -> str | None:
    """Why a process failed (its exit status and last lines of output), or None when it exited 0."""
    if done is not None and done.returncode == 0:
        return None
    lines = [] if done is None else [ln for ln in (done.stderr or done.stdout).splitlines() if ln.strip()]
    return " | ".join(["timed out" if done is None else f"exited {done.returncode}", *lines[-3:]])


def run_child(target: str, args: dict[str, Any], timeout: float, env: dict[str, str] | None = None) -> dict[str, Any]:
    """``module:function`` called on ``args`` in a fresh python: its JSON result and ``process_s`` (spawn to exit)."""
    module, name = target.split(":")
    code = f"import json, sys\nfrom {module} import {name} as f\nprint(json.dumps(f(json.loads(sys.argv[1]))))"
    seconds, done, _ = run_process([sys.executable, "-c", code, json.dumps(args)], timeout, env=env)
    if error := failure(done):
        raise RuntimeError(f"{target}: {error}")
    assert done is not None
    return {**json.loads(done.stdout.strip().splitlines()[-1]), "process_s": seconds}
