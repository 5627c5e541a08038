"""Make a resumed run continue exactly where it stopped.

Lightning restores weights, optimizer, scheduler and loop counters, but (a) not the global random
generators, so dropout masks after a resume would differ from an uninterrupted run, and (b) on a
restart it makes the train iterator before the samplers get the resumed epoch and before any hook
runs, so a seeded per-epoch shuffle would replay epoch 0 and the DataLoader's seed draw would come
out of order. With this callback (and the lazily drawn batch order of the translation sampler) a run
trained 2 epochs, stopped and resumed for 2 more logs the same numbers, step for step, as 4 epochs
straight in deterministic mode (tests/test_resume.py). Resuming from a mid-epoch (interrupt)
checkpoint continues correctly but is not step-for-step identical: the data position is not saved.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from lightning_fabric.utilities.seed import _collect_rng_states, _set_rng_states

CHECKPOINT_KEY = "attnlab_rng_states"


def _checkpointable(states: dict[str, Any]) -> dict[str, Any]:
    """RNG states as data ``torch.load(weights_only=True)`` reads: numpy's MT19937 key array (the one
    non-torch, non-builtin object) becomes a tensor."""
    out = dict(states)
    if "numpy" in out:
        kind, key, *rest = out["numpy"]
        out["numpy"] = (kind, torch.from_numpy(np.asarray(key, dtype=np.int64)), *rest)
    return out


def _restorable(states: dict[str, Any]) -> dict[str, Any]:
    """Inverse of :func:`_checkpointable`."""
    out = dict(states)
    if "numpy" in out:
        kind, key, *rest = out["numpy"]
        out["numpy"] = (kind, np.asarray(key, dtype=np.int64).astype(np.uint32), *rest)
    return out


def _samplers(loader: Any) -> list[Any]:
    found = [getattr(loader, "sampler", None), getattr(getattr(loader, "batch_sampler", None), "sampler", None)]
    found.append(getattr(loader, "batch_sampler", None))
    return [s for s in found if s is not None and callable(getattr(s, "set_epoch", None))]


class ExactResume(pl.Callback):
    """Saves RNG states with every checkpoint and re-applies them on resume; keeps sampler epochs right."""

    def __init__(self) -> None:
        self._pending: dict[str, Any] | None = None

    def on_save_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict) -> None:
        checkpoint[CHECKPOINT_KEY] = _checkpointable(_collect_rng_states(include_cuda=True))

    def on_load_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict) -> None:
        self._pending = checkpoint.get(CHECKPOINT_KEY)

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # Applied here rather than at load time: work done in between (model set-up, the sanity
        # check) would otherwise shift the streams relative to the uninterrupted run. Without a
        # resume, Lightning's own set_epoch before each epoch's first batch is all the samplers need.
        if self._pending is not None:
            _set_rng_states(_restorable(self._pending))
            self._pending = None
            self._sync_sampler_epochs(trainer)
            self._remake_train_iterator(trainer)

    @staticmethod
    def _remake_train_iterator(trainer: pl.Trainer) -> None:
        """On a resume Lightning makes the train iterator before this hook, so (a) making it draws
        the DataLoader's base seed from the global generator *before* the restore, whereas an
        uninterrupted run draws it at this point of the epoch, and (b) with worker processes the
        first indices are already fetched with the old sampler epoch. Making it again now, after
        the RNG states and sampler epochs are right, puts both streams where they would have been."""
        fetcher = getattr(trainer.fit_loop, "_data_fetcher", None)
        if fetcher is not None:
            iter(fetcher)

    @staticmethod
    def _sync_sampler_epochs(trainer: pl.Trainer) -> None:
        loaders = trainer.train_dataloader
        for loader in loaders if isinstance(loaders, (list, tuple)) else [loaders]:
            for sampler in _samplers(loader):
                # The value Lightning itself gives the samplers at the start of each epoch.
                # Typed as a tracker without `processed`; the fit loop's epoch progress has one.
                sampler.set_epoch(trainer.fit_loop.epoch_progress.current.processed)  # type: ignore[attr-defined]
