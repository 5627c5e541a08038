"""Timing helpers: device synchronisation and repeated wall-clock measurements."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

__all__ = ["synchronize", "time_repeats"]


def synchronize(device: Any) -> None:
    """Wait for queued GPU work (a no-op on CPU), so a timestamp covers the work before it."""
    import torch

    if str(device).startswith("cuda") and torch.cuda.is_available():
        torch.cuda.synchronize()


def time_repeats(fn: Callable[[], Any], repeats: int, warmup: int = 1, device: Any = "cpu") -> list[float]:
    """Seconds per call of ``fn`` for ``repeats`` calls after ``warmup`` untimed ones."""
    for _ in range(warmup):
        fn()
    synchronize(device)
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        synchronize(device)
        samples.append(time.perf_counter() - start)
    return samples
