"""Flatten nested config containers into ``a.b.c`` keys, keeping scalars only."""

from __future__ import annotations

from typing import Any


def flatten_scalars(obj: Any, prefix: str = "") -> dict[str, Any]:
    """``{"net": {"hidden": 256}}`` -> ``{"prefix.net.hidden": 256}``; lists and None-free scalars kept."""
    out: dict[str, Any] = {}
    if isinstance(obj, dict):
        for key, value in obj.items():
            out.update(flatten_scalars(value, f"{prefix}.{key}" if prefix else str(key)))
    elif isinstance(obj, (str, int, float, bool)) or obj is None:
        out[prefix] = obj
    return out
