"""Lightning's ``CSVLogger`` made to continue an existing ``metrics.csv``.

Lightning's writer starts with no known columns. When its process did not write the file's header
(a resumed run writing into the same run directory, or the test stage of ``ddp_spawn``, whose worker
processes get a fresh copy of the logger) the first new column makes it rewrite the file with only
the columns it knows, and ``csv.DictWriter`` then fails on the older rows' columns. Reading the
header the file already has fixes both and keeps every row written so far.
"""

from __future__ import annotations

import csv
from typing import TYPE_CHECKING

from lightning_fabric.loggers.logger import rank_zero_experiment
from pytorch_lightning.loggers.csv_logs import CSVLogger, ExperimentWriter

if TYPE_CHECKING:  # the type Lightning's own CSVLogger.experiment declares (and stores in _experiment)
    from lightning_fabric.loggers.csv_logs import _ExperimentWriter


class ContinuingExperimentWriter(ExperimentWriter):
    """An ``ExperimentWriter`` that always writes with the columns the file on disk already has."""

    def _header_on_disk(self) -> list[str] | None:
        if not self._fs.isfile(self.metrics_file_path):
            return None
        with self._fs.open(self.metrics_file_path, "r", newline="") as file:
            return next(csv.reader(file), [])

    def save(self) -> None:
        # Checked at every save, not once: under ddp_spawn the writer is pickled into each stage's
        # workers, so the copy that writes may know fewer columns than the file has.
        header = self._header_on_disk() if self.metrics else None
        if header is not None:
            columns = sorted(set(header) | set(self.metrics_keys) | set().union(*self.metrics))
            if columns != header:
                self._rewrite_with_new_header(columns)
            self.metrics_keys = columns
        super().save()

    def _check_log_dir_exists(self) -> None:
        # Continuing into an existing directory is the point here, not something to warn about.
        return None


class ContinuingCSVLogger(CSVLogger):
    """``CSVLogger`` whose writer continues an existing ``metrics.csv`` (see the module docstring)."""

    @property
    @rank_zero_experiment
    def experiment(self) -> _ExperimentWriter:
        if self._experiment is not None:
            return self._experiment
        self._fs.makedirs(self.root_dir, exist_ok=True)
        self._experiment = ContinuingExperimentWriter(log_dir=self.log_dir)
        return self._experiment
