"""The comparison as one W&B run of its own (``job_type=compare``): the per-run and aggregated
tables and the significance results as ``wandb.Table``s, the plots as images, and the headline
figures in its summary. Offline unless logged in (``WANDB_MODE`` wins), like every run; upload
later with ``wandb sync``."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Literal, cast

from attnlab.compare.report import Comparison

log = logging.getLogger(__name__)

__all__ = ["log_comparison_run"]


def _cell(value: Any) -> Any:
    """W&B table cells: numbers stay numbers, empty cells None (a column keeps one type), the rest strings."""
    if value is None or value == "":
        return None
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) else str(value)


def log_comparison_run(
    comparison: Comparison,
    *,
    project: str = "attnlab",
    entity: str | None = None,
    save_dir: str | Path = ".",
    mode: str | None = None,
    name: str | None = None,
) -> str | None:
    """Log ``comparison`` (already written, so its plots exist) as a ``job_type=compare`` run;
    returns the run's folder, or None when W&B is disabled."""
    import wandb

    from attnlab.compare.significance import significance_table
    from attnlab.compare.table import aggregated_csv_rows, table_rows
    from attnlab.runs.wandb_setup import finish_wandb, resolve_wandb_mode

    mode = resolve_wandb_mode(mode)
    if mode == "disabled":
        return None
    Path(save_dir).mkdir(parents=True, exist_ok=True)
    wandb_mode = cast(Literal["online", "offline", "disabled", "shared"], mode)  # resolve_wandb_mode gives one of them
    run = wandb.init(
        project=project,
        entity=entity,
        dir=str(save_dir),
        mode=wandb_mode,
        job_type="compare",
        group="compare",
        name=(name or f"compare-{comparison.title}")[:80],
        tags=["compare", *comparison.tasks],
        config={
            "baseline": comparison.baseline,
            "runs": len(comparison.records),
            "groups": len(comparison.groups),
            "tasks": comparison.tasks,
        },
    )
    payload: dict[str, Any] = {}
    for key, (header, rows) in {
        "comparison/runs": table_rows(comparison.records),
        "comparison/aggregated": aggregated_csv_rows(comparison.groups),
    }.items():
        # [*header]: wandb types columns as list[str | int], and a list[str] is not one (lists are invariant).
        payload[key] = wandb.Table(columns=[*header], data=[[_cell(c) for c in row] for row in rows])
    if comparison.baseline:
        header, rows = significance_table(comparison.significance)
        payload["comparison/significance"] = wandb.Table(
            columns=[*header], data=[[_cell(c) for c in row] for row in rows]
        )
    for path in comparison.files:
        if path.suffix == ".png":
            payload[f"plots/{path.stem}"] = wandb.Image(str(path))
    run.log(payload)
    for row in comparison.significance:
        if row.result is not None:
            prefix = f"significance/{row.task}/{row.system}"
            run.summary.update(
                {
                    f"{prefix}/difference": row.result.difference,
                    f"{prefix}/p_value": row.result.p_value,
                    f"{prefix}/significant": row.result.significant,
                }
            )
    info = finish_wandb()
    return info["dir"] if info else None
