"""What both tasks share: hyper-parameter handling, the optimizer set-up and media logging.

A task (:class:`~attnlab.tasks.translation.TranslationTask`, :class:`~attnlab.tasks.detection.DetectionTask`)
keeps only what is its own: its model, loss, metrics, decoding and what its media show. Through this
base it gets:

* :meth:`TaskModule.save_task_hyperparameters`: the constructor arguments as plain data (no OmegaConf
  nodes, the optimizer and scheduler as ``{"_target_": ...}`` dicts), so that a checkpoint loads with
  ``torch.load(weights_only=True)``; the checks every task needs;
* :meth:`TaskModule.configure_optimizers` from those dicts (the schedule length from the trainer);
* :meth:`TaskModule.log_media`: one way to send a task's :meth:`~TaskModule.media` to W&B, and the
  one place where a media failure is caught (pictures must never cost a training run).
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Mapping, Sequence
from typing import Any, cast

import pytorch_lightning as pl
from lightning_fabric.utilities.data import AttributeDict

from attnlab.plain import plain
from attnlab.tasks.optim_factories import factory_to_config
from attnlab.tasks.schedule import configure_from_hparams

__all__ = ["SCHEDULER_INTERVALS", "TaskModule"]

log = logging.getLogger(__name__)

SCHEDULER_INTERVALS = ("step", "epoch")


class TaskModule(pl.LightningModule):
    """Base of the task LightningModules (see the module docstring)."""

    #: Hyper-parameters ``eval.py`` may change on a trained model (``model.beam_size=10``): read at use time.
    EVAL_SETTINGS: tuple[str, ...] = ()
    #: What training throughput counts (``batch_units``), for the cost figures.
    throughput_unit: str = "examples"

    @property
    def hparams(self) -> AttributeDict:
        """Lightning's hyper-parameters, typed as what :meth:`save_task_hyperparameters` stores (a dict,
        which Lightning keeps as an ``AttributeDict``), so that ``self.hparams.beam_size`` type-checks."""
        return cast(AttributeDict, super().hparams)

    def save_task_hyperparameters(self, init_locals: Mapping[str, Any]) -> None:
        """Check and store the constructor's arguments: ``locals()`` of ``__init__``, after any it normalises.

        ``attention`` and ``net`` become plain dicts, ``optimizer`` / ``scheduler`` plain config dicts
        (a ``functools.partial`` from Hydra's ``_partial_: true``, or a dict read back from a
        checkpoint), and ``scheduler_interval`` must be ``step`` or ``epoch``. ``logger=False``: the
        CLI logs the resolved config once; the hyper-parameters would repeat it, flattened (and the
        translation task's hold both tokenizers, hundreds of KB).
        """
        names = [p for p in inspect.signature(type(self).__init__).parameters if p != "self"]
        hparams = {name: plain(init_locals[name]) for name in names if name in init_locals}
        hparams["attention"] = dict(hparams["attention"])
        hparams["net"] = dict(hparams.get("net") or {})
        interval = hparams.get("scheduler_interval")
        if interval not in SCHEDULER_INTERVALS:
            raise ValueError(f"scheduler_interval must be 'step' or 'epoch', got {interval!r}")
        hparams["optimizer"] = factory_to_config(hparams.get("optimizer"), "optimizer")
        hparams["scheduler"] = factory_to_config(hparams.get("scheduler"), "scheduler")
        self.save_hyperparameters(hparams, logger=False)

    def configure_optimizers(self) -> Any:
        # Frozen layers (a pretrained backbone's) have requires_grad=False: leave them out.
        params = [p for p in self.parameters() if p.requires_grad]
        return configure_from_hparams(self.hparams, params, self.trainer, type(self).__name__)

    # ------------------------------------------------------------------ media
    def media(self) -> dict[str, Any]:
        """What to show in W&B after a validation epoch: ``{key: wandb.Image list | wandb.Table}``."""
        return {}

    def log_media(self, wandb_loggers: Sequence[Any]) -> None:
        """Log :meth:`media` to every given :class:`~pytorch_lightning.loggers.WandbLogger` (called by
        :class:`attnlab.callbacks.MediaLogger` on rank 0 after validation). Never raises."""
        if not wandb_loggers:
            return
        try:
            payload = self.media()
            if payload:
                for logger in wandb_loggers:
                    logger.log_metrics(payload, step=int(self.global_step))
        except Exception as exc:  # noqa: BLE001 - media must never cost a training run
            log.warning("%s media logging failed (training goes on): %s", type(self).__name__, exc)
