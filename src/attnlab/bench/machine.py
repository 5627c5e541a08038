"""The machine a benchmark ran on, and its measured dense matmul peak (FLOP/s)."""

from __future__ import annotations

import os
import platform
import sys
import time
from typing import Any

__all__ = ["machine_info", "peak_matmul_flops", "resolve_device"]


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def resolve_device(device: str) -> str:
    """``cuda`` only when torch sees a GPU; otherwise raise (a benchmark must not silently fall back)."""
    import torch

    if device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("--device cuda was asked for but torch.cuda.is_available() is False on this machine")
    return device


def machine_info(device: str = "cpu") -> dict[str, Any]:
    """Cores, CPU model, memory, versions, the device and the load at the time of the call.

    The load average matters on shared machines: figures taken under load are slower, which is
    why the benchmark reports ratios measured within one run next to absolute figures.
    """
    import pytorch_lightning as pl
    import torch

    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        usable = os.cpu_count() or 1
    mem_total = None
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal"):
                    mem_total = int(line.split()[1]) * 1024
                    break
    except OSError:
        pass
    info: dict[str, Any] = {
        "hostname": platform.node(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cores": os.cpu_count(),
        "usable_cores": usable,
        "cpu_model": _cpu_model(),
        "memory_bytes": mem_total,
        "torch": torch.__version__,
        "lightning": pl.__version__,
        "torch_threads": torch.get_num_threads(),
        "device": device,
        "device_name": "CPU",
        "cuda_available": torch.cuda.is_available(),
        "load_average": [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None,
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "executable": sys.executable,
    }
    if device == "cuda" and torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        info.update(
            device_name=props.name,
            cuda=torch.version.cuda,
            gpu_memory_bytes=int(props.total_memory),
            gpu_capability=f"{props.major}.{props.minor}",
        )
    return info


def peak_matmul_flops(
    device: str = "cpu", dtype: str = "float32", n: int = 2048, repeats: int = 5, warmup: int = 1
) -> list[float]:
    """Dense ``n x n @ n x n`` matmul throughput: one FLOP/s sample (``2 n^3 / seconds``) per repeat.

    TF32 is left as torch's default (off for matmuls), so on a GPU ``float32`` is true fp32; ask
    for ``bfloat16`` to get the tensor-core peak that bf16 autocast training is compared to.
    """
    import torch

    from attnlab.bench.timing import synchronize

    dt = getattr(torch, dtype)
    gen = torch.Generator(device="cpu").manual_seed(0)
    a = torch.randn(n, n, generator=gen).to(device=device, dtype=dt)
    b = torch.randn(n, n, generator=gen).to(device=device, dtype=dt)
    # Enough back-to-back matmuls per sample that a sample is not dominated by launch/timer noise.
    inner = 1 if device == "cpu" else 10
    samples = []
    for i in range(warmup + repeats):
        synchronize(device)
        start = time.perf_counter()
        for _ in range(inner):
            torch.mm(a, b)
        synchronize(device)
        seconds = time.perf_counter() - start
        if i >= warmup:
            samples.append(2.0 * n**3 * inner / seconds)
    return samples
