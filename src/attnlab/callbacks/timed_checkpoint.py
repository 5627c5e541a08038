"""``last.ckpt`` every N minutes of training, so a long first epoch still leaves something to resume.

The end-of-epoch ``last.ckpt`` (``callbacks.last_checkpoint``) is all a run killed outright
(SIGKILL, out of memory, a lost node) leaves behind; on a full-size corpus an epoch can take hours,
and a run killed in its first epoch used to leave no checkpoint at all. This writes the same file
from inside the epoch, on Lightning's own timer (``ModelCheckpoint(train_time_interval=...)``).
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from pytorch_lightning.callbacks import ModelCheckpoint


class TimedLastCheckpoint(ModelCheckpoint):
    """Write ``<dirpath>/<filename>.ckpt`` whenever ``minutes`` of training have passed since the last one.

    A checkpoint written mid-epoch resumes correctly (``ckpt_path=<run>/checkpoints/last.ckpt``) but
    not step for step: the position inside the epoch's data is not saved.
    """

    def __init__(self, dirpath: str | Path, minutes: float = 10.0, filename: str = "last") -> None:
        if not minutes or minutes <= 0:
            raise ValueError(f"callbacks.time_checkpoint.minutes must be > 0, got {minutes} (null switches it off)")
        super().__init__(
            dirpath=dirpath,
            filename=filename,
            monitor=None,
            save_top_k=1,
            train_time_interval=timedelta(minutes=float(minutes)),
            enable_version_counter=False,
        )
