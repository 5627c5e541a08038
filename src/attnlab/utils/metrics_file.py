"""``metrics.json``: each run's final metrics and choices, so runs compare with no W&B account."""

from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any, Mapping

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


def read_metrics_file(run_dir: str | Path) -> dict[str, Any]:
    with open(Path(run_dir) / METRICS_FILE) as fh:
        return json.load(fh)
