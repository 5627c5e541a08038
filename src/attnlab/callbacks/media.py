"""Log attention maps and predictions (translation alignments, boxes on images) to W&B.

The drawing lives with each task (``log_media(loggers)`` on the LightningModule); this callback
decides when it runs, so media can be switched off (``callbacks.media=null``) or thinned out.
"""

from __future__ import annotations

import logging

import pytorch_lightning as pl

log = logging.getLogger(__name__)


class MediaLogger(pl.Callback):
    """Call ``pl_module.log_media(wandb_loggers)`` after every ``every_n_epochs`` validation epochs."""

    def __init__(self, every_n_epochs: int = 1) -> None:
        self.every_n_epochs = max(1, int(every_n_epochs))

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        from pytorch_lightning.loggers import WandbLogger

        if trainer.sanity_checking or not trainer.is_global_zero:
            return
        if (trainer.current_epoch + 1) % self.every_n_epochs != 0 and not getattr(trainer, "fast_dev_run", False):
            return
        wandb_loggers = [lg for lg in trainer.loggers if isinstance(lg, WandbLogger)]
        log_media = getattr(pl_module, "log_media", None)
        if not wandb_loggers or log_media is None:
            return
        try:
            log_media(wandb_loggers)
        except Exception as exc:  # noqa: BLE001 - pictures must never cost a training run
            log.warning("Media logging failed (training goes on): %s", exc)
