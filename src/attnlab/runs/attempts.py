"""A run's record across its attempts: ``metrics.json`` is written when the run starts and kept.

* At start the run writes ``status: running`` (with its pid and host), so a run killed outright
  (SIGKILL, out of memory, a node lost) still leaves a record, and the next start on this host
  finds it and says how to resume it.
* A run resumed into its folder (``ckpt_path=<run>/checkpoints/last.ckpt``) is a new *attempt*:
  the record's top level describes the latest attempt (what ``compare_runs.py`` reads), and
  ``attempts`` keeps every attempt's own record, oldest first, so nothing recorded before is lost.
  An attempt still marked ``running`` whose process is gone becomes ``killed``.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from pathlib import Path
from typing import Any

from attnlab.runs.metrics_file import read_metrics_file, write_metrics_file

__all__ = ["amend_record", "finish_attempt", "read_record", "report_killed_runs", "start_attempt"]

log = logging.getLogger(__name__)


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


def read_record(run_dir: str | Path) -> dict[str, Any] | None:
    """The run's ``metrics.json`` as a dict, or None when it is missing or unreadable."""
    return _read(Path(run_dir))


def _read(run_dir: Path) -> dict[str, Any] | None:
    try:
        return read_metrics_file(run_dir)
    except (OSError, ValueError):
        return None


def _process_gone(record: dict[str, Any]) -> bool:
    """True when a ``running`` record's process no longer exists on this host."""
    pid = record.get("pid")
    if record.get("host") != socket.gethostname() or not isinstance(pid, int):
        return False
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def _history(existing: dict[str, Any] | None) -> list[dict[str, Any]]:
    """The attempts recorded so far (a record written before attempts existed is attempt 1)."""
    if not existing:
        return []
    attempts = existing.get("attempts")
    if not isinstance(attempts, list):
        attempts = [{k: v for k, v in existing.items() if k != "attempts"}]
    history = []
    for i, attempt in enumerate(attempts, start=1):
        attempt = dict(attempt)
        attempt.setdefault("attempt", i)
        if attempt.get("status") == "running" and _process_gone(attempt):
            attempt["status"] = "killed"
            attempt["error"] = attempt.get("error") or "the process ended without finishing its record (killed)"
        history.append(attempt)
    return history


def start_attempt(run_dir: str | Path, fields: dict[str, Any]) -> int:
    """Record a new attempt of the run in ``run_dir`` as ``running``; return its number."""
    run_dir = Path(run_dir)
    history = _history(_read(run_dir))
    attempt = {
        **fields,
        "status": "running",
        "attempt": len(history) + 1,
        "started_at": _now(),
        "pid": os.getpid(),
        "host": socket.gethostname(),
    }
    history.append(attempt)
    write_metrics_file(run_dir, {**attempt, "attempts": history})
    return int(attempt["attempt"])


def finish_attempt(run_dir: str | Path, record: dict[str, Any], attempt: int | None) -> Path:
    """Write the final ``record`` of attempt ``attempt`` (None: a run that failed before it started
    one) as the top level, keeping every other attempt in ``attempts``."""
    run_dir = Path(run_dir)
    history = _history(_read(run_dir))
    started: dict[str, Any] = {}
    if attempt is not None:
        started = next((a for a in history if a.get("attempt") == attempt), started)
    kept: dict[str, Any] = {k: started[k] for k in ("started_at", "pid", "host") if k in started}
    final = {**kept, **record, "attempt": attempt if attempt is not None else len(history) + 1, "ended_at": _now()}
    history = [a for a in history if a.get("attempt") != final["attempt"]] + [final]
    history.sort(key=lambda a: int(a.get("attempt") or 0))
    return write_metrics_file(run_dir, {**final, "attempts": history})


def amend_record(run_dir: str | Path, **fields: Any) -> Path | None:
    """Update fields of the latest attempt (top level and its entry in ``attempts``), e.g. a sweeper
    marking a job whose value was nan as failed. Returns the path, or None when there is no record."""
    run_dir = Path(run_dir)
    record = _read(run_dir)
    if record is None:
        return None
    history = _history(record)
    if history:
        history[-1] = {**history[-1], **fields}
    return write_metrics_file(run_dir, {**record, **fields, "attempts": history})


def report_killed_runs(runs_root: str | Path, skip: str | Path | None = None, newest: int = 20) -> list[Path]:
    """Warn, with the command to resume it, about every run among the ``newest`` folders of
    ``runs_root`` whose record still says ``running`` though its process is gone; return them."""
    runs_root = Path(runs_root)
    if not runs_root.is_dir():
        return []
    skip_path = Path(skip).resolve() if skip else None
    folders = sorted((p for p in runs_root.iterdir() if p.is_dir()), key=lambda p: p.name, reverse=True)[:newest]
    killed = []
    for folder in folders:
        if skip_path is not None and folder.resolve() == skip_path:
            continue
        record = _read(folder)
        if not record or record.get("status") != "running" or not _process_gone(record):
            continue
        killed.append(folder)
        last = folder / "checkpoints" / "last.ckpt"
        if last.is_file():
            log.warning(
                "Run %s was killed while running (started %s, pid %s). Resume it with: python train.py ckpt_path=%s",
                folder,
                record.get("started_at"),
                record.get("pid"),
                last,
            )
        else:
            log.warning(
                "Run %s was killed while running (started %s, pid %s) before it wrote a checkpoint; "
                "start it again with the overrides in %s",
                folder,
                record.get("started_at"),
                record.get("pid"),
                folder / ".hydra" / "overrides.yaml",
            )
    return killed
