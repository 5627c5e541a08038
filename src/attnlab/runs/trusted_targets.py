"""Which ``_target_`` values a config from a file we did not write may name.

A checkpoint carries its run's config (and its optimizer/scheduler as ``{"_target_": ...}`` dicts),
and a run folder carries ``.hydra/overrides.yaml``; both are re-used when a run is evaluated or
resumed. Anyone who can hand over such a file could otherwise make Hydra call any importable
function (``os.system`` ...). Only the prefixes below are instantiated from them; anything else is
a :class:`~attnlab.errors.ConfigError` naming the file, the key and the value.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator, Mapping
from typing import Any

from attnlab.errors import ConfigError

__all__ = [
    "ALLOWED_TARGET_PREFIXES",
    "check_config_targets",
    "check_overrides",
    "check_target",
    "locate_trusted",
]

ALLOWED_TARGET_PREFIXES = ("attnlab.", "torch.optim.", "pytorch_lightning.", "torchvision.")


def is_trusted_target(target: Any) -> bool:
    """True when ``target`` is a dotted name under one of :data:`ALLOWED_TARGET_PREFIXES`."""
    return isinstance(target, str) and target.startswith(ALLOWED_TARGET_PREFIXES) and ".." not in target


_WHY = (
    "a config read from a checkpoint or a run folder may only name targets under {prefixes}. If you "
    "wrote this file yourself, pass the setting on the command line instead."
)


def check_target(target: Any, key: str, source: str, why: str = _WHY) -> str:
    """``target`` itself when it is allow-listed; otherwise a ConfigError naming ``key`` and ``source``
    (``why``, with ``{prefixes}`` filled in, explains the rule to the reader)."""
    if not is_trusted_target(target):
        raise ConfigError(
            f"{source}: {key}={target!r} is not instantiated: "
            + why.format(prefixes=", ".join(ALLOWED_TARGET_PREFIXES))
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
        except Exception as exc:
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
