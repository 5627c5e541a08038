"""Read a checkpoint without running code from it, and the run config it carries.

Every checkpoint attnlab writes holds only tensors and plain data (the tasks store their
optimizer/scheduler as config dicts, :mod:`attnlab.callbacks.exact_resume` its RNG states as
tensors), so ``torch.load(weights_only=True)`` reads it and no type needs
``torch.serialization.add_safe_globals``. A file that holds anything else is refused before a
byte of it is executed; one written by attnlab before this rule can be converted once with
``scripts/convert_checkpoint.py``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from attnlab.errors import ConfigError

__all__ = ["CONFIG_KEY", "load_checkpoint", "read_run_config", "unsafe_checkpoint_error"]

# Where attnlab.callbacks.config_in_checkpoint stores the run's config (kept free of Lightning here).
CONFIG_KEY = "attnlab_config"


def unsafe_checkpoint_error(path: str | Path, exc: BaseException) -> ConfigError:
    """The error for a file ``torch.load(weights_only=True)`` refuses, with the way out."""
    text = str(exc)
    found = re.search(r"unsupported (?:global: )?GLOBAL (\S+)", text, re.IGNORECASE)
    if found is None:  # not a pickle of objects, just not a checkpoint (random bytes, a text file)
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        unpickler = next((line for line in lines if "Unsupported" in line), lines[-1] if lines else "")
        return ConfigError(f"ckpt_path={path} could not be read as a checkpoint ({unpickler}).")
    return ConfigError(
        f"{path} is not a checkpoint that can be read safely: it holds pickled Python objects (the first: "
        f"{found.group(1)}), "
        "and loading it would run code stored in the file, so attnlab does not load it. If you wrote it yourself "
        f"with an older attnlab, convert it once: python scripts/convert_checkpoint.py {path} --trust "
        "(converting reads the file the unsafe way: never for a file you got from someone else)."
    )


def load_checkpoint(path: str | Path, map_location: Any = "cpu") -> dict[str, Any]:
    """``torch.load(path, weights_only=True)`` (memory-mapped), with one clear ConfigError for a
    missing, unreadable or unsafe file."""
    import pickle

    import torch

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"ckpt_path={path} does not exist (pass <run>/checkpoints/last.ckpt or another .ckpt).")
    try:
        checkpoint = torch.load(path, map_location=map_location, weights_only=True, mmap=True)
    except RuntimeError as exc:
        if "mmap" not in str(exc):
            raise ConfigError(f"ckpt_path={path} could not be read as a checkpoint: {exc}") from exc
        # Files in torch's legacy (non-zip) format cannot be memory-mapped; weights_only still applies.
        checkpoint = _load_unmapped(path, map_location)
    except pickle.UnpicklingError as exc:
        raise unsafe_checkpoint_error(path, exc) from exc
    except Exception as exc:
        raise ConfigError(f"ckpt_path={path} could not be read as a checkpoint: {type(exc).__name__}: {exc}") from exc
    if not isinstance(checkpoint, dict):
        raise ConfigError(f"ckpt_path={path} holds a {type(checkpoint).__name__}, not a Lightning checkpoint.")
    return checkpoint


def _load_unmapped(path: Path, map_location: Any) -> Any:
    import pickle

    import torch

    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        raise unsafe_checkpoint_error(path, exc) from exc
    except Exception as exc:
        raise ConfigError(f"ckpt_path={path} could not be read as a checkpoint: {type(exc).__name__}: {exc}") from exc


def read_run_config(
    path: str | Path, checkpoint: dict[str, Any] | None = None
) -> tuple[dict[str, Any], dict[str, str]]:
    """The resolved config and group choices the run that wrote ``path`` stored in it.

    Checkpoints written without them (not by attnlab's train.py) are an error naming the file: the
    ``.hydra/config.yaml`` beside a folder is no substitute, since nothing ties it to these weights.
    """
    checkpoint = load_checkpoint(path) if checkpoint is None else checkpoint
    saved = checkpoint.get(CONFIG_KEY)
    if not isinstance(saved, dict) or not isinstance(saved.get("config"), dict):
        raise ConfigError(
            f"{path} holds no attnlab config (key {CONFIG_KEY!r}): evaluate a checkpoint written by attnlab's train.py."
        )
    return saved["config"], {str(k): str(v) for k, v in (saved.get("choices") or {}).items()}
