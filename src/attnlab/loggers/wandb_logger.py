"""Lightning's ``WandbLogger`` without the arguments wandb 0.31 warns about.

Lightning passes ``anonymous=None`` to ``wandb.init`` whatever the user asked for, and wandb 0.31
prints ``The anonymous setting has no effect and will be removed`` for any value it is given, so
every run started with a warning. Dropping the argument changes nothing else: wandb ignores it.
"""

from __future__ import annotations

from typing import Any

from pytorch_lightning.loggers.wandb import WandbLogger as _LightningWandbLogger

# wandb.init() arguments that Lightning always sets and wandb 0.31 only warns about.
_NO_EFFECT_INIT_ARGS = ("anonymous",)


class WandbLogger(_LightningWandbLogger):
    """``pytorch_lightning.loggers.WandbLogger`` whose ``wandb.init`` call gets no no-effect arguments."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for key in _NO_EFFECT_INIT_ARGS:
            if self._wandb_init.get(key) is None:
                self._wandb_init.pop(key, None)
