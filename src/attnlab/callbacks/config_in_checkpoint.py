"""Store the run's resolved config in every checkpoint, so a checkpoint alone says how it was made."""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl

from attnlab.runs.checkpoint_io import CONFIG_KEY as CHECKPOINT_KEY


class ConfigInCheckpoint(pl.Callback):
    """Adds ``checkpoint["attnlab_config"] = {"config": ..., "choices": ...}`` on save."""

    def __init__(self, config: dict[str, Any], choices: dict[str, str]) -> None:
        self.config = config
        self.choices = choices

    def on_save_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict) -> None:
        checkpoint[CHECKPOINT_KEY] = {"config": self.config, "choices": self.choices}
