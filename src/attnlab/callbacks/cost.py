"""What a run costs, logged next to how good it is: ``cost/*`` metrics in every logger (so in the W&B
summary and, through the trainer's metrics, in ``metrics.json``).

=============================  ================================================================
``cost/params_total``          every parameter of the model
``cost/params_attention``      parameters of the attention block (the shared ``Attention`` module,
                               with its detection wrapper: projection, norm); 0 for ``none``
``cost/train_wall_s``          training wall time so far (validation included)
``cost/train_steps``           optimizer steps taken by this process (a resumed run counts anew)
``cost/steps_per_s``           optimizer steps per second of training-loop time (validation excluded)
``cost/train_<unit>_per_s``    ``tokens`` (target tokens, translation) or ``images`` (detection) per
                               second of training-loop time, summed over DDP ranks
``cost/peak_rss_mb``           peak resident memory from the start of training (max over ranks; see below)
``cost/peak_gpu_mem_mb``       ``torch.cuda.max_memory_allocated`` from the start of training (CUDA only)
``cost/test_ms_per_<example>`` test wall time per ``sentence`` / ``image``, batched as the test loader
                               batches (decoding or detection plus its metric update, no data loading)
=============================  ================================================================

Peaks are reset when training starts, so the jobs of a sequential sweep (one process) do not
inherit each other's peak: on Linux the kernel's high-water mark (``VmHWM``) is reset by writing
5 to ``/proc/self/clear_refs``; the data and model already loaded stay counted, since the mark
restarts from the current resident size. Where that is not possible the peak is the process's
whole lifetime (``getrusage``).

The task says what its batches hold through ``batch_units(batch) -> (examples, units)`` and the
``throughput_unit`` attribute; a task without them gets parameter, time and memory figures only.
"""

from __future__ import annotations

import resource
import sys
import time
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from torch import nn

_EXAMPLE = {"tokens": "sentence", "images": "image"}


_PROC_STATUS, _PROC_CLEAR_REFS = Path("/proc/self/status"), Path("/proc/self/clear_refs")


def _reset_peak_rss() -> bool:
    """Restart the kernel's high-water mark of resident memory from the current size (Linux >= 4.0)."""
    try:
        _PROC_CLEAR_REFS.write_text("5")
    except OSError:
        return False
    return True


def _peak_rss_mb() -> float:
    """Peak resident memory in MiB: ``VmHWM`` where the kernel has it, else ``getrusage``'s lifetime peak."""
    try:
        for line in _PROC_STATUS.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 2**10  # kB
    except (OSError, ValueError, IndexError):
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10  # bytes on macOS, KiB on Linux


def attention_parameters(model: nn.Module) -> int:
    """Parameters inside the attention block(s): the outermost ``Attention`` or ``SpatialSelfAttention``
    modules (shared parameters counted once)."""
    from attnlab.attention import Attention
    from attnlab.models.spatial_attention import SpatialSelfAttention

    seen: set[int] = set()
    count = 0
    for module in model.modules():
        if isinstance(module, (Attention, SpatialSelfAttention)):
            for p in module.parameters():
                if id(p) not in seen:
                    seen.add(id(p))
                    count += p.numel()
    return count


class CostRecorder(pl.Callback):
    """Log the ``cost/*`` figures of the module docstring: training ones at the end of every training
    epoch (the last one is the run's), test ones at the end of the test epoch."""

    def __init__(self) -> None:
        self._train_start = 0.0
        self._val_start: float | None = None
        self._val_s = 0.0
        self._start_step = 0
        self._units: Any = 0
        self._test_s = 0.0
        self._test_examples = 0
        self._test_batch_start = 0.0
        self._peaks_reset = False

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        # Once per run (fit, then test, share the peak): the run's own peak, not an earlier job's.
        if self._peaks_reset:
            return
        self._peaks_reset = True
        _reset_peak_rss()
        device = trainer.strategy.root_device  # the module may not be on it yet
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)

    # ------------------------------------------------------------------ training
    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._train_start = time.perf_counter()
        self._val_s = 0.0
        self._start_step = trainer.global_step
        self._units = 0

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        units = getattr(pl_module, "batch_units", None)
        if units is not None:
            # A device tensor for token counts: summed without a host sync per step.
            self._units = self._units + units(batch)[1]

    def on_validation_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # Validation inside fit (its time is not training-loop time); not sanity checks, not validate().
        if trainer.state.fn == "fit" and not trainer.sanity_checking:
            self._val_start = time.perf_counter()

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._val_start is not None:
            self._val_s += time.perf_counter() - self._val_start
            self._val_start = None

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        wall = time.perf_counter() - self._train_start
        loop_s = max(wall - self._val_s, 1e-9)
        steps = trainer.global_step - self._start_step
        self._log(
            pl_module,
            "mean",
            {
                "cost/params_total": sum(p.numel() for p in pl_module.parameters()),
                "cost/params_attention": attention_parameters(pl_module),
                "cost/train_steps": steps,
                "cost/steps_per_s": steps / loop_s,
            },
        )
        self._log(pl_module, "max", {"cost/train_wall_s": wall, **self._memory(pl_module)})
        unit = getattr(pl_module, "throughput_unit", None)
        if unit:
            self._log(pl_module, "sum", {f"cost/train_{unit}_per_s": float(self._units) / loop_s})

    # ------------------------------------------------------------------ test
    def on_test_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._test_s, self._test_examples = 0.0, 0

    def on_test_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int, dataloader_idx: int = 0
    ) -> None:
        self._sync(pl_module)
        self._test_batch_start = time.perf_counter()

    def on_test_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        self._sync(pl_module)
        self._test_s += time.perf_counter() - self._test_batch_start
        units = getattr(pl_module, "batch_units", None)
        if units is not None:
            self._test_examples += int(units(batch)[0])

    def on_test_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        example = _EXAMPLE.get(getattr(pl_module, "throughput_unit", ""), "example")
        if self._test_examples:
            self._log(pl_module, "mean", {f"cost/test_ms_per_{example}": 1000.0 * self._test_s / self._test_examples})
        self._log(pl_module, "max", self._memory(pl_module))

    # ------------------------------------------------------------------ helpers
    @staticmethod
    def _sync(pl_module: pl.LightningModule) -> None:
        if pl_module.device.type == "cuda":
            torch.cuda.synchronize(pl_module.device)

    @staticmethod
    def _memory(pl_module: pl.LightningModule) -> dict[str, float]:
        out = {"cost/peak_rss_mb": _peak_rss_mb()}
        if pl_module.device.type == "cuda":
            out["cost/peak_gpu_mem_mb"] = torch.cuda.max_memory_allocated(pl_module.device) / 2**20
        return out

    @staticmethod
    def _log(pl_module: pl.LightningModule, reduce: str, values: dict[str, float]) -> None:
        # sync_dist with the reduction that makes sense for each figure (totals summed, peaks maxed),
        # so DDP runs log one honest number and Lightning has nothing to warn about.
        for name, value in values.items():
            pl_module.log(name, float(value), on_step=False, on_epoch=True, sync_dist=True, reduce_fx=reduce)
