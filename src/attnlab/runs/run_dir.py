"""Run and sweep folders that are never shared, and the W&B id that belongs to one run.

Hydra names a run folder after the second it started in (``${now:...}``) and creates it with
``exist_ok=True``, so two runs started in the same second used to write into one folder (and,
through ``wandb_id.txt``, into one W&B run). ``conf/hydra/default.yaml`` wraps the name in
``${unique_dir:...}``: the resolver adds milliseconds and random characters and claims the folder
with ``mkdir(exist_ok=False)`` before Hydra sees the path, retrying with new characters if another
process got there first. Like Hydra's ``now``, it is cached, so every job of a sweep (and Hydra's
copy of the config for each job) sees the same path.
"""

from __future__ import annotations

import os
import secrets
import string
import time
from pathlib import Path

__all__ = ["claim_unique_dir", "is_resume", "register_resolvers", "run_rank", "wandb_id_for_run"]

_ALPHABET = string.ascii_lowercase + string.digits
_CLAIMED: dict[str, str] = {}
WANDB_ID_FILE = "wandb_id.txt"


def claim_unique_dir(base: str, attempts: int = 20) -> str:
    """Create and return ``<base>_<milliseconds>-<4 random characters>``, a folder no other process has.

    Called once per ``base`` per process (later calls return the same path), so re-resolving the
    config never creates a second folder.
    """
    base = str(base)
    if base in _CLAIMED:
        return _CLAIMED[base]
    for _ in range(attempts):
        millis = int(time.time() * 1000) % 1000
        suffix = "".join(secrets.choice(_ALPHABET) for _ in range(4))
        path = Path(f"{base}_{millis:03d}-{suffix}")
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            path.mkdir(exist_ok=False)
        except FileExistsError:
            continue
        _CLAIMED[base] = str(path)
        return str(path)
    raise FileExistsError(f"could not create a new folder next to {base} after {attempts} tries")


def register_resolvers() -> None:
    """Register ``${unique_dir:...}`` with OmegaConf (idempotent; called when train/eval are imported,
    so Hydra's sweep jobs, which import the task function, have it too)."""
    from omegaconf import OmegaConf

    if not OmegaConf.has_resolver("unique_dir"):
        OmegaConf.register_new_resolver("unique_dir", claim_unique_dir, use_cache=True)


def run_rank() -> int:
    """This process's global rank as the launcher set it (0 outside distributed runs), known before
    any Trainer exists: ``trainer=ddp`` re-runs train.py once per rank, and only rank 0 keeps records."""
    for var in ("RANK", "SLURM_PROCID", "LOCAL_RANK"):
        value = os.environ.get(var)
        if value and value.isdigit():
            return int(value)
    return 0


def is_resume(ckpt_path: str | os.PathLike | None, output_dir: str | os.PathLike) -> bool:
    """True when ``ckpt_path`` is a checkpoint of the run folder ``output_dir`` (``<run>/checkpoints/x.ckpt``)."""
    if not ckpt_path:
        return False
    run_dir = Path(output_dir).resolve()
    return run_dir in Path(ckpt_path).resolve().parents


def wandb_id_for_run(output_dir: str | os.PathLike, resuming: bool) -> str | None:
    """The W&B run id of this run: the one in ``wandb_id.txt`` when resuming that run, a new one
    otherwise (written to the file). Ranks other than 0 never write; they get None."""
    path = Path(output_dir) / WANDB_ID_FILE
    if resuming and path.is_file():
        return path.read_text().strip() or None
    if run_rank() != 0:
        return None
    run_id = "".join(secrets.choice(_ALPHABET) for _ in range(8))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(run_id + "\n")
    return run_id
