"""Load run records: ``metrics.json`` files, W&B offline run folders, or a W&B project via its API.

Every source is turned into the same flat :class:`RunRecord`, so the table and the plots do not care
where a run came from. This path needs no W&B account and no network unless ``--wandb`` is used.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from attnlab.runs.metrics_file import METRICS_FILE, find_metrics_files, read_metrics_file

_LEN_BUCKET = re.compile(r"^test/bleu_len_(\d+)-(\d+)$")


@dataclass
class RunRecord:
    """One run, flattened: identity, choices, hyper-parameters and final metrics."""

    name: str
    source: str
    status: str = "ok"
    task: str = "?"
    attention: str = "?"
    metrics: dict[str, float | None] = field(default_factory=dict)
    hparams: dict[str, Any] = field(default_factory=dict)
    monitor: str | None = None
    duration_s: float | None = None
    error: str | None = None
    seed: int | None = None
    choices: dict[str, str] = field(default_factory=dict)
    run_dir: Path | None = None  # the folder holding metrics.json and test_outputs/, when on this machine

    @property
    def main_metric(self) -> str | None:
        """The monitored metric, preferring its test-split twin (``val/bleu`` -> ``test/bleu``)."""
        if not self.monitor:
            return None
        test_name = self.monitor.replace("val/", "test/", 1)
        return test_name if self.metrics.get(test_name) is not None else self.monitor

    @property
    def main_value(self) -> float | None:
        metric = self.main_metric
        return self.metrics.get(metric) if metric else None

    def bleu_by_length(self) -> list[tuple[str, float]]:
        """Translation BLEU per source-length bucket, in bucket order (empty for other tasks)."""
        rows = []
        for key, value in self.metrics.items():
            match = _LEN_BUCKET.match(key)
            if match and value is not None:
                rows.append((int(match.group(1)), f"{int(match.group(1))}-{int(match.group(2))}", value))
        return [(label, value) for _, label, value in sorted(rows)]


def record_from_metrics_file(path: Path) -> RunRecord:
    data = read_metrics_file(path)
    choices = data.get("choices") or {}
    attention = choices.get("attention") or (data.get("hparams") or {}).get("attention.kind") or "?"
    return RunRecord(
        name=data.get("run_name") or path.parent.name,
        source=str(path.parent),
        status=data.get("status", "?"),
        task=data.get("task") or "?",
        attention=str(attention),
        metrics=dict(data.get("metrics") or {}),
        hparams=dict(data.get("hparams") or {}),
        monitor=(data.get("monitor") or {}).get("metric"),
        duration_s=data.get("duration_s"),
        error=data.get("error"),
        seed=(data.get("hparams") or {}).get("seed"),
        choices={str(k): str(v) for k, v in choices.items()},
        run_dir=path.parent,
    )


def _record_from_wandb_values(name: str, source: str, config: dict, summary: dict, state: str) -> RunRecord:
    from attnlab.runs.flatten import flatten_scalars

    flat = flatten_scalars({k: v for k, v in config.items() if not k.startswith("_")})
    choices = config.get("choices") or {}
    output_dir = Path(str(flat.get("paths.output_dir") or "")) if flat.get("paths.output_dir") else None
    metrics: dict[str, float | None] = {k: v for k, v in summary.items() if isinstance(v, (int, float)) and "/" in k}
    tags_task = "detection" if any(k.startswith(("val/map", "test/map")) for k in metrics) else "translation"
    return RunRecord(
        name=name,
        source=source,
        status={"finished": "ok", "crashed": "failed", "failed": "failed"}.get(state, state or "?"),
        task=str(config.get("task") or tags_task),
        attention=str(choices.get("attention") or flat.get("attention.kind") or "?"),
        metrics=metrics,
        hparams={k: v for k, v in flat.items() if k.startswith(("model.", "attention.", "data.")) or k == "seed"},
        monitor=(config.get("monitor") or {}).get("metric") if isinstance(config.get("monitor"), dict) else None,
        duration_s=summary.get("_runtime"),
        seed=config.get("seed"),
        choices={str(k): str(v) for k, v in choices.items()} if isinstance(choices, dict) else {},
        # The run folder, when this machine wrote it: its test outputs make significance possible.
        run_dir=output_dir if output_dir is not None and output_dir.is_dir() else None,
    )


def record_from_wandb_offline(run_dir: Path) -> RunRecord:
    """Read an offline run folder with ``wandb leet inspect --summary --json`` (wandb ships no Python reader)."""
    exe = shutil.which("wandb")
    if exe is None:
        raise RuntimeError("the `wandb` command is needed to read offline W&B runs; pip install wandb")
    proc = subprocess.run(
        [exe, "leet", "inspect", "--summary", "--json", str(run_dir)], capture_output=True, text=True, timeout=120
    )
    if proc.returncode != 0:
        raise RuntimeError(f"wandb could not read {run_dir}: {proc.stderr.strip()[:300]}")
    data = json.loads(proc.stdout)
    config = data.get("config") or {}
    config = {k: (v.get("value") if isinstance(v, dict) and "value" in v else v) for k, v in config.items()}
    return _record_from_wandb_values(
        name=str(data.get("name") or data.get("display_name") or run_dir.name),
        source=str(run_dir),
        config=config,
        summary=data.get("summary") or {},
        state=str(data.get("state") or ""),
    )


def records_from_wandb_project(path: str) -> list[RunRecord]:
    """Runs of ``ENTITY/PROJECT`` through W&B's public API (needs a login and the network)."""
    import wandb

    api = wandb.Api()
    return [
        _record_from_wandb_values(run.name, run.url, dict(run.config), dict(run.summary), run.state)
        for run in api.runs(path)
    ]


def load_records(paths: Iterable[Path]) -> list[RunRecord]:
    """Every run under ``paths``: a run folder, a sweep folder (any depth), or W&B offline run folders."""
    records: list[RunRecord] = []
    for path in paths:
        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"{path} does not exist: pass a sweep folder, run folders or W&B run folders")
        if path.is_file() and path.name == METRICS_FILE:
            records.append(record_from_metrics_file(path))
            continue
        found = find_metrics_files(path)
        if found:
            records.extend(record_from_metrics_file(p) for p in found)
            continue
        offline = [path] if path.name.startswith(("offline-run-", "run-")) else sorted(path.glob("*run-*"))
        if not offline:
            raise FileNotFoundError(f"no {METRICS_FILE} and no W&B run folder under {path}")
        records.extend(record_from_wandb_offline(p) for p in offline if p.is_dir())
    return records
