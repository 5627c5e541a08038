"""Make a resumed run continue exactly where it stopped.

Lightning restores weights, optimizer, scheduler and loop counters, but (a) not the global random
generators, so dropout masks after a resume would differ from an uninterrupted run, and (b) after a
restart it hands the samplers a reset epoch counter, so a seeded per-epoch shuffle would replay
epoch 0's order. With this callback a run trained 2 epochs, stopped and resumed for 2 more
matches 4 epochs straight (in deterministic mode).
"""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl
from lightning_fabric.utilities.seed import _collect_rng_states, _set_rng_states

CHECKPOINT_KEY = "attnlab_rng_states"


def _samplers(loader: Any) -> list[Any]:
    found = [getattr(loader, "sampler", None), getattr(getattr(loader, "batch_sampler", None), "sampler", None)]
    found.append(getattr(loader, "batch_sampler", None))
    return [s for s in found if s is not None and callable(getattr(s, "set_epoch", None))]


class ExactResume(pl.Callback):
    """Saves RNG states with every checkpoint and re-applies them on resume; keeps sampler epochs right."""

    def __init__(self) -> None:
        self._pending: dict[str, Any] | None = None

    def on_save_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict) -> None:
        checkpoint[CHECKPOINT_KEY] = _collect_rng_states(include_cuda=True)

    def on_load_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict) -> None:
        self._pending = checkpoint.get(CHECKPOINT_KEY)

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # Applied here rather than at load time: work done in between (model set-up, the sanity
        # check) would otherwise shift the streams relative to the uninterrupted run.
        if self._pending is not None:
            _set_rng_states(self._pending)
            self._pending = None
        self._sync_sampler_epochs(trainer)

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._sync_sampler_epochs(trainer)

    @staticmethod
    def _sync_sampler_epochs(trainer: pl.Trainer) -> None:
        loaders = trainer.train_dataloader
        for loader in loaders if isinstance(loaders, (list, tuple)) else [loaders]:
            for sampler in _samplers(loader):
                sampler.set_epoch(trainer.current_epoch)
