"""The objects a run is made of, built from the composed config the same way everywhere.

``train.py`` trains with them and ``scripts/bench.py`` times them, so a benchmark measures exactly
what a run executes: the datamodule (prepared and set up), the task LightningModule (with
``compile.enabled``), and the Trainer (with ``trainer.precision=auto`` resolved for this machine).
"""

from __future__ import annotations

import logging
from typing import Any, Literal

from omegaconf import DictConfig, OmegaConf

__all__ = ["build_datamodule", "build_task", "build_trainer", "compile_task"]

log = logging.getLogger(__name__)


def build_datamodule(cfg: DictConfig, stage: str | None = "fit") -> Any:
    """``cfg.data`` instantiated, ``prepare_data()`` and (unless ``stage`` is None) ``setup(stage)`` called."""
    from attnlab.cli.instantiate import instantiate_component

    log.info("Data <%s>", cfg.data._target_)
    datamodule = instantiate_component(cfg.data)
    datamodule.prepare_data()
    if stage is not None:
        datamodule.setup(stage)
    return datamodule


def build_task(cfg: DictConfig, datamodule: Any) -> Any:
    """``cfg.model`` with the attention group and the data-derived arguments; compiled when
    ``compile.enabled`` (see :func:`compile_task`)."""
    from attnlab.cli.instantiate import instantiate_component

    log.info("Model <%s> with %s attention", cfg.model._target_, cfg.attention.kind)
    attention = OmegaConf.to_container(cfg.attention, resolve=True)
    model = instantiate_component(cfg.model, attention=attention, **datamodule.model_kwargs())
    if cfg.get("compile") and cfg.compile.get("enabled"):
        compile_task(model, cfg.compile)
    return model


def compile_task(model: Any, options: Any) -> list[str]:
    """``torch.compile`` the task's ``compile_targets()`` in place (``nn.Module.compile``: the
    parameters and state-dict keys stay as they are). Returns the names compiled."""
    from torch import nn

    targets = getattr(model, "compile_targets", None)
    if targets is None:
        from attnlab.errors import ConfigError

        raise ConfigError(
            f"compile.enabled=true, but {type(model).__name__} does not say what to compile "
            "(no compile_targets()); run with compile.enabled=false."
        )
    kwargs = {k: options.get(k) for k in ("backend", "mode", "dynamic") if options.get(k) is not None}
    names = []
    for name, module in targets().items():
        # A ModuleList is never called itself; its members are.
        members = list(module.named_children()) if isinstance(module, nn.ModuleList) else [("", module)]
        for sub, member in members:
            member.compile(**kwargs)
            names.append(f"{name}.{sub}" if sub else name)
    log.info("torch.compile (%s): %s", ", ".join(f"{k}={v}" for k, v in kwargs.items()), ", ".join(names))
    return names


def build_trainer(cfg: DictConfig, **kwargs: Any) -> Any:
    """``cfg.trainer`` instantiated with ``kwargs`` (callbacks, logger ...), after resolving
    ``trainer.precision=auto`` in place (:func:`attnlab.cli.precision.resolve_precision`); mixed
    precision runs through :class:`~attnlab.cli.autocast_plugin.CachedMixedPrecision`."""
    import hydra

    from attnlab.cli.precision import resolve_precision

    precision = resolve_precision(cfg.trainer)
    if precision in ("bf16-mixed", "16-mixed"):
        import torch

        from attnlab.cli.autocast_plugin import CachedMixedPrecision

        accelerator = str(cfg.trainer.get("accelerator", "cpu"))
        if accelerator == "auto":
            accelerator = "gpu" if torch.cuda.is_available() else "cpu"
        device = accelerator if accelerator in ("cpu", "mps") else "cuda"
        plugins = kwargs.pop("plugins", None) or hydra.utils.instantiate(cfg.trainer.get("plugins")) or []
        mixed: Literal["bf16-mixed", "16-mixed"] = "bf16-mixed" if precision == "bf16-mixed" else "16-mixed"
        kwargs.update(precision=None, plugins=[*plugins, CachedMixedPrecision(mixed, device)])
    return hydra.utils.instantiate(cfg.trainer, **kwargs)
