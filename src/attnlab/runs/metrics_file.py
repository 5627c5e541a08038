"""``metrics.json``: each run's final metrics and choices, so runs compare with no W&B account.

The one writer (:func:`write_metrics_file`) and the one reader (:func:`read_metrics_file`) of the file,
and where to find it (:func:`find_metrics_files`, :func:`sweep_metrics_files`): the run records
(:mod:`attnlab.runs.attempts`), ``eval.py``, the sweep summary, ``compare/records.py`` and
``benchmarks/sweep.py`` all go through here, so none spells out the file name or its format.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

METRICS_FILE = "metrics.json"


def to_float(value: Any) -> float | None:
    """A scalar tensor/number as a float; non-finite values become None (JSON has no NaN)."""
    try:
        out = float(value.item() if hasattr(value, "item") else value)
    except (TypeError, ValueError, RuntimeError):
        return None
    return out if math.isfinite(out) else None


def write_metrics_file(output_dir: str | Path, record: Mapping[str, Any]) -> Path:
    """Write ``record`` atomically to ``<output_dir>/metrics.json`` (a crash mid-write leaves the old file).

    The temporary file is unique per process, so two writers never interleave into one file.
    """
    path = Path(output_dir) / METRICS_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{METRICS_FILE}.{os.getpid()}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as fh:
            json.dump(record, fh, indent=2, sort_keys=True, default=str)
        os.chmod(tmp, 0o644)  # mkstemp makes it private; a record is for everyone who can read the folder
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def read_metrics_file(path: str | Path) -> dict[str, Any]:
    """The record in ``path`` (a ``metrics.json`` file or the run folder holding one).

    Raises ``OSError`` when it cannot be read and ``ValueError`` when it is not a JSON object
    (``json.JSONDecodeError`` is one): callers decide whether a broken record stops them.
    """
    path = Path(path)
    if path.name != METRICS_FILE or path.is_dir():
        path = path / METRICS_FILE
    with open(path) as fh:
        record = json.load(fh)
    if not isinstance(record, dict):
        raise ValueError(f"{path} does not hold a JSON object")
    return record


def find_metrics_files(root: str | Path) -> list[Path]:
    """Every ``metrics.json`` under ``root`` at any depth, shallowest first (a sweep's jobs in order)."""
    return sorted(Path(root).rglob(METRICS_FILE), key=lambda p: (len(str(p)), str(p)))


def sweep_metrics_files(sweep_dir: str | Path) -> list[Path]:
    """The ``metrics.json`` of each job folder of a sweep, in job order (``0, 1, ..., 10``)."""
    found = Path(sweep_dir).glob(f"*/{METRICS_FILE}")
    return sorted(found, key=lambda p: (len(p.parent.name), p.parent.name))
