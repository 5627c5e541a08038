"""Training one run: checks, objects, fit and test, each step keeping what a failure needs to record.

:class:`TrainingRun` owns the state of a run as it goes (its identity, its attempt number, its
trainer), so that :func:`attnlab.cli.train.run_job` can still record how far a run got when it
fails or is interrupted, without handing a dictionary back and forth.

Heavy modules (torch, Lightning, wandb) are imported inside the methods, so ``--help`` and
``--cfg job`` answer without paying for them.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from attnlab.runs.metrics_file import to_float
from attnlab.runs.record import identity, progress_fields
from attnlab.runs.run_dir import is_resume, run_rank, wandb_id_for_run
from attnlab.runs.run_info import RunInfo, build_run_info, hydra_choices, hydra_override_dirname

__all__ = ["TrainingRun", "is_multirun", "train"]

log = logging.getLogger(__name__)


def is_multirun() -> bool:
    """True inside a job of ``train.py -m`` (Hydra's MULTIRUN mode)."""
    try:
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode

        return HydraConfig.get().mode == RunMode.MULTIRUN
    except ValueError:
        return False


class TrainingRun:
    """One training run of the composed config ``cfg``; :meth:`train` runs it start to end."""

    def __init__(self, cfg: DictConfig) -> None:
        self.cfg = cfg
        self.output_dir = Path(cfg.paths.output_dir)
        self.run: RunInfo | None = None  # set by start(): who the run is
        self.attempt: int | None = None  # set by start() on rank 0: which attempt of the run this is
        self.trainer: Any = None  # set once built: what the run got to (epoch, step, metrics)

    def start(self) -> None:
        """Everything that can refuse a run before anything heavy happens; records the attempt as running."""
        from attnlab.cli.config_check import check_config_types
        from attnlab.cli.task_check import check_task_compatibility
        from attnlab.runs.attempts import report_killed_runs, start_attempt

        cfg = self.cfg
        choices = hydra_choices()
        task = check_task_compatibility(cfg, choices)
        self.run = build_run_info(cfg, task, choices, hydra_override_dirname())
        self.output_dir.mkdir(parents=True, exist_ok=True)
        if run_rank() == 0:
            if not is_multirun():
                report_killed_runs(self.output_dir.parent, skip=self.output_dir)
            self.attempt = start_attempt(self.output_dir, identity(cfg, self.run))
        check_config_types(cfg)
        if cfg.extras.get("enforce_tags") and not cfg.get("tags"):
            from attnlab.errors import ConfigError

            raise ConfigError("extras.enforce_tags is on but no tags were given: add tags=[my_tag] to the command.")
        if cfg.get("ckpt_path"):
            from attnlab.runs.checkpoint_io import load_checkpoint

            # Refuses a file holding pickled objects (or a missing one) before any data is loaded;
            # memory-mapped, so reading it twice (here and in Lightning) costs little.
            load_checkpoint(cfg.ckpt_path)
        if cfg.extras.get("print_config"):
            from attnlab.cli.config_tree import print_config_tree

            print_config_tree(cfg, save_to=self.output_dir / "config_tree.log")

    def build(self) -> tuple[Any, Any, list[Any]]:
        """The datamodule, the task and the loggers; the trainer with every callback of ``callbacks=``."""
        import pytorch_lightning as pl

        from attnlab.cli.build import build_datamodule, build_task, build_trainer
        from attnlab.cli.instantiate import drop_logger_only_callbacks, instantiate_callbacks, instantiate_loggers

        cfg, run = self.cfg, self.run
        assert run is not None, "start() comes first"
        pl.seed_everything(cfg.seed, workers=True)
        datamodule = build_datamodule(cfg)
        model = build_task(cfg, datamodule)
        wandb_id = wandb_id_for_run(self.output_dir, resuming=is_resume(cfg.get("ckpt_path"), self.output_dir))
        loggers = instantiate_loggers(cfg.get("logger"), name=run.name, tags=run.tags, id=wandb_id)
        # What the callbacks' configs leave to the run (`???`): the config checkpoints carry.
        supplied = {"config": OmegaConf.to_container(cfg, resolve=True), "choices": run.choices}
        callbacks = drop_logger_only_callbacks(instantiate_callbacks(cfg.get("callbacks"), supplied), loggers)
        self.trainer = build_trainer(cfg, callbacks=callbacks, logger=loggers or False)
        return datamodule, model, loggers

    def train(self) -> tuple[dict[str, float | None], dict[str, Any]]:
        """Train (and test) the model the config describes; return the final metrics and the objects built.

        Raises :class:`attnlab.errors.AttnlabError` for user errors before anything heavy runs.
        """
        from attnlab.cli.threads import set_threads

        cfg = self.cfg
        self.start()
        threads = set_threads(cfg)
        datamodule, model, loggers = self.build()
        trainer = self.trainer
        resolved = OmegaConf.to_container(cfg, resolve=True)
        assert isinstance(resolved, dict), "a DictConfig gives a dict"
        resolved["choices"] = self.run.choices if self.run else {}
        for lg in loggers:
            lg.log_hyperparams(resolved)

        started = time.perf_counter()
        if cfg.get("train"):
            log.info("Training (%d torch threads)", threads)
            trainer.fit(model=model, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path"), weights_only=True)
        metrics = {k: to_float(v) for k, v in trainer.callback_metrics.items()}
        train_seconds = time.perf_counter() - started

        if cfg.get("test"):
            best = getattr(trainer.checkpoint_callback, "best_model_path", "") if cfg.get("train") else ""
            ckpt = best if best else (None if cfg.get("train") else cfg.get("ckpt_path"))
            log.info("Testing %s", f"best checkpoint {ckpt}" if ckpt else "the current weights")
            trainer.test(model=model, datamodule=datamodule, ckpt_path=ckpt, weights_only=True)
            metrics.update({k: to_float(v) for k, v in trainer.callback_metrics.items()})

        objects = {"cfg": cfg, "datamodule": datamodule, "model": model, "trainer": trainer, "run": self.run}
        objects["record"] = {
            "train_seconds": round(train_seconds, 2),
            "best_model_path": getattr(trainer.checkpoint_callback, "best_model_path", None) or None,
            **progress_fields(cfg, trainer),
        }
        return metrics, objects

    def progress(self) -> tuple[dict[str, float | None], dict[str, Any]]:
        """How far a run that ended early got: the metrics logged so far, epoch and step, and the
        checkpoint to resume from (when one was written); nothing before the trainer existed."""
        if self.trainer is None:
            return {}, {}
        metrics = {k: to_float(v) for k, v in self.trainer.callback_metrics.items()}
        last = self.output_dir / "checkpoints" / "last.ckpt"
        extra = {**progress_fields(self.cfg, self.trainer), "resume_from": str(last) if last.is_file() else None}
        return metrics, extra


def train(cfg: DictConfig) -> tuple[dict[str, float | None], dict[str, Any]]:
    """Train (and test) the model ``cfg`` describes; see :meth:`TrainingRun.train`."""
    return TrainingRun(cfg).train()
