"""What a training run writes into its ``metrics.json``: who it is, how far it got, how it ended.

The record is started when the run starts (:func:`attnlab.runs.attempts.start_attempt`, with
:func:`identity`) and finished here whatever the ending: ``ok``, ``failed`` or ``interrupted``.
Finishing also closes the W&B run, so that the next job of a sweep starts its own.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from attnlab.runs.run_dir import run_rank
from attnlab.runs.run_info import RunInfo, hydra_choices

__all__ = ["finish_run", "hparams_for_record", "identity", "progress_fields"]

log = logging.getLogger(__name__)


def hparams_for_record(cfg: DictConfig) -> dict[str, Any]:
    """The hyper-parameters worth a column in comparison tables (flat, scalar)."""
    from attnlab.runs.flatten import flatten_scalars

    keep = {}
    for section in ("model", "attention", "data"):
        node = cfg.get(section)
        if node is not None:
            flat = flatten_scalars(OmegaConf.to_container(node, resolve=True), prefix=section)
            keep.update({k: v for k, v in flat.items() if not k.endswith("_target_")})
    keep["trainer.max_epochs"] = cfg.trainer.get("max_epochs")
    keep["seed"] = cfg.get("seed")
    return keep


def identity(cfg: DictConfig, run: RunInfo | None) -> dict[str, Any]:
    """The ``metrics.json`` fields that say which run this is (written at start and at the end)."""
    return {
        "task": run.task if run else None,
        "run_name": run.name if run else None,
        "choices": run.choices if run else hydra_choices(),
        "monitor": OmegaConf.to_container(cfg.monitor, resolve=True) if "monitor" in cfg else None,
        "output_dir": str(Path(cfg.paths.output_dir)),
        "started_from_ckpt": str(cfg.ckpt_path) if cfg.get("ckpt_path") else None,
    }


def progress_fields(cfg: DictConfig, trainer: Any) -> dict[str, Any]:
    """The ``metrics.json`` fields every run has, however it ended: epoch, step, hyper-parameters."""
    return {"epochs": trainer.current_epoch, "global_step": trainer.global_step, "hparams": hparams_for_record(cfg)}


def finish_run(
    status: str,
    cfg: DictConfig,
    run: RunInfo | None,
    metrics: dict[str, float | None],
    error: str | None,
    started: float,
    extra: dict[str, Any],
    attempt: int | None,
) -> None:
    """Finish the W&B run (marking failures) and write this attempt's record in ``metrics.json``
    (rank 0 only: ``trainer=ddp`` runs this function once per rank); earlier attempts stay in ``attempts``."""
    from attnlab.runs.attempts import finish_attempt
    from attnlab.runs.wandb_setup import finish_wandb

    wandb_info = None
    try:
        wandb_info = finish_wandb(exit_code=0 if status == "ok" else 1, preempted=status == "interrupted")
    except Exception as exc:  # noqa: BLE001 - the run's own record matters more than W&B's
        log.warning("Could not finish the W&B run cleanly: %s", exc)
    record = dict(extra)
    record.update({"error": error, "duration_s": round(time.perf_counter() - started, 2), "wandb": wandb_info})
    if run_rank() != 0:
        return
    final = {"status": status, **identity(cfg, run), "metrics": metrics, **record}
    path = finish_attempt(Path(cfg.paths.output_dir), final, attempt)
    shown = {k: v for k, v in metrics.items() if k.startswith("test/") and "len" not in k and v is not None}
    if shown:
        log.info("Final test metrics: %s", "  ".join(f"{k}={v:.4f}" for k, v in sorted(shown.items())))
    log.info("Run %s: %s", status, path)
