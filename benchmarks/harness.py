"""Training jobs timed per step: :func:`prepare_job` composes the config and datamodule as ``train.py`` does;
:func:`run_lightning` trains with ``build_trainer``, :func:`run_plain` in a plain loop over the task's own methods."""

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
from benchmarks.settings import BenchSettings

#: Each task's default config made tiny (tests); ``{root}``: detection data generated under the workdir.
_TINY = {
    "translation": "data.n_train=256 data.n_val=16 data.n_test=16 data.max_len=12 data.batch_size=16 "
    "data.bucket_factor=4 model.net.emb_dim=16 model.net.hidden_dim=32 model.net.num_layers=1 attention.hidden_dim=16",
    "detection": "data.root={root} data.default_root={root} data.synthetic.n_train=16 data.synthetic.n_val=4 "
    "data.synthetic.n_test=4 data.synthetic.image_size=64 data.synthetic.min_object_size=12 "
    "data.synthetic.max_object_size=30 data.image_size=64 data.batch_size=4 data.num_workers=0 model.net.min_size=64 "
    "model.net.max_size=64 model.net.small_cnn_widths=[8,16,32,64] model.net.fpn_channels=32 attention.hidden_dim=16",
}
_OFF = ("logger", "enable_checkpointing", "enable_progress_bar", "enable_model_summary", "fast_dev_run")
#: Trainer arguments that leave training steps (and the task's own ``self.log``) alone to time.
TIMING_ONLY: dict[str, Any] = dict.fromkeys(_OFF, False) | {"min_epochs": None, "num_sanity_val_steps": 0}


def tiny_overrides(task: str, workdir: Path) -> list[str]:
    """A task's default config made tiny (tests); detection data generated under ``workdir``."""
    return [f"++{o}" for o in _TINY[task].format(root=(Path(workdir) / "tiny_shapes").as_posix()).split()]


def device_overrides(device: str, task: str = "") -> list[str]:
    """On a GPU the benchmark trains as ``trainer=gpu`` does (decoding JPEGs in workers for detection)."""
    return ["trainer=gpu", *(["data.num_workers=4"] if task == "detection" else [])] if device == "cuda" else []


def mode_overrides(settings: BenchSettings, task: str) -> list[str]:
    """Tiny sizes in ``--tiny`` mode and the device's trainer: what every section adds to a task's config."""
    return (tiny_overrides(task, settings.workdir) if settings.tiny else []) + device_overrides(settings.device, task)


def compose_train_config(overrides: Sequence[str], scratch: Path) -> Any:
    """``conf/train.yaml`` with ``overrides``, outputs under ``scratch`` (never ``logs/``), resolved."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from omegaconf import OmegaConf

    from attnlab.project import config_dir, ensure_project_root_env

    ensure_project_root_env()
    outputs = [f"paths.{k}={Path(scratch).as_posix()}" for k in ("output_dir", "log_dir", "work_dir")]
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        cfg = compose("train", [*overrides, *outputs])
    GlobalHydra.instance().clear()
    OmegaConf.resolve(cfg)
    return cfg


@contextlib.contextmanager
def quiet_lightning() -> Iterator[None]:
    """No log records below ERROR and no warnings (Lightning's banners, per-run hints) in a block."""
    previous = logging.root.manager.disable
    logging.disable(logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logging.disable(previous)


@dataclass
class RunTiming:
    """One run: wall / CPU seconds of the steps after ``warmup`` (data loading included), of the warm-up
    (compilation shows there), what the timed steps processed, a hash per batch."""

    mode: str
    steps: int
    warmup: int
    seconds: float = math.nan
    cpu_seconds: float = math.nan
    first_seconds: float = math.nan
    items: int = 0
    tokens: Any = 0
    fingerprints: list[str] = field(default_factory=list)
    final_loss: float = math.nan

    steps_per_second = property(lambda self: (self.steps - self.warmup) / self.seconds)
    steps_per_cpu_second = property(lambda self: (self.steps - self.warmup) / self.cpu_seconds)

    def done(self) -> RunTiming:
        if len(self.fingerprints) < self.steps:
            raise RuntimeError(f"{self.mode} stopped after {len(self.fingerprints)} of {self.steps} steps")
        return self


@dataclass
class TrainingJob:
    """A task's composed config and its datamodule, set up once (:func:`prepare_job`)."""

    task: str
    cfg: Any
    datamodule: Any
    device: str
    scratch: Path
    seed: int
    pad_id: int = 0

    def build_task(self) -> Any:
        """A fresh task, identically seeded every call (compiled when ``compile.enabled``)."""
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
        """The autocast Lightning applies for the trainer's precision."""
        import torch

        if self.precision not in ("bf16-mixed", "32-true"):
            raise NotImplementedError(f"the plain loop mirrors bf16-mixed and 32-true, not {self.precision!r}")
        return torch.autocast(self.device, dtype=torch.bfloat16, enabled=self.precision == "bf16-mixed")

    def counts(self, batch: Any) -> tuple[int, Any]:
        """(items, target tokens -- a device tensor, no host sync) of a batch."""
        if self.task == "translation":
            return int(batch["src"].shape[0]), (batch["tgt_out"] != self.pad_id).sum()
        return len(batch[0]), 0

    def tick(self, clock: RunTiming, batch: Any, loss: Any, t0: float) -> None:
        """Book one finished step: its batch's hash, what timed steps processed, timestamps."""
        step, translation = len(clock.fingerprints), self.task == "translation"
        key = "\n".join(batch["src_text"]) if translation else ",".join(str(int(t["image_id"])) for t in batch[1])
        clock.fingerprints.append(hashlib.sha1(key.encode()).hexdigest()[:12])
        if step >= clock.warmup:
            items, tokens = self.counts(batch)
            clock.items, clock.tokens = clock.items + items, clock.tokens + tokens
        if step in (clock.warmup - 1, clock.steps - 1):
            synchronize(self.device)
            now, cpu = time.perf_counter(), time.process_time()
            if step == clock.warmup - 1:
                clock.first_seconds, clock.seconds, clock.cpu_seconds = now - t0, -now, -cpu
            else:
                clock.seconds, clock.cpu_seconds = clock.seconds + now, clock.cpu_seconds + cpu
                clock.tokens, clock.final_loss = int(clock.tokens), float(loss)


def prepare_job(
    task: str, *, device: str = "cpu", seed: int = 12345, scratch: Path, overrides: Sequence[str] = ()
) -> TrainingJob:
    """Compose ``experiment=<task>`` (+ ``overrides``; ``trainer=gpu`` on cuda) and set up its datamodule."""
    from attnlab.cli.build import build_datamodule

    head = [f"experiment={task}", f"seed={seed}", *device_overrides(device, task)]
    cfg = compose_train_config([*head, *overrides], scratch)
    with quiet_lightning():
        datamodule = build_datamodule(cfg)
    pad_id = int(datamodule.model_kwargs().get("pad_id", 0)) if task == "translation" else 0
    return TrainingJob(task, cfg, datamodule, device, Path(scratch), seed, pad_id)


def job_for(settings: BenchSettings, task: str, name: str, overrides: Sequence[str] = ()) -> TrainingJob:
    """:func:`prepare_job` for this run's device and seed, tiny in ``--tiny`` mode, in ``settings.scratch(name)``."""
    extra = [*(tiny_overrides(task, settings.workdir) if settings.tiny else []), *overrides]
    return prepare_job(
        task, device=settings.device, seed=settings.seed, scratch=settings.scratch(name), overrides=extra
    )


def run_lightning(job: TrainingJob, steps: int, warmup: int) -> RunTiming:
    """``steps`` steps of ``trainer.fit`` without logger, checkpoints, callbacks, validation; with the
    precision, clipping, accumulation and the task's ``self.log`` calls."""
    import pytorch_lightning as pl

    from attnlab.cli.build import build_trainer

    clock, t0 = RunTiming("lightning", steps, warmup), [0.0]

    class StepClock(pl.Callback):
        def on_train_batch_end(self, trainer: Any, module: Any, outputs: Any, batch: Any, idx: int) -> None:
            job.tick(clock, batch, outputs["loss"] if isinstance(outputs, dict) else outputs, t0[0])

    model = job.build_task()
    with quiet_lightning():
        bounds = {"max_steps": steps, "max_epochs": -1, "limit_train_batches": 1.0, "limit_val_batches": 0}
        trainer = build_trainer(
            job.cfg, **TIMING_ONLY, **bounds, callbacks=[StepClock()], default_root_dir=str(job.scratch)
        )
        pl.seed_everything(job.seed + 1, workers=True, verbose=False)  # same RNG at batch 1 as the plain loop
        t0[0] = time.perf_counter()
        trainer.fit(model, datamodule=job.datamodule)
    return clock.done()


def run_plain(job: TrainingJob, steps: int, warmup: int) -> RunTiming:
    """``steps`` steps of a plain loop: the task's ``configure_optimizers`` and ``training_step`` (``self.log``
    is a no-op: the stand-in trainer is ``barebones``), autocast, clipping, the per-step scheduler, ``set_epoch``."""
    import pytorch_lightning as pl
    import torch
    from lightning_fabric.utilities.apply_func import move_data_to_device

    if int(job.cfg.trainer.get("accumulate_grad_batches") or 1) != 1:
        raise NotImplementedError("the plain loop mirrors accumulate_grad_batches=1 only")
    clock = RunTiming("plain", steps, warmup)
    model = job.build_task().to(job.device).train()
    model.trainer = SimpleNamespace(barebones=True, estimated_stepping_batches=steps, max_epochs=1)
    config = model.configure_optimizers()
    optimizer = config["optimizer"] if isinstance(config, dict) else config
    scheduler = config.get("lr_scheduler", {}) if isinstance(config, dict) else {}
    clip, params = job.cfg.trainer.get("gradient_clip_val"), [p for p in model.parameters() if p.requires_grad]
    loader = job.datamodule.train_dataloader()
    found: tuple[Any, ...] = (loader.sampler, loader.batch_sampler, getattr(loader.batch_sampler, "sampler", None))
    samplers = list({id(s): s for s in found if callable(getattr(s, "set_epoch", None))}.values())
    pl.seed_everything(job.seed + 1, workers=True, verbose=False)
    t0 = time.perf_counter()
    with quiet_lightning():
        for epoch in range(steps):
            for sampler in samplers:
                sampler.set_epoch(epoch)
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
                job.tick(clock, batch, loss, t0)
                if len(clock.fingerprints) == steps:
                    return clock
    return clock.done()
