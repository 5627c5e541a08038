"""Hydra callback: at the end of a multirun, print one line per job (status, error, key metric), then
compare the jobs: seeds aggregated, each attention kind against ``attention=none`` when the sweep
has it, tables and plots in ``<sweep>/comparison/`` and the whole comparison as one W&B run
(``job_type=compare``) beside the jobs' runs."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

log = logging.getLogger(__name__)


def collect_sweep(sweep_dir: Path) -> list[dict[str, Any]]:
    """Every job's ``metrics.json`` under ``sweep_dir`` (one folder per job), in job order."""
    from attnlab.runs.metrics_file import read_metrics_file, sweep_metrics_files

    rows = []
    for path in sweep_metrics_files(sweep_dir):
        try:
            rec = read_metrics_file(path)
        except (OSError, ValueError) as exc:
            rec = {"status": "unreadable", "error": str(exc)}
        rec["job"] = path.parent.name
        rows.append(rec)
    return rows


def compare_sweep(config: DictConfig, sweep_dir: Path) -> None:
    """Aggregate the sweep's seeds, test every kind against ``attention=none`` (when the sweep has
    it), write ``<sweep>/comparison/`` and log it as a ``job_type=compare`` W&B run (with a W&B
    logger). Never raises: the jobs' own records are what matter."""
    try:
        from attnlab.compare.records import load_records
        from attnlab.compare.report import build_comparison

        records = load_records([sweep_dir])
        has_none = any(r.attention == "none" and r.status == "ok" for r in records)
        comparison = build_comparison(records, sweep_dir.name, "attention=none" if has_none else None)
        comparison.print(runs=False)  # the sweep's table of jobs is just above
        comparison.write(sweep_dir / "comparison")
        log.info("Comparison written to %s", sweep_dir / "comparison")
        wandb_cfg = (config.get("logger") or {}).get("wandb")
        if wandb_cfg is not None:
            from attnlab.compare.wandb_run import log_comparison_run

            log_comparison_run(
                comparison,
                project=str(wandb_cfg.get("project") or "attnlab"),
                entity=wandb_cfg.get("entity"),
                save_dir=str(wandb_cfg.get("save_dir") or "."),
                mode=wandb_cfg.get("mode"),
                name=f"compare-{sweep_dir.name}",
            )
    except Exception as exc:
        log.warning("The sweep comparison failed (the jobs' records are complete): %s", exc, exc_info=True)


class SweepSummary(Callback):
    """Prints the sweep's table at ``on_multirun_end``; does nothing for single runs.

    At the start it also creates ``paths.log_dir``, where the Optuna sweeper opens its SQLite study
    before any job has run (SQLite cannot create the folder and fails with an unclear error).
    """

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        log_dir = config.get("paths", {}).get("log_dir")
        if log_dir:
            Path(str(log_dir)).mkdir(parents=True, exist_ok=True)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        rows = collect_sweep(sweep_dir)
        if not rows:
            log.warning("No job of the sweep in %s wrote metrics.json", sweep_dir)
            return
        from rich.console import Console
        from rich.table import Table

        table = Table(title=f"Sweep {sweep_dir}")
        for col in ("job", "status", "run", "metric", "value", "error"):
            # The run name is what tells the jobs apart: never truncate it; the error folds instead.
            table.add_column(col, no_wrap=col == "run", overflow="fold" if col == "error" else "ellipsis")
        for rec in rows:
            monitor = (rec.get("monitor") or {}).get("metric", "")
            value = (rec.get("metrics") or {}).get(monitor)
            table.add_row(
                rec["job"],
                str(rec.get("status")),
                str(rec.get("run_name") or ""),
                monitor,
                "" if value is None else f"{value:.4f}",
                (rec.get("error") or "")[:120],
            )
        console = Console()
        # Logs and CI capture the output: rich would assume 80 columns there.
        (console if console.is_terminal else Console(width=160)).print(table)
        failed = sum(rec.get("status") != "ok" for rec in rows)
        log.info("Sweep done: %d ok, %d failed (%s)", len(rows) - failed, failed, sweep_dir)
        if failed < len(rows):
            compare_sweep(config, sweep_dir)
