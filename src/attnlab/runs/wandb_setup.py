"""W&B mode selection, run identity, and clean finishing of runs.

Lightning's ``WandbLogger`` reuses whatever wandb run is active and never finishes it, so in a Hydra
multirun job 2 would log into job 1's run; :func:`finish_wandb` is called in a ``finally`` for every job.
``WandbLogger(offline=True)`` would set ``WANDB_MODE`` for the whole process, so the mode is passed to
``wandb.init`` as ``mode=`` instead.
"""

from __future__ import annotations

import logging
import netrc
import os
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

log = logging.getLogger(__name__)

_MODES = ("online", "offline", "disabled")


def credential_source() -> str | None:
    """Where W&B would take an API key from: ``"env"`` (``WANDB_API_KEY``, also when it came from
    ``.env``), ``"netrc"`` (``wandb login``) or None. Only the source is ever recorded, never the key."""
    if os.environ.get("WANDB_API_KEY"):
        return "env"
    try:
        auth = netrc.netrc().authenticators("api.wandb.ai")
    except (FileNotFoundError, netrc.NetrcParseError, OSError):
        return None
    return "netrc" if auth and auth[2] else None


def _logged_in() -> bool:
    return credential_source() is not None


def resolve_wandb_mode(requested: str | None) -> str:
    """``WANDB_MODE`` wins; ``auto`` means online when logged in, offline otherwise."""
    env = os.environ.get("WANDB_MODE")
    if env:
        return "offline" if env == "dryrun" else env
    requested = (requested or "auto").lower()
    if requested == "auto":
        return "online" if _logged_in() else "offline"
    if requested not in _MODES:
        from attnlab.errors import ConfigError

        raise ConfigError(f"logger.wandb.mode={requested!r} is not one of auto, {', '.join(_MODES)}.")
    return requested


def wandb_logger_kwargs(node: DictConfig, **overrides: Any) -> dict[str, Any]:
    """Keyword arguments that replace config values of the W&B logger node at instantiation."""
    kwargs = {k: v for k, v in overrides.items() if v is not None}
    if os.environ.get("WANDB_RUN_ID") or os.environ.get("WANDB_SWEEP_ID"):
        # A W&B Sweep agent chose this run's id; ours would start a second run beside it.
        kwargs.pop("id", None)
    kwargs["mode"] = resolve_wandb_mode(node.get("mode"))
    Path(node.get("save_dir") or ".").mkdir(parents=True, exist_ok=True)
    if kwargs.get("id"):
        # Resuming: continue the run with this id instead of starting a new one.
        kwargs.setdefault("resume", "allow")
    return kwargs


def finish_wandb(exit_code: int = 0, preempted: bool = False) -> dict[str, str] | None:
    """Finish the active wandb run, if any; return its id, mode and directory for the run's records.

    ``preempted`` marks an interrupted run as preempted (resumable) rather than crashed.
    """
    import sys

    wandb = sys.modules.get("wandb")
    if wandb is None or getattr(wandb, "run", None) is None:
        return None
    run = wandb.run
    info = {
        "id": run.id,
        "dir": str(Path(run.dir).parent),
        "mode": "offline" if run.offline else "online",
        "credentials": credential_source() or "none",
    }
    if not run.offline:
        info["url"] = run.url or ""
    if preempted:
        run.mark_preempting()
        exit_code = 0
    wandb.finish(exit_code=exit_code)
    if info["mode"] == "offline":
        log.info("W&B run saved offline in %s; upload it later with: wandb sync %s", info["dir"], info["dir"])
    return info
