"""``python eval.py ckpt_path=...``: score a checkpoint on the test (or val) split.

The checkpoint carries the run's resolved config (see :mod:`attnlab.callbacks.config_in_checkpoint`),
so the same datamodule is rebuilt and the task is restored with ``load_from_checkpoint``.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig, OmegaConf

from attnlab.errors import AttnlabError, ConfigError
from attnlab.project import config_dir, ensure_project_root_env
from attnlab.utils.metrics_file import to_float, write_metrics_file

log = logging.getLogger(__name__)


def load_run_config(ckpt_path: Path) -> tuple[DictConfig, dict[str, str]]:
    """The resolved config (and group choices) of the run that wrote ``ckpt_path``.

    Read from the checkpoint itself; for checkpoints written without it, from the run's
    ``.hydra/config.yaml`` (``<run>/checkpoints/x.ckpt`` -> ``<run>/.hydra``).
    """
    import torch

    from attnlab.callbacks.config_in_checkpoint import CHECKPOINT_KEY

    try:
        checkpoint = torch.load(ckpt_path, map_location="cpu", weights_only=False)
    except Exception as exc:  # noqa: BLE001 - any unreadable file gets the same clear message
        raise ConfigError(f"ckpt_path={ckpt_path} could not be read as a checkpoint: {exc}") from exc
    saved = checkpoint.get(CHECKPOINT_KEY)
    if saved:
        return OmegaConf.create(saved["config"]), dict(saved.get("choices", {}))
    hydra_cfg = ckpt_path.resolve().parent.parent / ".hydra" / "config.yaml"
    if hydra_cfg.is_file():
        return OmegaConf.load(hydra_cfg), {}
    raise ConfigError(
        f"{ckpt_path} holds no attnlab config and {hydra_cfg} does not exist: "
        "evaluate a checkpoint written by attnlab's train.py."
    )


def evaluate(cfg: DictConfig) -> dict[str, float | None]:
    """Restore the task from ``cfg.ckpt_path``, run the ``cfg.split`` split, return its metrics."""
    ckpt_path = Path(str(cfg.ckpt_path))
    if not ckpt_path.is_file():
        raise ConfigError(
            f"ckpt_path={ckpt_path} does not exist. Pass a checkpoint written by train.py, e.g. "
            "ckpt_path=logs/train/runs/<run>/checkpoints/last.ckpt"
        )
    if cfg.split not in ("test", "val"):
        raise ConfigError(f"split={cfg.split!r}: use split=test or split=val.")
    run_cfg, choices = load_run_config(ckpt_path)
    data_cfg = OmegaConf.merge(run_cfg.data, cfg.get("data") or {})

    import pytorch_lightning as pl

    from attnlab.train import _set_threads
    from attnlab.utils.instantiate import instantiate_component

    _set_threads(cfg)
    pl.seed_everything(cfg.seed, workers=True)
    task_cls = hydra.utils.get_class(run_cfg.model._target_)
    model = task_cls.load_from_checkpoint(ckpt_path, map_location="cpu", weights_only=False)
    datamodule = instantiate_component(data_cfg)
    datamodule.prepare_data()
    from attnlab.cli.build import build_trainer

    trainer = build_trainer(cfg, logger=False, callbacks=[], enable_checkpointing=False)
    run = trainer.test if cfg.split == "test" else trainer.validate
    results = run(model=model, datamodule=datamodule)
    metrics = {k: to_float(v) for k, v in (results[0] if results else {}).items()}
    record = {
        "status": "ok",
        "ckpt_path": str(ckpt_path.resolve()),
        "split": cfg.split,
        "choices": choices,
        "metrics": metrics,
    }
    path = write_metrics_file(cfg.paths.output_dir, record)
    log.info("Metrics of %s on %s written to %s", ckpt_path, cfg.split, path)
    return metrics


@hydra.main(version_base="1.3", config_path=str(config_dir()), config_name="eval")
def _hydra_entry(cfg: DictConfig) -> Any:
    try:
        return evaluate(cfg)
    except AttnlabError as exc:
        log.error("%s", exc)
        sys.exit(1)


def main() -> None:
    """Console entry point (``attnlab-eval``, ``python eval.py``)."""
    from attnlab.cli_help import print_fast_help

    ensure_project_root_env()
    if print_fast_help("eval", sys.argv[1:], config_dir()):
        return
    _hydra_entry()
