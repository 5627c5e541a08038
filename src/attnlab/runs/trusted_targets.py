"""Which ``_target_`` values a config from a file we did not write may name.

A checkpoint carries its run's config (and its optimizer/scheduler as ``{"_target_": ...}`` dicts),
and a run folder carries ``.hydra/overrides.yaml``; both are re-used when a run is evaluated or
resumed. Anyone who can hand over such a file could otherwise make Hydra call any importable
function (``os.system`` ...). Only the prefixes below are instantiated from them; anything else is
a :class:`~attnlab.errors.ConfigError` naming the file, the key and the value.

Optimizer and scheduler factories are kept as such plain dicts, for both tasks. Hydra's
``_partial_: true`` hands a task a ``functools.partial`` (``torch.optim.AdamW`` with its keywords).
Stored as such in the hyper-parameters it would be pickled into every checkpoint, and a checkpoint
holding pickled objects can only be read with ``torch.load(weights_only=False)``, which runs
whatever code the file names. So the tasks turn their factories into ``{"_target_": dotted name,
**keywords}`` (:func:`factory_to_config`) before ``save_hyperparameters()``, and the dict goes back
to a callable (:func:`config_to_factory`) only when the optimizer is built, and only for
allow-listed targets (the hyper-parameters of a checkpoint are as untrusted as the rest of it).
``runs/checkpoint_convert.py`` applies the same conversion to checkpoints that older attnlab
versions wrote with pickled partials.
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from attnlab.errors import ConfigError
from attnlab.utils.plain import plain

__all__ = [
    "ALLOWED_TARGET_PREFIXES",
    "check_config_targets",
    "check_overrides",
    "check_target",
    "config_to_factory",
    "factory_to_config",
    "locate_trusted",
]

ALLOWED_TARGET_PREFIXES = ("attnlab.", "torch.optim.", "pytorch_lightning.", "torchvision.")


def is_trusted_target(target: Any) -> bool:
    """True when ``target`` is a dotted name under one of :data:`ALLOWED_TARGET_PREFIXES`."""
    return isinstance(target, str) and target.startswith(ALLOWED_TARGET_PREFIXES) and ".." not in target


_WHY = ("a config read from a checkpoint or a run folder may only name targets under {prefixes}. If you "
        "wrote this file yourself, pass the setting on the command line instead.")


def check_target(target: Any, key: str, source: str, why: str = _WHY) -> str:
    """``target`` itself when it is allow-listed; otherwise a ConfigError naming ``key`` and ``source``
    (``why``, with ``{prefixes}`` filled in, explains the rule to the reader)."""
    if not is_trusted_target(target):
        raise ConfigError(
            f"{source}: {key}={target!r} is not instantiated: " + why.format(prefixes=", ".join(ALLOWED_TARGET_PREFIXES))
        )
    return str(target)


def _targets(node: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    """Every ``(dotted key, value)`` of a ``_target_`` key inside nested dicts/lists."""
    if isinstance(node, Mapping):
        for key, value in node.items():
            where = f"{path}.{key}" if path else str(key)
            if key == "_target_":
                yield where, value
            else:
                yield from _targets(value, where)
    elif isinstance(node, (list, tuple)):
        for i, value in enumerate(node):
            yield from _targets(value, f"{path}[{i}]")


def check_config_targets(config: Any, source: str, prefix: str = "") -> None:
    """Raise ConfigError for the first ``_target_`` (at any depth) that is not allow-listed.

    ``config`` is a plain container or an OmegaConf node (read without resolving, so an
    interpolation cannot hide what it names).
    """
    try:
        from omegaconf import DictConfig, ListConfig, OmegaConf

        if isinstance(config, (DictConfig, ListConfig)):
            config = OmegaConf.to_container(config, resolve=False)
    except ImportError:  # pragma: no cover - omegaconf comes with hydra
        pass
    for key, value in _targets(config, prefix):
        check_target(value, key, source)


def check_overrides(overrides: list[Any], source: str) -> list[str]:
    """Validate Hydra override strings read from a file (``.hydra/overrides.yaml``); return them.

    Refused: anything that is not a ``key=value`` string, overrides of Hydra itself (``hydra.*``,
    ``hydra/...``: launchers, callbacks and job settings run before any of our checks), and any
    ``_target_`` that is not allow-listed, including ones inside dict values.
    """
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parser = OverridesParser.create()
    checked = []
    for override in overrides:
        if not isinstance(override, str) or not ("=" in override or override.startswith("~")):
            raise ConfigError(f"{source}: {override!r} is not a key=value override; the file looks edited.")
        try:
            parsed = parser.parse_override(override)
        except Exception as exc:  # noqa: BLE001 - Hydra's grammar errors come in several types
            raise ConfigError(f"{source}: cannot parse the override {override!r}: {exc}") from exc
        key = parsed.key_or_group
        if key == "hydra" or key.startswith(("hydra.", "hydra/")):
            raise ConfigError(
                f"{source}: {override!r} overrides Hydra itself, which a run folder never records; refusing it."
            )
        if parsed.is_sweep_override():
            raise ConfigError(f"{source}: {override!r} is a sweep; a run folder records one value per key.")
        value = None if parsed.is_delete() else parsed.value()
        if key.endswith("_target_"):
            check_target(value, key, source)
        else:
            check_config_targets(value, source, prefix=key)
        checked.append(override)
    return checked


def locate_trusted(target: str, key: str, source: str, why: str = _WHY) -> Any:
    """Import the object an allow-listed dotted ``target`` names (``torch.optim.adamw.AdamW``)."""
    check_target(target, key, source, why)
    module_path, _, name = target.rpartition(".")
    parts = [name]
    while module_path:
        try:
            obj: Any = importlib.import_module(module_path)
            break
        except ImportError:
            module_path, _, head = module_path.rpartition(".")
            parts.insert(0, head)
    else:
        raise ConfigError(f"{source}: {key}={target!r} cannot be imported.")
    try:
        for part in parts:
            obj = getattr(obj, part)
    except AttributeError as exc:
        raise ConfigError(f"{source}: {key}={target!r} cannot be imported ({exc}).") from exc
    return obj


_PRIMITIVES = (str, int, float, bool, type(None))
_FACTORY_SOURCE = "model hyper-parameters"
_FACTORY_WHY = (
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
        target = check_target(factory["_target_"], f"{name}._target_", _FACTORY_SOURCE, _FACTORY_WHY)
        keywords = {k: v for k, v in factory.items() if k not in ("_target_", "_partial_")}
    elif isinstance(factory, functools.partial) and not factory.args:
        target = f"{factory.func.__module__}.{factory.func.__qualname__}"
        check_target(target, f"{name}._target_", _FACTORY_SOURCE, _FACTORY_WHY)
        keywords = dict(factory.keywords)
    else:
        raise ValueError(
            f"{name} must be a Hydra `_partial_: true` node (a functools.partial with keyword arguments only) "
            f"or a dict with `_target_`; got {type(factory).__name__}."
        )
    return {"_target_": target, **{str(k): _plain_value(v, f"{name}.{k}") for k, v in keywords.items()}}


def config_to_factory(config: Mapping[str, Any] | None, name: str) -> Callable[..., Any] | None:
    """Inverse of :func:`factory_to_config`: the allow-listed callable with its keywords bound."""
    if config is None:
        return None
    kwargs = {k: v for k, v in config.items() if k not in ("_target_", "_partial_")}
    target = locate_trusted(str(config["_target_"]), f"{name}._target_", _FACTORY_SOURCE, _FACTORY_WHY)
    return functools.partial(target, **kwargs)
