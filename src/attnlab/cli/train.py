"""``python train.py``: compose the experiment with Hydra, train and test it, record it in W&B.

The Hydra entry point and one job's ending: the run itself is :class:`attnlab.cli.training.TrainingRun`,
its record :mod:`attnlab.runs.record`. Heavy modules (torch, Lightning, wandb) are imported only
once a job runs, so ``--help`` and ``--cfg job`` answer without paying for them.
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
from omegaconf import DictConfig

from attnlab.errors import AttnlabError
from attnlab.project import config_dir, ensure_project_root_env
from attnlab.runs.run_dir import register_resolvers

__all__ = ["main", "no_logger_alias", "run_job"]

log = logging.getLogger(__name__)

# ${unique_dir:...} in conf/hydra: registered on import, so sweep jobs that import this module have it.
register_resolvers()


def run_job(cfg: DictConfig) -> float | None:
    """One Hydra job: train, write ``metrics.json``, finish the W&B run; return the monitored metric.

    In a multirun a failing job is recorded (status ``failed`` with the error) and the sweep goes on;
    in a single run user errors print one clear line and exit 1, other errors propagate.
    """
    from attnlab.cli.training import TrainingRun, is_multirun
    from attnlab.runs.record import finish_run

    if cfg.extras.get("ignore_warnings"):
        import warnings

        warnings.filterwarnings("ignore")
    started = time.perf_counter()
    job = TrainingRun(cfg)
    extra: dict[str, Any]
    try:
        metrics, objects = job.train()
        extra = objects["record"]
    except (KeyboardInterrupt, SystemExit) as exc:
        # Lightning turns Ctrl-C into SystemExit(1) and SIGTERM into SIGTERMException (a SystemExit),
        # after CheckpointOnInterrupt saved last.ckpt: mark the W&B run preempted and record it.
        metrics, extra = job.progress()
        finish_run("interrupted", cfg, job.run, metrics, type(exc).__name__, started, extra, job.attempt)
        raise
    except Exception as exc:
        error = f"{type(exc).__name__}: {exc}".strip().splitlines()[0]
        metrics, extra = job.progress()
        finish_run("failed", cfg, job.run, metrics, error, started, extra, job.attempt)
        if is_multirun():
            log.exception("Job failed; the sweep goes on")
            return math.nan
        if isinstance(exc, AttnlabError):
            log.error("%s", exc)
            sys.exit(1)
        raise
    finish_run("ok", cfg, job.run, metrics, None, started, extra, job.attempt)
    value = metrics.get(str(cfg.monitor.metric))
    log.info("%s = %s", cfg.monitor.metric, value)
    return value


@hydra.main(version_base="1.3", config_path=str(config_dir()), config_name="train")
def _hydra_entry(cfg: DictConfig) -> float | None:
    return run_job(cfg)


def no_logger_alias(argv: list[str]) -> list[str]:
    """``logger=null`` means "no logger" to Lightning users, but Hydra refuses a null group override
    ("Config group override must be a string or a list"); here it means ``logger=[]``."""
    return ["logger=[]" if arg in ("logger=null", "logger=None", "logger=~") else arg for arg in argv]


def main() -> None:
    """Console entry point (``attnlab-train``, ``python train.py``)."""
    from attnlab.cli.help import print_fast_help
    from attnlab.cli.resume import resume_argv

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
