"""Save a resumable checkpoint when a run is interrupted (Ctrl-C, or SIGTERM from a scheduler).

Lightning turns SIGTERM into ``SIGTERMException`` at the next batch boundary and Ctrl-C into a
``KeyboardInterrupt``; both reach ``on_exception``, where ``last.ckpt`` is written so that
``python train.py ckpt_path=<run>/checkpoints/last.ckpt`` continues the run.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytorch_lightning as pl
from pytorch_lightning.utilities.exceptions import SIGTERMException

log = logging.getLogger(__name__)


class CheckpointOnInterrupt(pl.Callback):
    """Write ``<dirpath>/last.ckpt`` when training is interrupted; other errors are left alone."""

    def __init__(self, dirpath: str | Path) -> None:
        self.dirpath = Path(dirpath)
        self.saved_path: Path | None = None

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        if not isinstance(exception, (KeyboardInterrupt, SIGTERMException)):
            return
        if trainer.state.fn != "fit":
            return
        path = self.dirpath / "last.ckpt"
        try:
            trainer.save_checkpoint(path)
        except Exception as exc:  # noqa: BLE001 - an interrupt must still end the run
            log.error("Could not save a checkpoint on interrupt: %s", exc)
            return
        self.saved_path = path
        log.warning("Interrupted (%s): saved %s; resume with ckpt_path=%s", type(exception).__name__, path, path)
