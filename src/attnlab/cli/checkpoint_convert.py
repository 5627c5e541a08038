"""Turn a checkpoint written by an older attnlab into one ``torch.load(weights_only=True)`` reads.

Older checkpoints held the translation task's optimizer/scheduler as pickled ``functools.partial``
objects and numpy's RNG state as a pickled array. The converted file holds the same weights,
optimizer, scheduler, loop and callback states, with those entries as plain data: the partials as
``{"_target_": ..., **keywords}`` dicts (what the tasks store now), arrays as tensors. Reading the
old file runs the code it names, so ``scripts/convert_checkpoint.py`` asks the user to confirm
that they trust it; the result is checked to load safely before it is written. It sits in
``cli/`` rather than ``runs/`` because it turns partials into the tasks' own config dicts, and
``runs/`` sits below ``tasks/``.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from attnlab.errors import ConfigError

__all__ = ["convert", "convert_file"]


def _plain_data(value: Any, where: str, problems: list[str]) -> Any:
    """numpy arrays and scalars -> tensors and numbers, recursively; anything else unknown is listed."""
    import numpy as np
    import torch

    if isinstance(value, dict):
        return {k: _plain_data(v, f"{where}.{k}", problems) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        items = [_plain_data(v, f"{where}[{i}]", problems) for i, v in enumerate(value)]
        return items if isinstance(value, list) else tuple(items)
    if isinstance(value, np.ndarray):
        return torch.from_numpy(value.astype(np.int64) if value.dtype.kind == "u" else value)
    if isinstance(value, np.generic):
        return value.item()
    if value is None or isinstance(value, (str, int, float, bool, bytes, torch.Tensor, torch.dtype, torch.Size)):
        return value
    problems.append(f"{where}: {type(value).__module__}.{type(value).__qualname__}")
    return value


def convert(checkpoint: dict[str, Any]) -> dict[str, Any]:
    """The converted checkpoint (a new dict; ``checkpoint`` is not changed)."""
    from attnlab.tasks.optim_factories import factory_to_config

    out = dict(checkpoint)
    hparams = dict(out.get("hyper_parameters") or {})
    for name in ("optimizer", "scheduler"):
        if name in hparams:
            hparams[name] = factory_to_config(hparams[name], name)
    if hparams:
        out["hyper_parameters"] = hparams
    problems: list[str] = []
    out = _plain_data(out, "checkpoint", problems)
    if problems:
        raise ConfigError("cannot convert these entries to plain data: " + "; ".join(problems))
    return out


def convert_file(source: Path, target: Path) -> Path:
    """Read ``source`` (trusted, with ``weights_only=False``), convert it, check that the result loads
    with ``weights_only=True``, and write it to ``target`` atomically."""
    import os
    import pickle

    import torch

    old = torch.load(source, map_location="cpu", weights_only=False)
    if not isinstance(old, dict):
        raise ConfigError(f"{source} holds a {type(old).__name__}, not a Lightning checkpoint.")
    new = convert(old)
    buffer = io.BytesIO()
    torch.save(new, buffer)
    buffer.seek(0)
    try:
        torch.load(buffer, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise ConfigError(f"the converted {source} still does not load safely: {str(exc).splitlines()[-1]}") from exc
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    tmp.write_bytes(buffer.getvalue())
    os.replace(tmp, target)
    return target
