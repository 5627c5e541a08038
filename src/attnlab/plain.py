"""OmegaConf containers as plain dicts and lists, for constructors that Hydra calls with config nodes."""

from __future__ import annotations

from typing import Any

__all__ = ["plain"]


def plain(obj: Any) -> Any:
    """``DictConfig`` / ``ListConfig`` -> resolved plain dicts/lists (Hydra passes nested config
    nodes as such unless ``_convert_`` says otherwise); anything else is returned as it is."""
    try:
        from omegaconf import DictConfig, ListConfig, OmegaConf
    except ImportError:  # pragma: no cover - omegaconf comes with hydra
        return obj
    if isinstance(obj, (DictConfig, ListConfig)):
        return OmegaConf.to_container(obj, resolve=True)
    return obj
