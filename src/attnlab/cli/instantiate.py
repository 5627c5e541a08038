"""Build Lightning objects from config nodes (callbacks, loggers, the data/model components)."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

log = logging.getLogger(__name__)

# Keys in data/model configs that describe the component rather than being constructor arguments.
META_KEYS = ("task",)


def instantiate_component(node: DictConfig, **kwargs: Any) -> Any:
    """Instantiate a ``data`` or ``model`` node, dropping :data:`META_KEYS` (e.g. ``task``)."""
    if "_target_" not in node:
        raise ValueError(f"config node has no _target_: {OmegaConf.to_yaml(node)}")
    # Resolve against the whole config first: a detached copy could not see ${paths...} any more.
    plain = OmegaConf.to_container(node, resolve=True)
    assert isinstance(plain, dict), "a DictConfig gives a dict"
    clean = OmegaConf.create({k: v for k, v in plain.items() if k not in META_KEYS})
    return instantiate(clean, **kwargs)


def instantiate_callbacks(node: DictConfig | None, supplied: Mapping[str, Any] | None = None) -> list[Any]:
    """Instantiate every entry of the ``callbacks`` group that has a ``_target_`` (null entries are off).

    An argument the config leaves to the run (``config: ???``) is taken from ``supplied`` by name;
    one that ``supplied`` lacks stays missing, and Hydra says which.
    """
    callbacks: list[Any] = []
    if not node:
        return callbacks
    supplied = supplied or {}
    for name, cb_conf in node.items():
        if isinstance(cb_conf, DictConfig) and "_target_" in cb_conf:
            log.debug("Instantiating callback %s <%s>", name, cb_conf._target_)
            given = {str(k): supplied[str(k)] for k in cb_conf if OmegaConf.is_missing(cb_conf, k) and k in supplied}
            if given:
                # Handed to the constructor as they are: through Hydra, a dict holding `_target_`s
                # (the run's config) would be instantiated and arrive as config nodes.
                callbacks.append(instantiate(cb_conf, _partial_=True)(**given))
            else:
                callbacks.append(instantiate(cb_conf))
    return callbacks


def instantiate_loggers(node: DictConfig | None, **wandb_kwargs: Any) -> list[Any]:
    """Instantiate the ``logger`` group; ``wandb_kwargs`` (name, tags, id, mode...) go to the W&B logger."""
    loggers: list[Any] = []
    if not node:
        return loggers
    for lg_conf in node.values():
        if not (isinstance(lg_conf, DictConfig) and "_target_" in lg_conf):
            continue
        if "WandbLogger" in str(lg_conf._target_):
            from attnlab.runs.wandb_setup import wandb_logger_kwargs

            loggers.append(instantiate(lg_conf, **wandb_logger_kwargs(lg_conf, **wandb_kwargs)))
        else:
            loggers.append(instantiate(lg_conf))
    return loggers


def drop_logger_only_callbacks(callbacks: list[Any], loggers: list[Any]) -> list[Any]:
    """With no logger (``logger=[]`` / ``logger=null``), leave out callbacks that only feed one.

    Lightning's LearningRateMonitor refuses to run without a logger; attnlab's MediaLogger only
    draws for W&B. Both step aside with a debug line instead of failing or idling.
    """
    if loggers:
        return callbacks
    from pytorch_lightning.callbacks import LearningRateMonitor

    from attnlab.callbacks.media import MediaLogger

    kept = []
    for callback in callbacks:
        if isinstance(callback, (LearningRateMonitor, MediaLogger)):
            log.debug("No logger configured: %s left out (it only writes to a logger)", type(callback).__name__)
        else:
            kept.append(callback)
    return kept
