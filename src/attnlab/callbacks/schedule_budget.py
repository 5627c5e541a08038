"""Resuming with another step budget rebuilds the LR schedule for the new total.

``python train.py ckpt_path=<run>/checkpoints/last.ckpt trainer.max_epochs=20`` after a 10-epoch run:
``configure_optimizers`` builds the scheduler for this run's budget (``total_steps`` / ``T_max``
from the trainer), then Lightning loads the checkpoint's scheduler state over it, and with it the
old length; OneCycleLR then stops the run at the old total ("Tried to step N times"). This callback
takes the length entries out of the checkpoint's scheduler state before Lightning applies it, so
the position (``last_epoch``), learning rates and everything else are restored while the length
stays the one built for the new budget: the rest of training follows the schedule for the new
total from the step reached. With an unchanged budget nothing changes (the lengths are equal).
"""

from __future__ import annotations

import logging
from typing import Any

import pytorch_lightning as pl

log = logging.getLogger(__name__)

# Scheduler attributes that are the schedule's length, or derived from it (OneCycleLR's phases).
LENGTH_KEYS = ("total_steps", "T_max", "total_iters", "_schedule_phases")


class ScheduleFollowsBudget(pl.Callback):
    """Keep the LR schedule length of the new budget when resuming (see the module docstring)."""

    def __init__(self) -> None:
        self._stored: list[dict[str, Any]] = []

    def on_load_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict) -> None:
        # Called before Lightning restores optimizers and schedulers from this same dict.
        self._stored = [
            {k: state.pop(k) for k in LENGTH_KEYS if k in state} for state in checkpoint.get("lr_schedulers") or []
        ]

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        for stored, config in zip(self._stored, trainer.lr_scheduler_configs):
            scheduler = config.scheduler
            changed = {
                k: (v, getattr(scheduler, k))
                for k, v in stored.items()
                if not k.startswith("_") and hasattr(scheduler, k) and getattr(scheduler, k) != v
            }
            if changed:
                log.warning(
                    "Resumed with a new budget: %s %s. The LR schedule is rebuilt for the new total and "
                    "continues from step %s of it.",
                    type(scheduler).__name__,
                    ", ".join(f"{k} {old} -> {new}" for k, (old, new) in changed.items()),
                    getattr(scheduler, "last_epoch", "?"),
                )
        self._stored = []
