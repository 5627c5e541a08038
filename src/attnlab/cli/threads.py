"""How many torch threads a job gets: its share of the cores, so parallel sweep jobs do not oversubscribe them.

One policy for ``train.py`` and ``eval.py`` (and, through :func:`attnlab.data.loader_workers.parallel_jobs`,
the same share the DataLoader workers are sized from).
"""

from __future__ import annotations

import os

from omegaconf import DictConfig

__all__ = ["set_threads"]


def set_threads(cfg: DictConfig) -> int:
    """Set torch's intra-op threads to ``cfg.torch_threads``, or to the cores divided by the jobs running
    at once (joblib's ``n_jobs``; 1 otherwise); return the number set."""
    import torch

    from attnlab.data.loader_workers import parallel_jobs

    threads = cfg.get("torch_threads")
    if not threads:
        threads = max(1, (os.cpu_count() or 1) // parallel_jobs())
    torch.set_num_threads(int(threads))
    return int(threads)
