"""The machine a benchmark ran on, timing, memory and repeat helpers, and fresh processes (``train.py`` or a
function of ``benchmarks``) whose time and memory are their own."""

from __future__ import annotations

import contextlib
import json
import os
import platform
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")


def resolve_device(device: str) -> str:
    """``cuda`` only when torch sees a GPU; otherwise raise (a benchmark must not silently fall back)."""
    import torch

    if device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("--device cuda was asked for but torch.cuda.is_available() is False on this machine")
    return device


def machine_info(device: str = "cpu") -> dict[str, Any]:
    """Cores, CPU model and its fast bf16 path, memory, versions, the device, the load right now."""
    import pytorch_lightning as pl
    import torch

    from attnlab.cli.precision import cpu_bf16_support

    cpuinfo = Path("/proc/cpuinfo").read_text().splitlines() if os.path.exists("/proc/cpuinfo") else []
    model = next((ln.split(":", 1)[1].strip() for ln in cpuinfo if ln.startswith("model name")), platform.machine())
    info: dict[str, Any] = {"hostname": platform.node(), "platform": platform.platform(), "cpu_model": model}
    info |= {"python": platform.python_version(), "torch": torch.__version__, "lightning": pl.__version__}
    info |= {"cores": os.cpu_count(), "usable_cores": len(os.sched_getaffinity(0)), "cpu_bf16": cpu_bf16_support()}
    info |= {"memory_bytes": os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"), "executable": sys.executable}
    info |= {"torch_threads": torch.get_num_threads(), "device": device, "device_name": "CPU"}
    info |= {"cuda_available": torch.cuda.is_available(), "load_average": [round(x, 2) for x in os.getloadavg()]}
    info["time"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    if device == "cuda":
        props = torch.cuda.get_device_properties(0)
        info.update(device_name=props.name, cuda=torch.version.cuda, gpu_memory_bytes=int(props.total_memory))
        info["gpu_capability"] = f"{props.major}.{props.minor}"
    return info


def synchronize(device: Any) -> None:
    """Wait for queued GPU work (a no-op on CPU), so a timestamp covers the work before it."""
    import torch

    if str(device).startswith("cuda") and torch.cuda.is_available():
        torch.cuda.synchronize()


def time_repeats(fn: Callable[[], Any], repeats: int, warmup: int = 1, device: Any = "cpu") -> list[float]:
    """Seconds per call of ``fn`` for ``repeats`` calls after ``warmup`` untimed ones."""
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(repeats):
        synchronize(device)
        start = time.perf_counter()
        fn()
        synchronize(device)
        samples.append(time.perf_counter() - start)
    return samples


def interleave(repeats: int, names: Iterable[str], measure: Callable[[str, int], T], abba: bool = False) -> dict:
    """``repeats`` rounds of ``measure(name, round)`` per name (reversed every other round with ``abba``), so a
    drifting load hits all alike: ``{name: [result per round]}``."""
    order = list(names)
    out: dict[str, list[T]] = {name: [] for name in order}
    for i in range(repeats):
        for name in order[:: -1 if abba and i % 2 else 1]:
            out[name].append(measure(name, i))
    return out


def memory(field: str) -> int:
    """``/proc/self/status`` ``field`` in bytes: ``VmRSS`` now, ``VmHWM`` the peak (not inherited across exec)."""
    with open("/proc/self/status") as f:
        return next((int(line.split()[1]) * 1024 for line in f if line.startswith(field + ":")), 0)


def peak_matmul_flops(device: str = "cpu", dtype: str = "float32", n: int = 2048, repeats: int = 5) -> list[float]:
    """Dense ``n x n`` matmul FLOP/s (``2 n^3 / s``) per repeat; ``float32`` is true fp32 (TF32 off)."""
    import torch

    gen = torch.Generator().manual_seed(0)
    a, b = (torch.randn(n, n, generator=gen).to(device=device, dtype=getattr(torch, dtype)) for _ in range(2))
    inner = 1 if device == "cpu" else 10  # enough GPU work per sample that launch/timer noise does not count
    seconds = time_repeats(lambda: [torch.mm(a, b) for _ in range(inner)], repeats, 1, device)
    return [2.0 * n**3 * inner / s for s in seconds]


def child_env(root: Path | None = None, src: Path | None = None) -> dict[str, str]:
    """W&B offline, ``benchmarks/`` importable; ``PROJECT_ROOT`` = ``root`` and ``src`` first on the path to time
    another checkout's attnlab."""
    from attnlab.project import project_root

    paths = [str(p) for p in (src, project_root(), os.environ.get("PYTHONPATH")) if p]
    env = {"WANDB_MODE": "offline", "WANDB_SILENT": "true", "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
    return {**os.environ, **env, "PROJECT_ROOT": str(root or project_root()), "PYTHONPATH": os.pathsep.join(paths)}


def run_process(
    cmd: Sequence[str], timeout: float, cwd: Path | None = None, env: dict[str, str] | None = None
) -> tuple[float, subprocess.CompletedProcess | None, float]:
    """``cmd`` in its own process group, killed afterwards: ``(seconds, process or None on timeout, spawn time)``."""
    from attnlab.project import project_root

    spawned, start = time.time(), time.perf_counter()
    pipes = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE, "text": True, "start_new_session": True}
    proc = subprocess.Popen(list(cmd), cwd=cwd or project_root(), env=env or child_env(), **pipes)
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
    """Why a process failed (exit status, last lines of output), or None when it exited 0."""
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
