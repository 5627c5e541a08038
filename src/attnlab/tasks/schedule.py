"""The optimizer/scheduler return value of ``configure_optimizers``, shared by the tasks."""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import pytorch_lightning as pl
from torch.optim import Optimizer

from attnlab.tasks.optim_factories import config_to_factory

__all__ = ["configure_from_hparams", "optimizers_config", "schedule_length_kwargs"]


def schedule_length_kwargs(scheduler: Callable[..., Any], trainer: pl.Trainer, interval: str) -> dict[str, int]:
    """``total_steps`` (OneCycleLR) / ``T_max`` (cosine) from the trainer when the partial lacks them."""
    func = getattr(scheduler, "func", scheduler)
    given = set(getattr(scheduler, "keywords", {}) or {})
    try:
        params = inspect.signature(func).parameters
    except (TypeError, ValueError):
        return {}
    total = trainer.estimated_stepping_batches if interval == "step" else trainer.max_epochs
    if total is None or not math.isfinite(float(total)) or total <= 0:
        return {}
    return {name: int(total) for name in ("total_steps", "T_max") if name in params and name not in given}


def optimizers_config(
    optimizer: Optimizer, make_scheduler: Callable[..., Any] | None, interval: str, trainer: pl.Trainer
) -> Any:
    """``optimizer`` alone, or with the scheduler ``make_scheduler`` builds, stepped every ``interval``."""
    if make_scheduler is None:
        return optimizer
    scheduler = make_scheduler(optimizer=optimizer, **schedule_length_kwargs(make_scheduler, trainer, interval))
    return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": interval, "frequency": 1}}


def configure_from_hparams(hparams: Mapping[str, Any], params: Iterable[Any], trainer: pl.Trainer, task: str) -> Any:
    """``configure_optimizers`` of a task whose hyper-parameters hold ``optimizer`` / ``scheduler``
    config dicts (see :mod:`attnlab.tasks.optim_factories`) and ``scheduler_interval``."""
    make_optimizer = config_to_factory(hparams.get("optimizer"), "optimizer")
    if make_optimizer is None:
        raise ValueError(f"{task} needs an optimizer (model.optimizer with `_partial_: true` in the config)")
    make_scheduler = config_to_factory(hparams.get("scheduler"), "scheduler")
    return optimizers_config(make_optimizer(params=params), make_scheduler, hparams["scheduler_interval"], trainer)
