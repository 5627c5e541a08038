"""How many DataLoader workers a job gets by default: its share of the machine's cores.

The share is the one the sweep launcher already gives torch (:func:`attnlab.cli.threads.set_threads`): the
usable cores divided by the jobs running at once (joblib's ``n_jobs``; 1 otherwise).

Measured with the default detection recipe (FCOS, 128 px shapes, batch 16) on a 2-core machine,
steps/s side by side in one process (``scripts/bench.py --sections data``, 3 interleaved
repeats, 1 torch thread, load ~13): 1.03 steps/s with 0 workers, 0.89 with 2 (0.87x). With 0 workers the model
waits for data ~2.6% of a step; a worker process competes with the model for the same two cores
and loses more than that. So jobs with fewer than
:data:`MIN_CORES_FOR_WORKERS` cores load in the main process, and bigger shares give half their
cores to loading (at most :data:`MAX_WORKERS`), where decoding JPEGs for a GPU is the bottleneck.
"""

from __future__ import annotations

import os

__all__ = ["MAX_WORKERS", "MIN_CORES_FOR_WORKERS", "cores_per_job", "default_num_workers", "parallel_jobs"]

MIN_CORES_FOR_WORKERS = 4
MAX_WORKERS = 8


def usable_cores() -> int:
    """The cores this process may run on (its affinity mask, where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def parallel_jobs() -> int:
    """How many jobs of this sweep run at once on this machine (joblib's n_jobs; 1 otherwise).

    ``ATTNLAB_PARALLEL_JOBS`` overrides what the Hydra launcher config says.
    """
    env = os.environ.get("ATTNLAB_PARALLEL_JOBS")
    if env:
        return max(1, int(env))
    try:
        from hydra.core.hydra_config import HydraConfig

        launcher = HydraConfig.get().launcher
    except ValueError:
        return 1
    n_jobs = launcher.get("n_jobs") if "joblib" in str(launcher.get("_target_", "")) else None
    if not n_jobs:
        return 1
    cores = os.cpu_count() or 1
    return cores if n_jobs < 0 else min(int(n_jobs), cores)


def cores_per_job() -> int:
    """This job's share of the cores (at least 1)."""
    return max(1, (os.cpu_count() or 1) // parallel_jobs())


def default_num_workers() -> int:
    """DataLoader workers for ``data.num_workers: null`` (see the module docstring)."""
    cores = min(cores_per_job(), usable_cores())
    return 0 if cores < MIN_CORES_FOR_WORKERS else min(MAX_WORKERS, cores // 2)
