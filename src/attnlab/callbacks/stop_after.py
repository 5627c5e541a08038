"""Stop training cleanly after N epochs of this invocation's target, leaving a resumable checkpoint.

For time-limited jobs (and the resume test): ``stop_after_epochs=2`` trains epochs 0-1 of a
``max_epochs=4`` schedule, saves ``last.ckpt`` and exits; ``ckpt_path=.../last.ckpt
stop_after_epochs=null`` then trains epochs 2-3 on the same LR schedule.
"""

from __future__ import annotations

import logging

import pytorch_lightning as pl

log = logging.getLogger(__name__)


class StopAfterEpochs(pl.Callback):
    """End training after ``epochs`` epochs (counted from epoch 0) as if ``max_epochs`` were that.

    The LR schedule has already been built from the configured ``max_epochs`` when training starts,
    so lowering the loop's limit only there keeps the schedule, and the end-of-training checkpoint
    is an ordinary end-of-epoch one that resumes cleanly.
    """

    def __init__(self, epochs: int | None) -> None:
        # None or 0 (``stop_after_epochs=null``, the default): listed in conf/callbacks like every
        # callback, and off.
        if epochs is not None and epochs < 0:
            raise ValueError(f"stop_after_epochs must be >= 1 (or null: off), got {epochs}")
        self.epochs = int(epochs) if epochs else None

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.epochs is None:
            return
        limit = trainer.fit_loop.max_epochs
        if limit is None or limit < 0 or self.epochs < limit:
            log.info(
                "stop_after_epochs=%d: training stops after epoch %d of %s; resume with "
                "ckpt_path=<run>/checkpoints/last.ckpt stop_after_epochs=null",
                self.epochs,
                self.epochs,
                limit,
            )
            trainer.fit_loop.max_epochs = self.epochs
