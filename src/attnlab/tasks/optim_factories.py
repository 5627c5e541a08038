"""Optimizer and scheduler factories kept as plain config dicts, for both tasks.

Hydra's ``_partial_: true`` hands a task a ``functools.partial`` (``torch.optim.AdamW`` with its
keywords). Stored as such in the hyper-parameters it would be pickled into every checkpoint, and a
checkpoint holding pickled objects can only be read with ``torch.load(weights_only=False)``, which
runs whatever code the file names. So each task turns its factories into ``{"_target_": dotted
name, **keywords}`` before ``save_hyperparameters()``; the dict goes back to a callable only when
the optimizer is built, and only for allow-listed targets (the hyper-parameters of a checkpoint are
as untrusted as the rest of it).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import Any

from attnlab.plain import plain
from attnlab.runs.trusted_targets import check_target, locate_trusted

__all__ = ["config_to_factory", "factory_to_config"]

_PRIMITIVES = (str, int, float, bool, type(None))
_SOURCE = "model hyper-parameters"
_WHY = (
    "optimizers and schedulers are stored in checkpoints and rebuilt from them, so they must come from "
    "{prefixes} (put a class for another optimizer under attnlab. to use it)."
)


def _plain_value(value: Any, key: str) -> Any:
    """A keyword as JSON-like data (tuples become lists); anything else cannot be stored safely."""
    value = plain(value)
    if isinstance(value, (list, tuple)):
        return [_plain_value(v, key) for v in value]
    if isinstance(value, _PRIMITIVES):
        return value
    raise ValueError(
        f"{key}={value!r} ({type(value).__name__}) cannot be stored in a checkpoint as plain data; "
        "give optimizer/scheduler keywords as numbers, strings, booleans or lists of them."
    )


def factory_to_config(factory: Any, name: str) -> dict[str, Any] | None:
    """``functools.partial(torch.optim.AdamW, lr=1e-3)`` -> ``{"_target_": "torch.optim.adamw.AdamW", "lr": 0.001}``.

    ``name`` (``optimizer`` / ``scheduler``) is used in error messages. A dict with ``_target_``
    (e.g. read back from a checkpoint) is checked and returned as a plain dict; None stays None.
    """
    factory = plain(factory)
    if factory is None:
        return None
    if isinstance(factory, Mapping) and "_target_" in factory:
        target = check_target(factory["_target_"], f"{name}._target_", _SOURCE, _WHY)
        kwargs = {
            str(k): _plain_value(v, f"{name}.{k}") for k, v in factory.items() if k not in ("_target_", "_partial_")
        }
        return {"_target_": target, **kwargs}
    if isinstance(factory, functools.partial) and not factory.args:
        target = f"{factory.func.__module__}.{factory.func.__qualname__}"
        check_target(target, f"{name}._target_", _SOURCE, _WHY)
        kwargs = {str(k): _plain_value(v, f"{name}.{k}") for k, v in factory.keywords.items()}
        return {"_target_": target, **kwargs}
    raise ValueError(
        f"{name} must be a Hydra `_partial_: true` node (a functools.partial with keyword arguments only) "
        f"or a dict with `_target_`; got {type(factory).__name__}."
    )


def config_to_factory(config: Mapping[str, Any] | None, name: str) -> Callable[..., Any] | None:
    """Inverse of :func:`factory_to_config`: the allow-listed callable with its keywords bound."""
    if config is None:
        return None
    kwargs = {k: v for k, v in config.items() if k not in ("_target_", "_partial_")}
    return functools.partial(locate_trusted(str(config["_target_"]), f"{name}._target_", _SOURCE, _WHY), **kwargs)
