"""The machine a benchmark ran on, its matmul peaks, and the timing, memory and repeat helpers."""

from __future__ import annotations

import os
import platform
import sys
import time
from collections.abc import Callable, Iterable
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
    info: dict[str, Any] = {
        "hostname": platform.node(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cores": os.cpu_count(),
        "usable_cores": len(os.sched_getaffinity(0)),
        "cpu_model": model,
        "cpu_bf16": cpu_bf16_support(),
        "memory_bytes": os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"),
        "torch": torch.__version__,
        "lightning": pl.__version__,
        "torch_threads": torch.get_num_threads(),
        "device": device,
        "device_name": "CPU",
        "cuda_available": torch.cuda.is_available(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "executable": sys.executable,
    }
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


def interleave(
    repeats: int, names: Iterable[str], measure: Callable[[str, int], T], abba: bool = False
) -> dict[str, list[T]]:
    """``repeats`` rounds of ``measure(name, round)`` for each name in order -- reversed every other round with
    ``abba`` -- so that a drifting load hits all of them alike. Results per name, in round order."""
    order = list(names)
    out: dict[str, list[T]] = {name: [] for name in order}
    for i in range(repeats):
        for name in order[:: -1 if abba and i % 2 else 1]:
            out[name].append(measure(name, i))
    return out


def memory(field: str) -> int:
    """A memory figure of this process from ``/proc/self/status`` in bytes: ``VmRSS`` now, ``VmHWM`` its peak
    (unlike ``ru_maxrss``, which a child inherits from its parent across exec)."""
    with open("/proc/self/status") as f:
        return next((int(line.split()[1]) * 1024 for line in f if line.startswith(field + ":")), 0)


def peak_matmul_flops(
    device: str = "cpu", dtype: str = "float32", n: int = 2048, repeats: int = 5, warmup: int = 1
) -> list[float]:
    """Dense ``n x n @ n x n`` matmul FLOP/s (``2 n^3 / s``), one sample per repeat. ``float32`` is
    true fp32 (TF32 stays off); ``bfloat16`` is the peak bf16-mixed training is compared to."""
    import torch

    gen = torch.Generator().manual_seed(0)
    a, b = (torch.randn(n, n, generator=gen).to(device=device, dtype=getattr(torch, dtype)) for _ in range(2))
    inner = 1 if device == "cpu" else 10  # enough GPU work per sample that launch/timer noise does not count
    seconds = time_repeats(lambda: [torch.mm(a, b) for _ in range(inner)], repeats, warmup, device)
    return [2.0 * n**3 * inner / s for s in seconds]
