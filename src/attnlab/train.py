"""``python train.py``: compose the experiment with Hydra, train and test it, record it in W&B.

Heavy modules (torch, Lightning, wandb) are imported inside :func:`train`, so ``--help`` and
``--cfg job`` answer without paying for them.
"""

from __future__ import annotations

import logging
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig, OmegaConf

from attnlab.compat import check_task_compatibility
from attnlab.errors import AttnlabError
from attnlab.project import config_dir, ensure_project_root_env
from attnlab.runs.run_dir import is_resume, register_resolvers, run_rank, wandb_id_for_run
from attnlab.utils.metrics_file import to_float
from attnlab.utils.run_info import RunInfo, build_run_info, hydra_choices, hydra_override_dirname

log = logging.getLogger(__name__)

# ${unique_dir:...} in conf/hydra: registered on import, so sweep jobs that import this module have it.
register_resolvers()


def _parallel_jobs() -> int:
    """How many jobs of this sweep run at once on this machine (joblib's n_jobs; 1 otherwise)."""
    from attnlab.data.loader_workers import parallel_jobs  # one policy for torch threads and loader workers

    return parallel_jobs()


def _set_threads(cfg: DictConfig) -> int:
    """Give each job its share of the cores, so parallel sweep jobs do not oversubscribe them."""
    import torch

    threads = cfg.get("torch_threads")
    if not threads:
        threads = max(1, (os.cpu_count() or 1) // _parallel_jobs())
    torch.set_num_threads(int(threads))
    return int(threads)


def _output_dir(cfg: DictConfig) -> Path:
    return Path(cfg.paths.output_dir)


def _hparams_for_record(cfg: DictConfig) -> dict[str, Any]:
    """The hyper-parameters worth a column in comparison tables (flat, scalar)."""
    from attnlab.utils.flatten import flatten_scalars

    keep = {}
    for section in ("model", "attention", "data"):
        node = cfg.get(section)
        if node is not None:
            flat = flatten_scalars(OmegaConf.to_container(node, resolve=True), prefix=section)
            keep.update({k: v for k, v in flat.items() if not k.endswith("_target_")})
    keep["trainer.max_epochs"] = cfg.trainer.get("max_epochs")
    keep["seed"] = cfg.get("seed")
    return keep


def _start(cfg: DictConfig, progress: dict[str, Any]) -> tuple[RunInfo, Path]:
    """Everything that can refuse a run before anything heavy happens; records the attempt as running."""
    from attnlab.config_check import check_config_types
    from attnlab.runs.attempts import report_killed_runs, start_attempt

    choices = hydra_choices()
    task = check_task_compatibility(cfg, choices)
    run = build_run_info(cfg, task, choices, hydra_override_dirname())
    progress["run"] = run
    output_dir = _output_dir(cfg)
    output_dir.mkdir(parents=True, exist_ok=True)
    if run_rank() == 0:
        if not _is_multirun():
            report_killed_runs(output_dir.parent, skip=output_dir)
        progress["attempt"] = start_attempt(output_dir, _identity(cfg, run))
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
        from attnlab.utils.config_tree import print_config_tree

        print_config_tree(cfg, save_to=output_dir / "config_tree.log")
    return run, output_dir


def _always_callbacks(cfg: DictConfig, run: RunInfo, output_dir: Path) -> list[Any]:
    """The callbacks every run gets, whatever ``callbacks=`` says: config in checkpoints, a checkpoint
    on interrupt, exact resume, an LR schedule that follows a changed budget, stop_after_epochs."""
    from attnlab.callbacks.config_in_checkpoint import ConfigInCheckpoint
    from attnlab.callbacks.exact_resume import ExactResume
    from attnlab.callbacks.interrupt import CheckpointOnInterrupt
    from attnlab.callbacks.schedule_budget import ScheduleFollowsBudget
    from attnlab.callbacks.stop_after import StopAfterEpochs

    callbacks = [
        ConfigInCheckpoint(OmegaConf.to_container(cfg, resolve=True), run.choices),
        CheckpointOnInterrupt(output_dir / "checkpoints"),
        ExactResume(),
        ScheduleFollowsBudget(),
    ]
    if cfg.get("stop_after_epochs"):
        callbacks.append(StopAfterEpochs(cfg.stop_after_epochs))
    return callbacks


def train(
    cfg: DictConfig, progress: dict[str, Any] | None = None
) -> tuple[dict[str, float | None], dict[str, Any]]:
    """Train (and test) the model the config describes; return the final metrics and the objects built.

    ``progress``, when given, receives the run info, the attempt number and the trainer as soon as
    they exist, so that a caller can still record how far a run got when it fails or is interrupted.

    Raises :class:`attnlab.errors.AttnlabError` for user errors before anything heavy runs.
    """
    progress = {} if progress is None else progress
    run, output_dir = _start(cfg, progress)

    import pytorch_lightning as pl

    from attnlab.cli.build import build_datamodule, build_task, build_trainer
    from attnlab.utils.instantiate import drop_logger_only_callbacks, instantiate_callbacks, instantiate_loggers

    threads = _set_threads(cfg)
    pl.seed_everything(cfg.seed, workers=True)

    datamodule = build_datamodule(cfg)
    model = build_task(cfg, datamodule)

    wandb_id = wandb_id_for_run(output_dir, resuming=is_resume(cfg.get("ckpt_path"), output_dir))
    loggers = instantiate_loggers(cfg.get("logger"), name=run.name, tags=run.tags, id=wandb_id)
    callbacks = drop_logger_only_callbacks(instantiate_callbacks(cfg.get("callbacks")), loggers)
    callbacks += _always_callbacks(cfg, run, output_dir)
    trainer = build_trainer(cfg, callbacks=callbacks, logger=loggers or False)
    progress["trainer"] = trainer

    resolved = OmegaConf.to_container(cfg, resolve=True)
    resolved["choices"] = run.choices
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

    objects = {"cfg": cfg, "datamodule": datamodule, "model": model, "trainer": trainer, "run": run}
    objects["record"] = {
        "train_seconds": round(train_seconds, 2),
        "best_model_path": getattr(trainer.checkpoint_callback, "best_model_path", None) or None,
        **_progress_fields(cfg, trainer),
    }
    return metrics, objects


def _identity(cfg: DictConfig, run: RunInfo | None) -> dict[str, Any]:
    """The ``metrics.json`` fields that say which run this is (written at start and at the end)."""
    return {
        "task": run.task if run else None,
        "run_name": run.name if run else None,
        "choices": run.choices if run else hydra_choices(),
        "monitor": OmegaConf.to_container(cfg.monitor, resolve=True) if "monitor" in cfg else None,
        "output_dir": str(_output_dir(cfg)),
        "started_from_ckpt": str(cfg.ckpt_path) if cfg.get("ckpt_path") else None,
    }


def _record(cfg: DictConfig, run: RunInfo | None, status: str, metrics: dict, extra: dict, attempt: int | None) -> Path:
    """Write this attempt's final record; earlier attempts of the run stay in ``attempts``."""
    from attnlab.runs.attempts import finish_attempt

    record = {"status": status, **_identity(cfg, run), "metrics": metrics, **extra}
    return finish_attempt(_output_dir(cfg), record, attempt)


def _is_multirun() -> bool:
    try:
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode

        return HydraConfig.get().mode == RunMode.MULTIRUN
    except ValueError:
        return False


def run_job(cfg: DictConfig) -> float | None:
    """One Hydra job: train, write ``metrics.json``, finish the W&B run; return the monitored metric.

    In a multirun a failing job is recorded (status ``failed`` with the error) and the sweep goes on;
    in a single run user errors print one clear line and exit 1, other errors propagate.
    """
    if cfg.extras.get("ignore_warnings"):
        import warnings

        warnings.filterwarnings("ignore")
    started = time.perf_counter()
    metrics: dict[str, float | None] = {}
    extra: dict[str, Any] = {}
    run: RunInfo | None = None
    progress: dict[str, Any] = {}
    try:
        metrics, objects = train(cfg, progress)
        run, extra = objects["run"], objects["record"]
    except (KeyboardInterrupt, SystemExit) as exc:
        # Lightning turns Ctrl-C into SystemExit(1) and SIGTERM into SIGTERMException (a SystemExit),
        # after CheckpointOnInterrupt saved last.ckpt: mark the W&B run preempted and record it.
        run, metrics, extra = _progress_record(cfg, progress)
        _finish("interrupted", cfg, run, metrics, type(exc).__name__, started, extra, progress.get("attempt"))
        raise
    except Exception as exc:  # noqa: BLE001 - recorded, then reported or re-raised below
        error = f"{type(exc).__name__}: {exc}".strip().splitlines()[0]
        run, metrics, extra = _progress_record(cfg, progress)
        _finish("failed", cfg, run, metrics, error, started, extra, progress.get("attempt"))
        if _is_multirun():
            log.exception("Job failed; the sweep goes on")
            return math.nan
        if isinstance(exc, AttnlabError):
            log.error("%s", exc)
            sys.exit(1)
        raise
    _finish("ok", cfg, run, metrics, None, started, extra, progress.get("attempt"))
    value = metrics.get(str(cfg.monitor.metric))
    log.info("%s = %s", cfg.monitor.metric, value)
    return value


def _progress_record(
    cfg: DictConfig, progress: dict[str, Any]
) -> tuple[RunInfo | None, dict[str, float | None], dict[str, Any]]:
    """How far a run that ended early got: its run info, the metrics logged so far, epoch and step,
    and the checkpoint to resume from (when one was written)."""
    run, trainer = progress.get("run"), progress.get("trainer")
    if trainer is None:
        return run, {}, {}
    metrics = {k: to_float(v) for k, v in trainer.callback_metrics.items()}
    last = _output_dir(cfg) / "checkpoints" / "last.ckpt"
    return run, metrics, {**_progress_fields(cfg, trainer), "resume_from": str(last) if last.is_file() else None}


def _progress_fields(cfg: DictConfig, trainer: Any) -> dict[str, Any]:
    """The ``metrics.json`` fields every run has, however it ended: epoch, step, hyper-parameters."""
    return {"epochs": trainer.current_epoch, "global_step": trainer.global_step, "hparams": _hparams_for_record(cfg)}


def _finish(
    status: str,
    cfg: DictConfig,
    run: RunInfo | None,
    metrics: dict[str, float | None],
    error: str | None,
    started: float,
    extra: dict[str, Any],
    attempt: int | None,
) -> None:
    """Finish the W&B run (marking failures) and write this attempt's record in ``metrics.json``
    (rank 0 only: ``trainer=ddp`` runs this function once per rank)."""
    from attnlab.utils.wandb_setup import finish_wandb

    wandb_info = None
    try:
        wandb_info = finish_wandb(exit_code=0 if status == "ok" else 1, preempted=status == "interrupted")
    except Exception as exc:  # noqa: BLE001 - the run's own record matters more than W&B's
        log.warning("Could not finish the W&B run cleanly: %s", exc)
    record = dict(extra)
    record.update({"error": error, "duration_s": round(time.perf_counter() - started, 2), "wandb": wandb_info})
    if run_rank() != 0:
        return
    path = _record(cfg, run, status, metrics, record, attempt)
    shown = {k: v for k, v in metrics.items() if k.startswith("test/") and "len" not in k and v is not None}
    if shown:
        log.info("Final test metrics: %s", "  ".join(f"{k}={v:.4f}" for k, v in sorted(shown.items())))
    log.info("Run %s: %s", status, path)


@hydra.main(version_base="1.3", config_path=str(config_dir()), config_name="train")
def _hydra_entry(cfg: DictConfig) -> float | None:
    return run_job(cfg)


def no_logger_alias(argv: list[str]) -> list[str]:
    """``logger=null`` means "no logger" to Lightning users, but Hydra refuses a null group override
    ("Config group override must be a string or a list"); here it means ``logger=[]``."""
    return ["logger=[]" if arg in ("logger=null", "logger=None", "logger=~") else arg for arg in argv]


def main() -> None:
    """Console entry point (``attnlab-train``, ``python train.py``)."""
    from attnlab.resume import resume_argv

    from attnlab.cli_help import print_fast_help

    ensure_project_root_env()
    if print_fast_help("train", sys.argv[1:], config_dir()):
        return
    _load_dotenv()
    try:
        sys.argv[1:] = resume_argv(no_logger_alias(sys.argv[1:]))
    except AttnlabError as exc:  # before Hydra, so no logging yet: one line on stderr
        print(f"Error: {exc}", file=sys.stderr)
        sys.exit(1)
    _hydra_entry()


def _load_dotenv() -> None:
    """Use an API key from ``.env`` (e.g. WANDB_API_KEY) without ever copying it into a config or log."""
    env_file = Path(os.environ["PROJECT_ROOT"]) / ".env"
    if env_file.is_file():
        from dotenv import load_dotenv

        load_dotenv(env_file, override=False)
