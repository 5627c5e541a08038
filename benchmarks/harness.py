"""Training jobs for the benchmark: the real config, datamodule, task and Trainer, timed per step.

:func:`prepare_job` composes ``conf/train.yaml`` (``hydra.compose``) and builds the datamodule with
``attnlab.cli.build`` -- what ``train.py`` runs. A job then trains a fixed number of steps

* with Lightning (:func:`run_lightning`): ``build_trainer`` from ``cfg.trainer`` (precision ``auto``
  resolved as in a run), ``logger=False``, no validation, one timing callback; or
* with a plain loop (:func:`run_plain`): the same task's own ``configure_optimizers`` (its schedule
  length from ``tasks/schedule.py``) and ``training_step``, the same batches, and
  ``zero_grad / training_step / backward / clip / step`` -- no Trainer.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import math
import time
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from benchmarks.machine import synchronize

TASK_EXPERIMENTS = {"translation": "experiment=translation", "detection": "experiment=detection"}


def tiny_overrides(task: str, workdir: Path) -> list[str]:
    """Overrides that make a task's default config tiny (tests). Detection data is generated under
    ``workdir``, never at the project's default root."""
    if task == "translation":
        return ["++data.n_train=256", "++data.n_val=16", "++data.n_test=16", "++data.max_len=12",
                "++data.batch_size=16", "++data.bucket_factor=4", "++model.net.emb_dim=16",
                "++model.net.hidden_dim=32", "++model.net.num_layers=1", "++attention.hidden_dim=16"]
    root = (Path(workdir) / "tiny_shapes").as_posix()
    return [f"++data.root={root}", f"++data.default_root={root}", "++data.synthetic.n_train=16",
            "++data.synthetic.n_val=4", "++data.synthetic.n_test=4", "++data.synthetic.image_size=64",
            "++data.synthetic.min_object_size=12", "++data.synthetic.max_object_size=30", "++data.image_size=64",
            "++data.batch_size=4", "++data.num_workers=0", "++model.net.min_size=64", "++model.net.max_size=64",
            "++model.net.small_cnn_widths=[8,16,32,64]", "++model.net.fpn_channels=32", "++attention.hidden_dim=16"]


def device_overrides(device: str) -> list[str]:
    """On a GPU the benchmark trains as ``trainer=gpu`` does."""
    return ["trainer=gpu", "data.num_workers=4"] if device == "cuda" else []


def compose_train_config(overrides: Sequence[str], scratch: Path) -> Any:
    """``conf/train.yaml`` with ``overrides``, outputs under ``scratch`` (never ``logs/``), resolved."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from omegaconf import OmegaConf

    from attnlab.project import config_dir, ensure_project_root_env

    ensure_project_root_env()
    where = Path(scratch).as_posix()
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        cfg = compose(config_name="train", overrides=[*overrides, f"paths.output_dir={where}",
                                                      f"paths.log_dir={where}", f"paths.work_dir={where}"])
    GlobalHydra.instance().clear()
    OmegaConf.resolve(cfg)  # no hydra:runtime outside @hydra.main; detached nodes need no root
    return cfg


@contextlib.contextmanager
def quiet_lightning() -> Iterator[None]:
    """Silence Lightning's banners and per-run warnings for a block."""
    names = ("pytorch_lightning", "lightning.pytorch", "lightning_fabric", "lightning.fabric", "attnlab")
    loggers = [logging.getLogger(n) for n in names]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


@dataclass
class RunTiming:
    """One training run: wall and CPU seconds of the steps after ``warmup`` (data loading included),
    ``first_seconds`` of the warm-up steps (compilation shows up there), what the timed steps
    processed, a fingerprint per step's batch, and the last loss."""

    mode: str
    steps: int
    warmup: int
    seconds: float
    cpu_seconds: float = math.nan
    first_seconds: float = math.nan
    items: int = 0
    tokens: int = 0
    src_tokens: int = 0
    fingerprints: list[str] = field(default_factory=list)
    final_loss: float = math.nan

    @property
    def timed_steps(self) -> int:
        return self.steps - self.warmup

    @property
    def steps_per_second(self) -> float:
        return self.timed_steps / self.seconds if self.seconds > 0 else math.nan

    @property
    def steps_per_cpu_second(self) -> float:
        return self.timed_steps / self.cpu_seconds if self.cpu_seconds > 0 else math.nan


class _Clock:
    """Per-step bookkeeping shared by both loops: fingerprints, counts, timestamps."""

    def __init__(self, job: TrainingJob, steps: int, warmup: int) -> None:
        if warmup < 1 or steps <= warmup:
            raise ValueError(f"need 1 <= warmup < steps, got warmup={warmup}, steps={steps}")
        self.job, self.steps, self.warmup = job, steps, warmup
        self.fingerprints: list[str] = []
        self.items, self.tokens, self.src_tokens = 0, 0, 0
        self.t = [time.perf_counter(), math.nan, math.nan]
        self.c = [math.nan, math.nan]
        self.loss: Any = None

    def step_done(self, batch: Any, loss: Any) -> None:
        step = len(self.fingerprints)
        self.fingerprints.append(self.job.fingerprint(batch))
        if step >= self.warmup:
            n, tok, src = self.job.count(batch)
            self.items, self.tokens, self.src_tokens = self.items + n, self.tokens + tok, self.src_tokens + src
        if step in (self.warmup - 1, self.steps - 1):
            synchronize(self.job.device)
            i = 1 if step == self.warmup - 1 else 2
            self.t[i], self.c[i - 1] = time.perf_counter(), time.process_time()
            self.loss = loss

    def timing(self, mode: str) -> RunTiming:
        if len(self.fingerprints) < self.steps:
            raise RuntimeError(f"{mode} stopped after {len(self.fingerprints)} of {self.steps} steps")
        return RunTiming(mode, self.steps, self.warmup, self.t[2] - self.t[1], self.c[1] - self.c[0],
                         self.t[1] - self.t[0], self.items, int(self.tokens), int(self.src_tokens),
                         self.fingerprints, float(self.loss.detach()) if self.loss is not None else math.nan)


@dataclass
class TrainingJob:
    """A task's composed config and its datamodule, set up once; build with :func:`prepare_job`."""

    task: str
    cfg: Any
    datamodule: Any
    device: str
    scratch: Path
    seed: int
    pad_id: int = 0

    def build_task(self) -> Any:
        """A fresh task, seeded so that every call gives the same initial weights (compiled when
        ``compile.enabled``)."""
        import pytorch_lightning as pl

        from attnlab.cli.build import build_task

        pl.seed_everything(self.seed, workers=True, verbose=False)
        with quiet_lightning():
            return build_task(self.cfg, self.datamodule)

    @property
    def precision(self) -> str:
        from attnlab.cli.precision import resolved_precision

        return resolved_precision(self.cfg.trainer.get("accelerator", "cpu"), self.cfg.trainer.precision)[0]

    def autocast(self) -> Any:
        """The autocast of the trainer's precision (bf16-mixed -> bf16 autocast)."""
        import torch

        if self.precision in ("bf16-mixed", "bf16"):
            return torch.autocast(device_type=self.device, dtype=torch.bfloat16)
        if self.precision not in ("32-true", "32", "64-true"):
            raise NotImplementedError(f"the plain loop does not mirror precision={self.precision!r}")
        return contextlib.nullcontext()

    def count(self, batch: Any) -> tuple[int, Any, Any]:
        """Items in a batch and its target / source token counts (device tensors: no sync)."""
        if self.task == "translation":
            return int(batch["src"].shape[0]), (batch["tgt_out"] != self.pad_id).sum(), batch["src_lengths"].sum()
        return len(batch[0]), 0, 0

    def fingerprint(self, batch: Any) -> str:
        """A short hash of a batch's identity from host-side data only (no device sync)."""
        if self.task == "translation":
            key = "\n".join(batch["src_text"]) if "src_text" in batch else str(tuple(batch["src"].shape))
        else:
            key = ",".join(str(int(t["image_id"])) for t in batch[1])
        return hashlib.sha1(key.encode()).hexdigest()[:12]


def prepare_job(task: str, *, device: str = "cpu", seed: int = 12345, scratch: Path,
                overrides: Sequence[str] = ()) -> TrainingJob:
    """Compose ``experiment=<task>`` (+ ``overrides``; ``trainer=gpu`` on cuda) and set up its datamodule."""
    from attnlab.cli.build import build_datamodule

    if task not in TASK_EXPERIMENTS:
        raise ValueError(f"task must be one of {sorted(TASK_EXPERIMENTS)}, got {task!r}")
    cfg = compose_train_config([TASK_EXPERIMENTS[task], f"seed={seed}", *device_overrides(device), *overrides],
                               scratch)
    with quiet_lightning():
        datamodule = build_datamodule(cfg)
    pad_id = int(datamodule.model_kwargs().get("pad_id", 0)) if task == "translation" else 0
    return TrainingJob(task, cfg, datamodule, device, Path(scratch), seed, pad_id)


def run_lightning(job: TrainingJob, steps: int, warmup: int) -> RunTiming:
    """``steps`` steps of ``trainer.fit`` with a Trainer from ``cfg.trainer`` (``build_trainer``).

    Left out, to time training steps alone: logger, checkpointing, early stopping, progress bar,
    LR monitor, media, validation, model summary. Kept: accelerator, precision, clipping,
    accumulation, ``log_every_n_steps``, deterministic and the task's ``self.log`` calls.
    """
    import pytorch_lightning as pl

    from attnlab.cli.build import build_trainer

    clock = _Clock(job, steps, warmup)

    class StepClock(pl.Callback):
        def on_train_batch_end(self, trainer: Any, module: Any, outputs: Any, batch: Any, idx: int) -> None:
            clock.step_done(batch, outputs["loss"] if isinstance(outputs, dict) else outputs)

    model = job.build_task()
    with quiet_lightning():
        trainer = build_trainer(job.cfg, logger=False, callbacks=[StepClock()], max_steps=steps, max_epochs=-1,
                                min_epochs=None, limit_train_batches=1.0, limit_val_batches=0,
                                num_sanity_val_steps=0, enable_checkpointing=False, enable_progress_bar=False,
                                enable_model_summary=False, default_root_dir=str(job.scratch), fast_dev_run=False)
        pl.seed_everything(job.seed + 1, workers=True, verbose=False)  # same RNG at batch 1 as the plain loop
        clock.t[0] = time.perf_counter()
        trainer.fit(model, datamodule=job.datamodule)
    return clock.timing("lightning")


def _set_epoch(loader: Any, epoch: int) -> None:
    """``set_epoch`` where Lightning calls it (sampler, batch sampler and its sampler)."""
    batch_sampler = getattr(loader, "batch_sampler", None)
    objs = {id(o): o for o in (getattr(loader, "sampler", None), batch_sampler, getattr(batch_sampler, "sampler", None))
            if o is not None and callable(getattr(o, "set_epoch", None))}
    for obj in objs.values():
        obj.set_epoch(epoch)


def run_plain(job: TrainingJob, steps: int, warmup: int) -> RunTiming:
    """``steps`` steps of a plain loop over ``datamodule.train_dataloader()`` calling the task's own
    ``configure_optimizers`` and ``training_step`` (its ``self.log`` calls return at once: the
    stand-in trainer is ``barebones``), with autocast, clipping and per-step scheduling as configured."""
    import pytorch_lightning as pl
    import torch
    from lightning_fabric.utilities.apply_func import move_data_to_device

    if int(job.cfg.trainer.get("accumulate_grad_batches") or 1) != 1:
        raise NotImplementedError("the plain loop mirrors accumulate_grad_batches=1 only")
    clock = _Clock(job, steps, warmup)
    model = job.build_task().to(job.device).train()
    model.trainer = SimpleNamespace(barebones=True, estimated_stepping_batches=steps, max_epochs=1)
    config = model.configure_optimizers()
    optimizer = config["optimizer"] if isinstance(config, dict) else config
    scheduler = config.get("lr_scheduler", {}) if isinstance(config, dict) else {}
    clip = job.cfg.trainer.get("gradient_clip_val")
    params = [p for p in model.parameters() if p.requires_grad]
    loader = job.datamodule.train_dataloader()
    pl.seed_everything(job.seed + 1, workers=True, verbose=False)
    clock.t[0] = time.perf_counter()
    with quiet_lightning():
        for epoch in range(steps):
            _set_epoch(loader, epoch)
            for batch in loader:
                batch = move_data_to_device(batch, job.device)
                optimizer.zero_grad(set_to_none=True)
                with job.autocast():
                    loss = model.training_step(batch, len(clock.fingerprints))
                loss.backward()
                if clip:
                    torch.nn.utils.clip_grad_norm_(params, float(clip))
                optimizer.step()
                if scheduler and scheduler.get("interval", "step") == "step":
                    scheduler["scheduler"].step()
                clock.step_done(batch, loss)
                if len(clock.fingerprints) == steps:
                    return clock.timing("plain")
    return clock.timing("plain")
