"""``python eval.py ckpt_path=...``: score a checkpoint on the test (or val) split.

The checkpoint carries the run's resolved config (see :mod:`attnlab.callbacks.config_in_checkpoint`),
so the same datamodule is rebuilt and the task is restored with ``load_from_checkpoint``. The file
is read with ``torch.load(weights_only=True)`` and its config is untrusted: only allow-listed
``_target_``s are instantiated from it (:mod:`attnlab.runs.trusted_targets`). Task overrides
(``model=``, ``data=``, ``experiment=``, ``attention=``) are taken as ``train.py`` takes them and
checked against the checkpoint (:mod:`attnlab.cli.eval_overrides`).
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import hydra
from omegaconf import DictConfig

from attnlab.errors import AttnlabError, ConfigError
from attnlab.project import config_dir, ensure_project_root_env
from attnlab.runs.metrics_file import to_float, write_metrics_file
from attnlab.runs.run_dir import register_resolvers

if TYPE_CHECKING:
    import pytorch_lightning as pl

log = logging.getLogger(__name__)

register_resolvers()


def _task_class(run_cfg: dict[str, Any], ckpt_path: Path) -> type[pl.LightningModule]:
    """The LightningModule class the checkpoint's config names (allow-listed ``_target_`` only)."""
    import pytorch_lightning as pl

    from attnlab.runs.trusted_targets import locate_trusted

    target = (run_cfg.get("model") or {}).get("_target_")
    # cast: locate_trusted refuses whatever is not an allow-listed string, None included.
    task_cls = locate_trusted(cast(str, target), "model._target_", f"config stored in {ckpt_path}")
    if not (isinstance(task_cls, type) and issubclass(task_cls, pl.LightningModule)):
        raise ConfigError(f"{ckpt_path}: model._target_={target!r} is not a LightningModule.")
    return task_cls


def evaluate(cfg: DictConfig) -> dict[str, float | None]:
    """Restore the task from ``cfg.ckpt_path``, run the ``cfg.split`` split, return its metrics."""
    from attnlab.cli.config_check import check_config_types
    from attnlab.cli.eval_overrides import check_task_overrides, data_config, model_overrides
    from attnlab.runs.checkpoint_io import load_checkpoint, read_run_config
    from attnlab.runs.run_info import hydra_choices
    from attnlab.runs.trusted_targets import check_config_targets

    ckpt_path = Path(str(cfg.ckpt_path))
    if not ckpt_path.is_file():
        raise ConfigError(
            f"ckpt_path={ckpt_path} does not exist. Pass a checkpoint written by train.py, e.g. "
            "ckpt_path=logs/train/runs/<run>/checkpoints/last.ckpt"
        )
    if cfg.split not in ("test", "val"):
        raise ConfigError(f"split={cfg.split!r}: use split=test or split=val.")
    run_cfg, run_choices = read_run_config(ckpt_path, load_checkpoint(ckpt_path))
    check_config_targets({k: run_cfg.get(k) for k in ("model", "data")}, f"config stored in {ckpt_path}")
    choices = hydra_choices()
    check_task_overrides(cfg, choices, run_cfg, run_choices, str(ckpt_path))
    data_cfg = data_config(cfg, choices, run_cfg, run_choices)
    check_config_types({"data": data_cfg, "trainer": cfg.trainer})
    task_cls = _task_class(run_cfg, ckpt_path)
    settings = model_overrides(cfg, task_cls)

    import pytorch_lightning as pl

    from attnlab.cli.instantiate import instantiate_component
    from attnlab.cli.threads import set_threads

    set_threads(cfg)
    pl.seed_everything(cfg.seed, workers=True)
    model = task_cls.load_from_checkpoint(ckpt_path, map_location="cpu", weights_only=True)
    model.hparams.update(settings)
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
        "choices": run_choices,
        "eval_overrides": {**{k: v for k, v in choices.items() if k in ("data", "experiment")}, **settings},
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
    from attnlab.cli.help import print_fast_help

    ensure_project_root_env()
    if print_fast_help("eval", sys.argv[1:], config_dir()):
        return
    _hydra_entry()
