"""Training jobs for the benchmark: one config, one datamodule, and two ways to train it.

:func:`prepare_job` composes the real Hydra config (``conf/train.yaml`` through
``hydra.compose``), builds the datamodule once (as ``attnlab.train.train`` does) and knows how to
build a fresh, identically seeded task. A job then trains for a fixed number of steps either

* with Lightning (:func:`run_lightning`): a ``pl.Trainer`` instantiated from ``cfg.trainer`` like
  ``train.py`` does, with ``logger=False`` and one tiny timing callback, or
* with a plain PyTorch loop (:func:`run_plain`): the same task object class, the same optimizer
  (and scheduler) partials, the same batches from the same DataLoader, and
  ``zero_grad / forward / loss / backward / clip / step``.

Both return a :class:`RunTiming`: the wall time of the steps after the warm-up ones (data loading
included), what those steps processed (items, tokens) and a fingerprint of every batch so that the
benchmark can check the two loops saw the same batches in the same order.
"""

from __future__ import annotations

import contextlib
import hashlib
import inspect
import logging
import math
import time
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "TASK_EXPERIMENTS",
    "RunTiming",
    "TrainingJob",
    "compose_train_config",
    "prepare_job",
    "quiet_lightning",
    "run_lightning",
    "run_plain",
    "tiny_overrides",
    "to_device",
]

log = logging.getLogger(__name__)

#: The experiment option that sets up each task.
TASK_EXPERIMENTS = {"translation": "experiment=translation", "detection": "experiment=detection"}


def tiny_overrides(task: str, workdir: Path) -> list[str]:
    """Overrides that make a task's default config tiny (tests): small data, small model, small images.

    Detection data is generated under ``workdir`` (``data.root`` *and* ``data.default_root`` point
    there), never at the project's default root, whose generated set other runs use.
    """
    if task == "translation":
        return [
            "++data.n_train=256", "++data.n_val=16", "++data.n_test=16", "++data.max_len=12",
            "++data.batch_size=16", "++data.bucket_factor=4",
            "++model.net.emb_dim=16", "++model.net.hidden_dim=32", "++model.net.num_layers=1",
            "++attention.hidden_dim=16",
        ]
    root = (Path(workdir) / "tiny_shapes").as_posix()
    return [
        f"++data.root={root}", f"++data.default_root={root}",
        "++data.synthetic.n_train=16", "++data.synthetic.n_val=4", "++data.synthetic.n_test=4",
        "++data.synthetic.image_size=64", "++data.synthetic.min_object_size=12",
        "++data.synthetic.max_object_size=30", "++data.image_size=64", "++data.batch_size=4",
        "++data.num_workers=0",
        "++model.net.min_size=64", "++model.net.max_size=64",
        "++model.net.small_cnn_widths=[8,16,32,64]", "++model.net.fpn_channels=32",
        "++attention.hidden_dim=16",
    ]


def compose_train_config(overrides: Sequence[str], scratch: Path, config_dir: Path | None = None) -> Any:
    """``conf/train.yaml`` composed with ``overrides`` through ``hydra.compose``.

    Run outputs (``paths.*``) go to ``scratch``: a composed config outside ``@hydra.main`` has no
    ``hydra:runtime`` to resolve them from, and the benchmark must not write into ``logs/``.
    """
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from omegaconf import OmegaConf

    from attnlab.project import config_dir as default_config_dir
    from attnlab.project import ensure_project_root_env

    ensure_project_root_env()
    conf = Path(config_dir) if config_dir is not None else default_config_dir()
    scratch = Path(scratch)
    paths = [
        f"paths.output_dir={scratch.as_posix()}",
        f"paths.log_dir={scratch.as_posix()}",
        f"paths.work_dir={scratch.as_posix()}",
    ]
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(conf), version_base="1.3"):
        cfg = compose(config_name="train", overrides=[*overrides, *paths])
    GlobalHydra.instance().clear()
    # Resolved up front: instantiate_component copies a node out of the tree (OmegaConf.masked_copy),
    # after which interpolations such as ${paths.cache_dir} have no root to resolve against.
    OmegaConf.resolve(cfg)
    return cfg


@contextlib.contextmanager
def quiet_lightning() -> Iterator[None]:
    """Silence Lightning's info banners and per-run warnings (few workers, no logger ...) for a block."""
    loggers = [logging.getLogger(n) for n in ("pytorch_lightning", "lightning.pytorch", "lightning_fabric",
                                              "lightning.fabric")]
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


def to_device(obj: Any, device: Any) -> Any:
    """Tensors in nested dicts/lists/tuples moved to ``device`` (other leaves kept), like Lightning does."""
    import torch

    if isinstance(obj, torch.Tensor):
        return obj.to(device, non_blocking=True)
    if isinstance(obj, Mapping):
        return {k: to_device(v, device) for k, v in obj.items()}
    if isinstance(obj, tuple):
        return tuple(to_device(v, device) for v in obj)
    if isinstance(obj, list):
        return [to_device(v, device) for v in obj]
    return obj


@dataclass
class RunTiming:
    """What one training run measured.

    Attributes:
        mode: ``lightning`` or ``plain``.
        steps: optimizer steps run in total (warm-up included).
        warmup: leading steps excluded from the timing (compilation of kernels, allocator warm-up,
            dataloader workers starting, Lightning's fit set-up).
        seconds: wall time from the end of the last warm-up step to the end of the last step.
        cpu_seconds: CPU time of this process (all its threads) over the same span: less sensitive
            than wall time to other processes competing for the cores.
        items: examples in the timed steps (sentence pairs or images).
        tokens: target tokens (non-pad ``tgt_out``) in the timed steps (translation; 0 otherwise).
        src_tokens: source tokens in the timed steps (translation; 0 otherwise).
        fingerprints: one short hash per step of the batch's identity (texts or image ids).
        final_loss: the last step's loss (a sanity check that both loops trained the same thing).
    """

    mode: str
    steps: int
    warmup: int
    seconds: float
    cpu_seconds: float = math.nan
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


@dataclass
class TrainingJob:
    """A task's composed config, its datamodule (set up once) and how to train one step of it.

    Build with :func:`prepare_job`.
    """

    task: str
    cfg: Any
    datamodule: Any
    device: str
    scratch: Path
    seed: int
    pad_id: int = 0

    # -------------------------------------------------------------- construction
    def build_task(self) -> Any:
        """A fresh task LightningModule, seeded so that every call gives the same initial weights."""
        import pytorch_lightning as pl
        from omegaconf import OmegaConf

        from attnlab.utils.instantiate import instantiate_component

        pl.seed_everything(self.seed, workers=True, verbose=False)
        attention = OmegaConf.to_container(self.cfg.attention, resolve=True)
        return instantiate_component(self.cfg.model, attention=attention, **self.datamodule.model_kwargs())

    @property
    def precision(self) -> str:
        return str(self.cfg.trainer.get("precision", "32-true"))

    @property
    def gradient_clip_val(self) -> float | None:
        value = self.cfg.trainer.get("gradient_clip_val")
        return float(value) if value else None

    def autocast(self) -> Any:
        """The autocast context matching the trainer's precision (bf16-mixed -> bf16 autocast)."""
        import torch

        if self.precision.startswith("bf16-mixed") or self.precision == "bf16":
            return torch.autocast(device_type=self.device, dtype=torch.bfloat16)
        if self.precision not in ("32-true", "32", "64-true"):
            raise NotImplementedError(f"the plain loop does not mirror precision={self.precision!r}")
        return contextlib.nullcontext()

    # -------------------------------------------------------------- one step, plainly
    def loss(self, model: Any, batch: Any) -> Any:
        """The training loss the task optimises, computed without Lightning (batch already on device).

        Translation: label-smoothed token cross-entropy of ``TranslationTask.forward``'s logits
        (``label_smoothing`` and ``pad_id`` from the task's hyper-parameters).
        Detection: the sum of the torchvision detector's loss parts.
        """
        import torch
        from torch.nn import functional as F

        if self.task == "translation":
            hp = model.hparams
            logits = model(batch["src"], batch["src_lengths"], batch["tgt_in"], batch.get("src_mask"))
            return F.cross_entropy(logits.flatten(0, 1), batch["tgt_out"].flatten(), ignore_index=hp.pad_id,
                                   label_smoothing=hp.label_smoothing)
        images, targets = batch
        losses = model.net(images, [{"boxes": t["boxes"], "labels": t["labels"]} for t in targets])
        return torch.stack(list(losses.values())).sum()

    def count(self, batch: Any) -> tuple[int, Any, Any]:
        """Items in a batch (host int) and its target / source token counts (device tensors, no sync)."""
        if self.task == "translation":
            return (int(batch["src"].shape[0]), (batch["tgt_out"] != self.pad_id).sum(), batch["src_lengths"].sum())
        images, _ = batch
        return len(images), 0, 0

    def fingerprint(self, batch: Any) -> str:
        """A short hash of a batch's identity from host-side data only (no device sync)."""
        if self.task == "translation":
            key = "\n".join(batch["src_text"]) if "src_text" in batch else str(tuple(batch["src"].shape))
        else:
            key = ",".join(str(int(t["image_id"])) for t in batch[1])
        return hashlib.sha1(key.encode()).hexdigest()[:12]

    def optimizers(self, model: Any, total_steps: int) -> tuple[Any, Any, str]:
        """The optimizer and scheduler of ``cfg.model`` (the partials ``train.py`` hands the task),
        built as the tasks' ``configure_optimizers`` builds them.

        Returns ``(optimizer, scheduler or None, interval)``. Only parameters that require grad are
        optimised (frozen backbone layers are left out, as the detection task does); the scheduler's
        length arguments (``total_steps`` / ``T_max``) are filled with this run's length when the
        config leaves them out, as the tasks fill them from ``trainer.estimated_stepping_batches``.
        """
        from hydra.utils import instantiate

        model_cfg = self.cfg.model
        params = [p for p in model.parameters() if p.requires_grad]
        optimizer = instantiate(model_cfg.optimizer)(params=params)
        scheduler = None
        interval = str(model_cfg.get("scheduler_interval", "step"))
        if model_cfg.get("scheduler") is not None:
            make = instantiate(model_cfg.scheduler)
            func = getattr(make, "func", make)
            given = set(getattr(make, "keywords", {}) or {})
            try:
                names = inspect.signature(func).parameters
            except (TypeError, ValueError):
                names = {}
            extra = {n: int(total_steps) for n in ("total_steps", "T_max") if n in names and n not in given}
            scheduler = make(optimizer=optimizer, **extra)
        return optimizer, scheduler, interval

    def train_loader(self) -> Any:
        return self.datamodule.train_dataloader()


def prepare_job(
    task: str,
    *,
    device: str = "cpu",
    seed: int = 12345,
    scratch: Path,
    overrides: Sequence[str] = (),
    config_dir: Path | None = None,
) -> TrainingJob:
    """Compose ``experiment=<task>`` (+ ``overrides``), build and set up its datamodule.

    With ``device="cuda"`` the trainer runs on one GPU with ``bf16-mixed`` precision.
    """
    from attnlab.utils.instantiate import instantiate_component

    if task not in TASK_EXPERIMENTS:
        raise ValueError(f"task must be one of {sorted(TASK_EXPERIMENTS)}, got {task!r}")
    extra = [f"seed={seed}"]
    if device == "cuda":
        extra += ["trainer.accelerator=gpu", "trainer.devices=1", "trainer.precision=bf16-mixed"]
    cfg = compose_train_config([TASK_EXPERIMENTS[task], *extra, *overrides], scratch, config_dir)
    with quiet_lightning():
        datamodule = instantiate_component(cfg.data)
        datamodule.prepare_data()
        datamodule.setup("fit")
    pad_id = int(datamodule.model_kwargs().get("pad_id", 0)) if task == "translation" else 0
    return TrainingJob(task=task, cfg=cfg, datamodule=datamodule, device=device, scratch=Path(scratch), seed=seed,
                       pad_id=pad_id)


class _StepClock:
    """Lightning callback (built lazily to keep this module import-light): per-step fingerprints,
    counts of the timed steps, and timestamps at the end of the warm-up and of the last step."""

    @staticmethod
    def make(job: TrainingJob, warmup: int, steps: int) -> Any:
        import pytorch_lightning as pl

        from attnlab.bench.timing import synchronize

        class StepClock(pl.Callback):
            def __init__(self) -> None:
                self.fingerprints: list[str] = []
                self.items = 0
                self.tokens: Any = 0
                self.src_tokens: Any = 0
                self.t0 = self.t1 = self.c0 = self.c1 = math.nan
                self.last_loss: Any = None

            def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any,
                                   batch_idx: int) -> None:
                step = len(self.fingerprints)
                self.fingerprints.append(job.fingerprint(batch))
                if step >= warmup:
                    n, tok, src = job.count(batch)
                    self.items += n
                    self.tokens = self.tokens + tok
                    self.src_tokens = self.src_tokens + src
                if step == warmup - 1:
                    synchronize(job.device)
                    self.t0, self.c0 = time.perf_counter(), time.process_time()
                if step == steps - 1:
                    loss = outputs["loss"] if isinstance(outputs, Mapping) else outputs
                    self.last_loss = loss.detach() if loss is not None else None
                    synchronize(job.device)
                    self.t1, self.c1 = time.perf_counter(), time.process_time()

        return StepClock()


def run_lightning(job: TrainingJob, steps: int, warmup: int) -> RunTiming:
    """Train ``steps`` steps with a Trainer built from ``cfg.trainer`` as ``train.py`` builds it.

    Differences from ``train.py``, all to time training steps and nothing else: ``logger=False``;
    callbacks are only the timing callback (no checkpointing, early stopping, progress bar, LR
    monitor or media); no validation (``limit_val_batches=0``, no sanity check); no model summary;
    ``max_steps=steps``. Everything else (accelerator, precision, gradient clipping, accumulation,
    ``log_every_n_steps``, deterministic, the task's ``self.log`` calls) is the config's.
    """
    import hydra

    if warmup < 1 or steps <= warmup:
        raise ValueError(f"need 1 <= warmup < steps, got warmup={warmup}, steps={steps}")
    clock = _StepClock.make(job, warmup, steps)
    with quiet_lightning():
        model = job.build_task()
        trainer = hydra.utils.instantiate(
            job.cfg.trainer,
            logger=False,
            callbacks=[clock],
            max_steps=steps,
            max_epochs=-1,
            min_epochs=None,
            limit_train_batches=1.0,
            limit_val_batches=0,
            num_sanity_val_steps=0,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            default_root_dir=str(job.scratch),
            fast_dev_run=False,
        )
        import pytorch_lightning as pl

        # Same RNG state at the first batch as the plain loop (model init consumed the same draws).
        pl.seed_everything(job.seed + 1, workers=True, verbose=False)
        trainer.fit(model, datamodule=job.datamodule)
    if len(clock.fingerprints) < steps:
        raise RuntimeError(f"Lightning stopped after {len(clock.fingerprints)} of {steps} steps")
    return RunTiming(
        mode="lightning", steps=steps, warmup=warmup, seconds=clock.t1 - clock.t0,
        cpu_seconds=clock.c1 - clock.c0, items=clock.items,
        tokens=int(clock.tokens), src_tokens=int(clock.src_tokens), fingerprints=clock.fingerprints,
        final_loss=float(clock.last_loss) if clock.last_loss is not None else math.nan,
    )


def _set_epoch(loader: Any, epoch: int) -> None:
    """Call ``set_epoch`` where Lightning would (sampler, batch sampler's sampler) and on the batch sampler."""
    seen: dict[int, Any] = {}
    for obj in (getattr(loader, "sampler", None), getattr(loader, "batch_sampler", None),
                getattr(getattr(loader, "batch_sampler", None), "sampler", None)):
        if obj is not None and callable(getattr(obj, "set_epoch", None)):
            seen[id(obj)] = obj
    for obj in seen.values():
        obj.set_epoch(epoch)


def run_plain(job: TrainingJob, steps: int, warmup: int) -> RunTiming:
    """Train ``steps`` steps with a plain PyTorch loop over ``datamodule.train_dataloader()``.

    Per step: move the batch to the device, ``zero_grad(set_to_none=True)``, forward + loss under
    the precision's autocast, ``backward``, ``clip_grad_norm_`` when ``trainer.gradient_clip_val``
    is set, ``optimizer.step()``, and the scheduler's ``step()`` when it steps per step.
    """
    import pytorch_lightning as pl
    import torch

    from attnlab.bench.timing import synchronize

    if warmup < 1 or steps <= warmup:
        raise ValueError(f"need 1 <= warmup < steps, got warmup={warmup}, steps={steps}")
    accumulate = int(job.cfg.trainer.get("accumulate_grad_batches") or 1)
    if accumulate != 1:
        raise NotImplementedError("the plain loop mirrors accumulate_grad_batches=1 only")
    model = job.build_task().to(job.device)
    model.train()
    optimizer, scheduler, interval = job.optimizers(model, steps)
    clip = job.gradient_clip_val
    params = [p for p in model.parameters() if p.requires_grad]
    loader = job.train_loader()
    fingerprints: list[str] = []
    items, tokens, src_tokens = 0, 0, 0
    t0 = t1 = c0 = c1 = math.nan
    loss = None
    pl.seed_everything(job.seed + 1, workers=True, verbose=False)
    epoch = 0
    step = 0
    while step < steps:
        _set_epoch(loader, epoch)
        for batch in loader:
            fingerprints.append(job.fingerprint(batch))
            batch = to_device(batch, job.device)
            optimizer.zero_grad(set_to_none=True)
            with job.autocast():
                loss = job.loss(model, batch)
            loss.backward()
            if clip:
                torch.nn.utils.clip_grad_norm_(params, clip)
            optimizer.step()
            if scheduler is not None and interval == "step":
                scheduler.step()
            if step >= warmup:
                n, tok, src = job.count(batch)
                items += n
                tokens = tokens + tok
                src_tokens = src_tokens + src
            if step == warmup - 1:
                synchronize(job.device)
                t0, c0 = time.perf_counter(), time.process_time()
            step += 1
            if step == steps:
                synchronize(job.device)
                t1, c1 = time.perf_counter(), time.process_time()
                break
        epoch += 1
    return RunTiming(
        mode="plain", steps=steps, warmup=warmup, seconds=t1 - t0, cpu_seconds=c1 - c0, items=items,
        tokens=int(tokens),
        src_tokens=int(src_tokens), fingerprints=fingerprints,
        final_loss=float(loss.detach()) if loss is not None else math.nan,
    )
