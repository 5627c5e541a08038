"""Keep each run's test-split outputs next to its ``metrics.json`` (see :mod:`attnlab.runs.test_outputs`)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytorch_lightning as pl

log = logging.getLogger(__name__)


class TestOutputsWriter(pl.Callback):
    """After the test epoch, write ``pl_module.test_outputs()`` (translation hypotheses in reference
    order; detection COCO results in the data set's ids) to ``dirpath``.

    Runs before the task's own ``on_test_epoch_end`` (Lightning calls callbacks first), while the
    test metric still holds the detections. Every rank takes part (gathering is collective); rank 0
    writes. A failure to write is a warning: the run and its metrics matter more.
    """

    __test__ = False  # not a pytest test class, whatever its name says

    def __init__(self, dirpath: str | Path) -> None:
        self.dirpath = Path(dirpath)

    def on_test_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        collect = getattr(pl_module, "test_outputs", None)
        if collect is None:
            return
        outputs = collect()
        if not trainer.is_global_zero:
            return
        from attnlab.runs.test_outputs import write_test_outputs

        try:
            path = write_test_outputs(self.dirpath, outputs)
        except OSError as exc:
            log.warning("Test outputs could not be written to %s: %s", self.dirpath, exc)
            return
        log.info("Test outputs (%s) kept in %s", outputs.get("task"), path.parent)
