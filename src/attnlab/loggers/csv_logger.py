"""Lightning's ``CSVLogger`` made to continue an existing ``metrics.csv``.

Lightning's writer starts with no known columns. When its process did not write the file's header
(a resumed run writing into the same run directory, or the test stage of ``ddp_spawn``, whose worker
processes get a fresh copy of the logger) the first new column makes it rewrite the file with only
the columns it knows, and ``csv.DictWriter`` then fails on the older rows' columns. Reading the
header the file already has fixes both and keeps every row written so far.
"""

from __future__ import annotations

import csv

from lightning_fabric.loggers.logger import rank_zero_experiment
from pytorch_lightning.loggers.csv_logs import CSVLogger, ExperimentWriter


class ContinuingExperimentWriter(ExperimentWriter):
    """An ``ExperimentWriter`` that knows the columns of a ``metrics.csv`` already on disk."""

    def __init__(self, log_dir: str) -> None:
        super().__init__(log_dir=log_dir)
        if self._fs.isfile(self.metrics_file_path):
            with self._fs.open(self.metrics_file_path, "r", newline="") as file:
                header = next(csv.reader(file), [])
            self.metrics_keys = sorted(set(header))

    def _check_log_dir_exists(self) -> None:
        # Continuing into an existing directory is the point here, not something to warn about.
        return None


class ContinuingCSVLogger(CSVLogger):
    """``CSVLogger`` whose writer continues an existing ``metrics.csv`` (see the module docstring)."""

    @property
    @rank_zero_experiment
    def experiment(self) -> ExperimentWriter:
        if self._experiment is not None:
            return self._experiment
        self._fs.makedirs(self.root_dir, exist_ok=True)
        self._experiment = ContinuingExperimentWriter(log_dir=self.log_dir)
        return self._experiment
