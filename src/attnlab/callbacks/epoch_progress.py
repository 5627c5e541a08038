"""One progress line per epoch when nobody is watching a terminal (nohup, SLURM, CI).

A rich progress bar draws nothing useful into a file, so a run under ``nohup`` or SLURM showed no
progress in ``train.log`` at all. When stdout is not a terminal this callback logs, after every
training epoch (validation included), one line to the console and ``train.log``::

    epoch 3/10  step 1500  train/loss 2.314  val/bleu 21.87  elapsed 0:04:10  left ~0:09:44

On a terminal it stays quiet and the rich bar shows progress (``always=true`` logs the lines there too).
"""

from __future__ import annotations

import datetime
import logging
import math
import sys
import time
from typing import Any

import pytorch_lightning as pl

log = logging.getLogger(__name__)


def _clock(seconds: float) -> str:
    return str(datetime.timedelta(seconds=int(round(seconds))))


class EpochProgressLog(pl.Callback):
    """Log ``epoch, step, train loss, <monitor>, elapsed, estimated time left`` once per epoch (rank 0).

    Args:
        monitor: the metric the run monitors (``${monitor.metric}``); its latest value is shown.
        always: log on a terminal too (default: only when stdout is not a terminal).
    """

    def __init__(self, monitor: str | None = None, always: bool = False) -> None:
        self.monitor = monitor
        self.always = always
        self._start = 0.0
        self._start_step = 0
        self._loss_sum: Any = 0.0
        self._loss_count = 0

    @property
    def active(self) -> bool:
        return self.always or not sys.stdout.isatty()

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._start = time.perf_counter()
        self._start_step = trainer.global_step

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._loss_sum, self._loss_count = 0.0, 0

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        if loss is not None:
            # Summed on the device: no host sync per step.
            self._loss_sum = self._loss_sum + loss.detach()
            self._loss_count += 1

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not (self.active and trainer.is_global_zero):
            return
        log.info("%s", self.line(trainer))

    def line(self, trainer: pl.Trainer) -> str:
        """The progress line for the epoch that just ended."""
        elapsed = time.perf_counter() - self._start
        parts = [
            f"epoch {trainer.current_epoch + 1}"
            + (f"/{trainer.max_epochs}" if trainer.max_epochs and trainer.max_epochs > 0 else ""),
            f"step {trainer.global_step}",
        ]
        if self._loss_count:
            parts.append(f"train/loss {float(self._loss_sum) / self._loss_count:.4g}")
        value = trainer.callback_metrics.get(self.monitor) if self.monitor else None
        if value is not None:
            parts.append(f"{self.monitor} {float(value):.4g}")
        parts.append(f"elapsed {_clock(elapsed)}")
        left = self._time_left(trainer, elapsed)
        if left is not None:
            parts.append(f"left ~{_clock(left)}")
        return "  ".join(parts)

    def _time_left(self, trainer: pl.Trainer, elapsed: float) -> float | None:
        """Steps still planned at the pace so far (validation included); None when unknown.
        Early stopping may end the run sooner."""
        done = trainer.global_step - self._start_step
        try:
            total = float(trainer.estimated_stepping_batches)
        except Exception:  # noqa: BLE001 - an iterable loader of unknown length: no estimate
            return None
        if done <= 0 or not math.isfinite(total):
            return None
        return max(total - trainer.global_step, 0.0) * elapsed / done
